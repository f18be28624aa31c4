"""SpyNet: Ranjan and Black, "Optical Flow Estimation using a Spatial Pyramid Network", CVPR 2017.

The flow estimator of BasicVSR and BasicVSR++, laid out as BasicSR's ``basicsr/archs/spynet_arch.py``
(``basic_module.N.basic_module.M`` with the ReLUs as children 1, 3, 5, 7; ImageNet mean/std
buffers; 6 pyramid levels), so ``spynet_sintel_final-3d2a1287.pth`` and the ``spynet.*`` keys of
BasicSR's BasicVSR releases load with ``strict=True``. mmagic's layout (``.conv.`` inside each
``ConvModule``) is renamed by ``from_mmagic_keys``.

Also here: ``flow_warp`` (BasicSR ``arch_util.flow_warp``), ``load_spynet`` (a weights file, read
without executing code) and ``pretrain_spynet`` (fit SpyNet to known motion, e.g. the synthetic
clips' true flow, when no pretrained file is at hand).
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sr_experiments.models.weights import read_weights

log = logging.getLogger(__name__)

__all__ = [
    "SpyNet",
    "SpyNetPretraining",
    "build_spynet",
    "clip_flow_pairs",
    "endpoint_error",
    "flow_batches",
    "flow_warp",
    "load_spynet",
    "mean_epe",
    "pretrain_spynet",
    "spynet_pretrain_recipe",
]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LEVELS = 6  # pyramid levels: the coarsest is 1/32 of the (resized) input


def flow_warp(x: torch.Tensor, flow: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Sample ``x`` (N, C, H, W) at ``p + flow(p)``; ``flow`` is (N, 2, H, W) in pixels, (x, y) order.

    As BasicSR's ``flow_warp`` (bilinear, ``align_corners=True``), but the flow is channels-first,
    the layout every caller here holds it in.
    """
    h, w = x.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype, device=x.device),
                            torch.arange(w, dtype=x.dtype, device=x.device), indexing="ij")
    gx = 2.0 * (xs + flow[:, 0]) / max(w - 1, 1) - 1.0
    gy = 2.0 * (ys + flow[:, 1]) / max(h - 1, 1) - 1.0
    grid = torch.stack((gx, gy), dim=3)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def clip_flows(spynet: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(forward, backward) flows between neighbouring frames of (B, T, C, H, W) clip ``x``, each
    (B, T-1, 2, H, W): backward[i] aligns frame i+1 to frame i, forward[i] frame i to i+1 (BasicSR's
    ``get_flow``, mmagic's ``compute_flow``, for the BasicVSR family)."""
    b, t, c, h, w = x.shape
    if t == 1:  # a single frame (e.g. the last chunk of a video): nothing to align
        return x.new_zeros(b, 0, 2, h, w), x.new_zeros(b, 0, 2, h, w)
    x_1, x_2 = x[:, :-1].reshape(-1, c, h, w), x[:, 1:].reshape(-1, c, h, w)
    backward = spynet(x_1, x_2).view(b, t - 1, 2, h, w)
    forward = spynet(x_2, x_1).view(b, t - 1, 2, h, w)
    return forward, backward


class BasicModule(nn.Module):
    """One pyramid level: five 7x7 convs (8 -> 32 -> 64 -> 32 -> 16 -> 2) predicting a flow residual
    from (reference, warped support, upsampled flow)."""

    def __init__(self) -> None:
        super().__init__()
        chans = (8, 32, 64, 32, 16, 2)
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(itertools.pairwise(chans)):
            layers.append(nn.Conv2d(cin, cout, 7, 1, 3))
            if i < len(chans) - 2:
                layers.append(nn.ReLU(inplace=False))
        self.basic_module = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.basic_module(x)


class SpyNet(nn.Module):
    """SpyNet (BasicSR layout, 1,440,280 parameters). ``forward(ref, supp)`` returns the flow
    (N, 2, H, W) from ``ref`` to ``supp``: ``flow_warp(supp, flow)`` approximates ``ref``.
    Inputs are RGB in [0, 1], any size (resized internally to multiples of 32, as BasicSR)."""

    def __init__(self) -> None:
        super().__init__()
        self.basic_module = nn.ModuleList(BasicModule() for _ in range(LEVELS))
        # Persistent, as in BasicSR and mmagic: their BasicVSR state dicts carry spynet.mean/std.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def _coarse_to_fine(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
        refs, supps = [(ref - self.mean) / self.std], [(supp - self.mean) / self.std]
        for _ in range(LEVELS - 1):  # pyramids, coarsest first
            refs.insert(0, F.avg_pool2d(refs[0], 2, 2, count_include_pad=False))
            supps.insert(0, F.avg_pool2d(supps[0], 2, 2, count_include_pad=False))
        flow = refs[0].new_zeros(ref.shape[0], 2, *refs[0].shape[-2:])
        for level, (r, s) in enumerate(zip(refs, supps)):
            up = flow if level == 0 else F.interpolate(flow, scale_factor=2, mode="bilinear", align_corners=True) * 2.0
            warped = flow_warp(s, up, padding_mode="border")
            flow = up + self.basic_module[level](torch.cat([r, warped, up], 1))
        return flow

    def forward(self, ref: torch.Tensor, supp: torch.Tensor) -> torch.Tensor:
        if ref.shape != supp.shape:
            raise ValueError(f"SpyNet: reference {tuple(ref.shape)} and support {tuple(supp.shape)} differ in shape")
        h, w = ref.shape[-2:]
        h32, w32 = math.ceil(h / 32) * 32, math.ceil(w / 32) * 32
        ref = F.interpolate(ref, size=(h32, w32), mode="bilinear", align_corners=False)
        supp = F.interpolate(supp, size=(h32, w32), mode="bilinear", align_corners=False)
        flow = F.interpolate(self._coarse_to_fine(ref, supp), size=(h, w), mode="bilinear", align_corners=False)
        return flow * flow.new_tensor([w / w32, h / h32]).view(1, 2, 1, 1)  # back to input pixels


def from_mmagic_keys(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """mmagic's SPyNet keys (``basic_module.L.basic_module.K.conv.weight``: a ConvModule per conv) as
    BasicSR's (``basic_module.L.basic_module.2K.weight``: ReLUs are children in between)."""
    pattern = re.compile(rf"^({re.escape(prefix)}basic_module\.\d+\.basic_module\.)(\d+)\.conv\.")
    return {pattern.sub(lambda m: f"{m.group(1)}{2 * int(m.group(2))}.", k): v for k, v in state.items()}


def load_spynet(spynet: SpyNet, path: str | Path) -> None:
    """Load a SpyNet weights file (BasicSR's ``spynet_sintel_final-3d2a1287.pth``: a ``params`` dict,
    or a bare state dict; mmagic's layout too) strictly; the file is read with ``weights_only``."""
    obj = read_weights(path)
    state = obj.get("params", obj.get("state_dict", obj)) if isinstance(obj, dict) else obj
    state = from_mmagic_keys({k.removeprefix("module."): v for k, v in dict(state).items()})
    for name in ("mean", "std"):  # BasicSR's SpyNet file predates the buffers: keep ours
        state.setdefault(name, getattr(spynet, name))
    try:
        spynet.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"model.spynet_pretrained='{path}' is not a SpyNet weights file: "
                         f"{' '.join(str(e).split())[:200]}") from None


def endpoint_error(flow: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean end-point error: the Euclidean distance between flow vectors, averaged over pixels."""
    return torch.linalg.vector_norm(flow - target, dim=1).mean()


def clip_flow_pairs(clips: Iterable[Any]) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(ref, supp, flow) triples from clips that keep their true LR motion: any object with ``lq``
    (T, 3, h, w) uint8 or float in [0, 1], ``flow_fwd`` and ``flow_bwd`` (T-1, 2, h, w), pixel p of
    frame t at p + flow_fwd[t] in frame t+1 (the synthetic clips, ``data/clips_synthetic.py``).
    Clips without flow are skipped. Each triple has a batch dimension of 1."""
    for clip in clips:
        if getattr(clip, "flow_fwd", None) is None or getattr(clip, "flow_bwd", None) is None:
            continue
        lq = clip.lq.float() / 255.0 if not clip.lq.is_floating_point() else clip.lq
        for t in range(lq.shape[0] - 1):
            yield lq[t : t + 1], lq[t + 1 : t + 2], clip.flow_fwd[t : t + 1].float()
            yield lq[t + 1 : t + 2], lq[t : t + 1], clip.flow_bwd[t : t + 1].float()


def flow_batches(pairs: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], batch_size: int, patch: int,
                 seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``pairs`` (as ``clip_flow_pairs`` yields them) shuffled, cropped to ``patch`` x ``patch`` at a
    random place (the same crop of ref, supp and flow: a flow vector is a displacement, unchanged by
    cropping) and stacked ``batch_size`` at a time: one pass over the pairs, the same for a seed."""
    g = torch.Generator().manual_seed(int(seed))
    pairs = list(pairs)
    order = torch.randperm(len(pairs), generator=g).tolist()
    crops = []
    for i in order:
        ref, supp, flow = pairs[i]
        h, w = ref.shape[-2:]
        ph, pw = min(patch, h), min(patch, w)
        y = int(torch.randint(0, h - ph + 1, (1,), generator=g))
        x = int(torch.randint(0, w - pw + 1, (1,), generator=g))
        crops.append(tuple(t[..., y : y + ph, x : x + pw] for t in (ref, supp, flow)))
    batches = []
    for k in range(0, len(crops), max(int(batch_size), 1)):
        group = crops[k : k + batch_size]
        if any(c[0].shape != group[0][0].shape for c in group):  # frames of other sizes: one pair a batch
            batches.extend(group)
        else:
            batches.append(tuple(torch.cat(parts) for parts in zip(*group)))
    return batches


def pretrain_spynet(spynet: SpyNet, clips_with_flow: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                    steps: int, lr: float = 1e-4) -> list[float]:
    """Fit ``spynet`` to known motion: Adam on the end-point error for ``steps`` steps, cycling over
    ``clips_with_flow`` ((ref, supp, flow) batches, ``flow`` as SpyNet returns it: see
    ``clip_flow_pairs`` and ``flow_batches``). Returns the EPE of each step. For when no pretrained
    file is available: BasicVSR's alignment needs a flow estimator that is right from the first steps."""
    pairs = list(clips_with_flow)
    if not pairs:
        raise ValueError("pretrain_spynet: no (ref, supp, flow) pairs: the clips carry no true motion")
    device = next(spynet.parameters()).device
    opt = torch.optim.Adam(spynet.parameters(), lr=lr)
    was_training, history = spynet.training, []
    spynet.train()
    for step in range(steps):
        ref, supp, flow = (t.to(device) for t in pairs[step % len(pairs)])
        loss = endpoint_error(spynet(ref, supp), flow)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    spynet.train(was_training)
    return history


@torch.no_grad()
def mean_epe(spynet: nn.Module | None, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> float:
    """The end-point error of ``spynet`` over ``batches``, pixel-weighted; ``None``: of zero flow
    (the mean true motion, what "no alignment" costs)."""
    total, pixels = 0.0, 0
    for ref, supp, flow in batches:
        pred = torch.zeros_like(flow) if spynet is None else spynet(ref, supp)
        n = flow[:, 0].numel()
        total += float(endpoint_error(pred, flow)) * n
        pixels += n
    return total / max(pixels, 1)


@dataclass(frozen=True)
class SpyNetPretraining:
    """What ``spynet_pretrain_recipe`` did: its steps, the EPE (px) of the flow network on held-aside
    pairs before and after, and of zero flow on them; ``history``: the training EPE of each step;
    ``kept``: whether the pre-trained network was kept (else the zero flow it started from)."""

    steps: int
    epe_before: float
    epe_after: float
    epe_zero: float
    history: list[float]
    kept: bool = True

    def describe(self) -> str:
        line = (f"spynet: pre-trained {self.steps} steps on the clips' true motion, EPE {self.epe_before:.3f} -> "
                f"{self.epe_after:.3f} px (zero flow: {self.epe_zero:.3f} px)")
        return line if self.kept else line + "; no better than zero flow: zero flow kept"


def build_spynet(pretrained: str | Path | None) -> tuple[SpyNet, str]:
    """A SpyNet for a video network and a line saying where its weights came from: the file
    ``pretrained`` (``model.spynet_pretrained``), else random init (logged, so a run says which)."""
    spynet = SpyNet()
    if pretrained:
        load_spynet(spynet, pretrained)
        source = f"SpyNet: loaded from {pretrained}"
    else:
        source = "SpyNet: random init (no model.spynet_pretrained)"
    log.info(source)
    return spynet, source


def spynet_pretrain_recipe(net: nn.Module, clips: Iterable[Any], steps: int, lr: float = 1e-4, batch_size: int = 8,
                           patch: int = 32, seed: int = 0) -> SpyNetPretraining | None:
    """The recipe: pre-train ``net.spynet`` on the true motion of ``clips`` (see ``clip_flow_pairs``)
    for ``steps`` Adam steps of ``batch_size`` pairs cropped to ``patch`` LR pixels, unless it was
    loaded from a file; ``net.spynet_source`` then says so. It starts from zero flow and keeps the
    trained network only where it beats zero flow on two batches held aside. Returns what was done
    (None when nothing was)."""
    spynet = getattr(net, "spynet", None)
    if spynet is None or steps <= 0 or str(getattr(net, "spynet_source", "")).startswith("SpyNet: loaded"):
        return None
    batches = flow_batches(clip_flow_pairs(clips), batch_size, patch, seed)
    if not batches:
        raise ValueError("pretrain_spynet: no (ref, supp, flow) pairs: the clips carry no true motion")
    probe, train = (batches[:2], batches[2:]) if len(batches) > 4 else (batches, batches)
    # Start from zero flow (each level's last conv zeroed: it adds nothing to the upsampled flow):
    # the no-motion prior is already close on sub-pixel camera motion, where a random SpyNet's
    # flow is worse than none; pre-training then only has to improve on it.
    for level in spynet.basic_module:
        nn.init.zeros_(level.basic_module[-1].weight)
        nn.init.zeros_(level.basic_module[-1].bias)
    before, start = mean_epe(spynet, probe), {k: v.clone() for k, v in spynet.state_dict().items()}
    history = pretrain_spynet(spynet, train, steps, lr)
    after = mean_epe(spynet, probe)
    if after >= before:  # no better than zero flow on the held-aside pairs: keep zero flow
        spynet.load_state_dict(start)
    done = SpyNetPretraining(int(steps), before, after, mean_epe(None, probe), history, kept=after < before)
    net.spynet_source = done.describe()
    return done


def from_mmagic_state_dict(state: dict[str, Any], renames: dict[str, str]) -> dict[str, Any]:
    """A state dict of mmagic's (``generator.``-prefixed in its checkpoints, beside non-network
    entries such as ``step_counter``) in our layout: prefix stripped, SpyNet keys renamed
    (``from_mmagic_keys``), then each ``renames`` key prefix replaced. Ours comes back unchanged."""
    if any(k.startswith("generator.") for k in state):
        state = {k[len("generator."):]: v for k, v in state.items() if k.startswith("generator.")}
    state = from_mmagic_keys(state, prefix="spynet.")
    out = {}
    for key, value in state.items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out
