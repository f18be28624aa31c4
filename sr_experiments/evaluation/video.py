"""The video SR protocol: per-frame PSNR/SSIM on RGB or Y, a network run over a whole clip, and
clip-averaged metrics (mean over a clip's frames, then over clips), as BasicSR's
``VideoBaseModel._log_validation_metric_values`` and mmagic's test loops average.

Conventions of the papers' own test configs (``VIDEO_SETS``):

- REDS4: RGB, crop_border 0, all 100 frames (BasicSR ``options/test/BasicVSR/test_BasicVSR_REDS.yml``:
  ``crop_border: 0, test_y_channel: false``; mmagic ``configs/_base_/datasets/basicvsr_test_config.py``
  ``REDS4-BIx4-RGB``);
- Vid4: Y, crop_border 0, all frames (BasicSR ``test_BasicVSR_Vimeo90K_BIx4.yml``/``BDx4``:
  ``test_y_channel: true, crop_border: 0``; mmagic ``VID4-BIx4-Y``);
- Vimeo-90K-T: Y, crop_border 0, centre frame (im4) only (BasicSR ``center_frame_only: true``,
  ``flip_seq: true`` for recurrent networks; mmagic ``gt=['im4.png']``, ``MirrorSequence``).

Beside them, each clip's tOF, TecoGAN's temporal-consistency metric (``evaluation/temporal.py``;
lower is better), on the clip's SR frames, all of them even where PSNR takes the centre one alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from sr_experiments.evaluation.metrics import protocol_luma, psnr_y, quantize, shave, ssim_y
from sr_experiments.evaluation.temporal import tof
from sr_experiments.methods.clips import run_clip, window_indices  # noqa: F401  (moved below: upscale.py runs them too)


@dataclass(frozen=True)
class VideoProtocol:
    """How a video set is measured: ``channel`` rgb | y, ``border`` shaved, ``center_only``
    (the centre frame of each clip, Vimeo-90K-T), and the default layout/split of the set."""

    channel: str
    border: int
    center_only: bool
    layout: str
    split: str
    folder: str


VIDEO_SETS = {
    "REDS4": VideoProtocol("rgb", 0, False, "reds", "reds4", "REDS"),
    "Vid4": VideoProtocol("y", 0, False, "vid4", "all", "Vid4"),
    "Vimeo90K-T": VideoProtocol("y", 0, True, "vimeo90k", "test", "vimeo90k"),
}


def frame_psnr_ssim(sr: torch.Tensor, gt: torch.Tensor, channel: str = "y", border: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame (PSNR, SSIM) of (N, 3, H, W) [0, 1] frames after 8-bit quantisation: on BT.601 Y
    (``channel=y``), or on RGB (``rgb``: MSE over the three channels; SSIM the mean of the
    per-channel SSIMs, as BasicSR's ``calculate_ssim`` with ``test_y_channel: false``)."""
    if sr.shape != gt.shape:
        raise ValueError(f"SR frames {tuple(sr.shape)} and GT frames {tuple(gt.shape)} differ in shape")
    if channel == "y":
        a, b = protocol_luma(sr.detach(), gt)
        a, b = shave(a, border), shave(b, border)
        return psnr_y(a, b), ssim_y(a, b)
    if channel != "rgb":
        raise ValueError(f"video metric channel must be rgb or y, got {channel!r}")
    a = shave(quantize(sr.detach()).double(), border)
    b = shave(quantize(gt).double(), border)
    n = len(a)
    psnr = psnr_y(a.reshape(n, -1, a.shape[-1]), b.reshape(n, -1, b.shape[-1]))  # MSE over all channels
    ssim = ssim_y(a.flatten(0, 1), b.flatten(0, 1)).view(n, 3).mean(1)
    return psnr, ssim


class ClipMetrics(Metric):
    """Video-set PSNR/SSIM: per-frame values kept with their clip's dataset index; ``compute()``
    averages each clip's frames, then the clips (``{"psnr", "ssim", "images": clips}``)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, channel: str = "y", border: int = 0, center_only: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.channel, self.border, self.center_only = channel, int(border), bool(center_only)
        self.add_state("psnr", default=[], dist_reduce_fx="cat")
        self.add_state("ssim", default=[], dist_reduce_fx="cat")
        self.add_state("clip", default=[], dist_reduce_fx="cat")

    def update(self, sr: torch.Tensor, gt: torch.Tensor, index: int | torch.Tensor) -> None:
        """``sr``/``gt``: (T, 3, H, W) frames of clip ``index`` (the centre one alone when center_only)."""
        if self.center_only:
            sr, gt = sr[len(sr) // 2 : len(sr) // 2 + 1], gt[len(gt) // 2 : len(gt) // 2 + 1]
        p, s = frame_psnr_ssim(sr.float(), gt.float(), self.channel, self.border)
        self.psnr.append(p)
        self.ssim.append(s)
        self.clip.append(torch.full_like(p, int(torch.as_tensor(index).reshape(-1)[0]), dtype=torch.long))

    def per_clip(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(clip index, mean PSNR, mean SSIM) of each clip, sorted by index."""
        clip, p, s = dim_zero_cat(self.clip), dim_zero_cat(self.psnr), dim_zero_cat(self.ssim)
        uniq, inv = torch.unique(clip, return_inverse=True)
        count = torch.zeros(len(uniq), dtype=torch.float64, device=p.device).index_add_(0, inv, torch.ones_like(p))
        mean_p = torch.zeros_like(count).index_add_(0, inv, p.double()) / count
        mean_s = torch.zeros_like(count).index_add_(0, inv, s.double()) / count
        return uniq, mean_p, mean_s

    def compute(self) -> dict[str, torch.Tensor]:
        if len(self.clip) == 0:
            raise RuntimeError("ClipMetrics.compute() called before any update()")
        _, p, s = self.per_clip()
        return {"psnr": p.mean(), "ssim": s.mean(), "images": torch.tensor(len(p))}


def evaluate_video_set(nets: dict[str, nn.Module], name: str, data_dir: str | Path, scale: int, device: str = "cpu",
                       degradation: str = "BI", lr_source: str = "auto", with_tof: bool = True) -> list:
    """``SetResult`` rows (one per network, per-clip rows inside) of the video set ``name``
    (a key of ``VIDEO_SETS``) under ``<data_dir>/<folder>``, by that set's published protocol;
    with ``with_tof``, each clip's tOF (``evaluation/temporal.py``, on all its frames, the centre
    frame's neighbours too where PSNR takes the centre alone) in ``scores["tof"]``."""
    from sr_experiments.data.clips import load_clip, resolve_clip_sources
    from sr_experiments.evaluation.protocol import ImageResult, SetResult

    proto = VIDEO_SETS[name]
    spec = {"layout": proto.layout, "root": str(Path(data_dir) / proto.folder), "split": proto.split}
    sources = resolve_clip_sources(spec, scale, lr_source, degradation, key=f"eval.sets.{name}")
    metrics = {label: ClipMetrics(proto.channel, proto.border, proto.center_only) for label in nets}
    tofs: dict[str, dict[int, float]] = {label: {} for label in nets}
    for i, source in enumerate(sources):
        clip = load_clip(source, scale, degradation)
        lq, gt = clip.lq.to(device).float() / 255, clip.gt.to(device).float() / 255
        for label, net in nets.items():
            net = net if isinstance(net, nn.Module) else net.forward  # an inference Engine: its module
            sr = run_clip(net.eval(), lq, proto.center_only).float().clamp(0, 1)
            metrics[label].update(sr, gt, i)
            if with_tof:
                tofs[label][i] = tof(sr, gt)
    results = []
    lr_from = "files" if sources and sources[0].lq is not None else f"made here ({degradation})"
    for label, m in metrics.items():
        idx, p, s = m.per_clip()
        per_clip = [{"tof": tofs[label][int(j)]} if with_tof else {} for j in idx]
        clips = [ImageResult(name, scale, label, sources[int(j)].name, float(a), float(b), extra)
                 for j, a, b, extra in zip(idx, p, s, per_clip)]
        scores = {"tof": _mean_of_finite([c["tof"] for c in per_clip])} if with_tof else {}
        results.append(SetResult(f"{name}-{degradation}", scale, label, float(p.mean()), float(s.mean()), len(clips),
                                 lr_from, clips, scores))
    return results


def _mean_of_finite(values: list[float]) -> float:
    """The mean over clips that have a value (a one-frame clip has no tOF); NaN when none has."""
    kept = [v for v in values if math.isfinite(v)]
    return sum(kept) / len(kept) if kept else math.nan
