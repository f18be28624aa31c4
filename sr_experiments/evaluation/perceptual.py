"""Perceptual metrics beside PSNR/SSIM: LPIPS and DISTS (full-reference), NIQE (no-reference).

Computed by maintained libraries, never by hand: LPIPS v0.1 and DISTS by torchmetrics (a core
dependency; it ships the LPIPS linear layers and the DISTS alpha/beta weights), NIQE by pyiqa (the
``perceptual`` extra). The convention (README: Perceptual metrics), as BasicSR's
``calculate_lpips`` and pyiqa-based SR papers:

- on **RGB** (not Y), on the SR output clamped and rounded to 8 bits (what a saved PNG holds),
  scaled to [0, 1] (LPIPS maps it to [-1, 1] itself); a 1-channel file is its gray value on the
  three channels; NIQE turns RGB into luma itself, as its definition requires;
- with the **same border crop as PSNR** (``border`` = scale pixels from every side);
- per image, then the mean over images. Lower is better for all three.

Weights are never downloaded: the ImageNet backbones (torchvision's files) and NIQE's pristine
model are looked up in ``paths.weights_dir`` and then where torchvision and pyiqa cache them
(``<torch hub dir>/checkpoints``, ``<torch hub dir>/pyiqa``); a missing file is one line naming the
file, its URL and where to put it (``MissingWeights``), or the metric is left out
(``missing="skip"``). The library builds its own network; only the backbone it would download is
handed to it, built from the file found here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from sr_experiments.evaluation.metrics import quantize, shave
from sr_experiments.extras import require

__all__ = [
    "METRICS",
    "PERCEPTUAL",
    "LOWER_IS_BETTER",
    "MissingWeights",
    "WeightsFile",
    "weights_files",
    "find_weights",
    "perceptual_names",
    "PerceptualScorer",
    "PerceptualMeans",
    "write_random_weights",
]

# Every name eval.metrics / module.val_metrics take; psnr and ssim are always computed (the protocol).
PERCEPTUAL = ("lpips", "lpips_vgg", "dists", "niqe")
METRICS = ("psnr", "ssim", *PERCEPTUAL)
# The tables' lower-is-better columns: these and the video sets' tOF (evaluation/temporal.py).
LOWER_IS_BETTER = frozenset((*PERCEPTUAL, "tof"))
LABELS = {"lpips": "LPIPS", "lpips_vgg": "LPIPS-VGG", "dists": "DISTS", "niqe": "NIQE", "tof": "tOF"}
# LPIPS backbone of each name: torchmetrics' net_type and torchvision's architecture.
_LPIPS_NETS = {"lpips": ("alex", "alexnet"), "lpips_vgg": ("vgg", "vgg16")}
# NIQE needs at least one 96x96 block (the authors' block size) after the border crop.
NIQE_MIN_SIDE = 96


@dataclass(frozen=True)
class WeightsFile:
    """A file a metric needs: its name, where it is published, and the folder under the torch hub
    directory where its library caches it."""

    file: str
    url: str
    hub_subdir: str
    what: str


def _torchvision_weights(arch: str) -> WeightsFile:
    import torchvision.models as tvm

    enum = {"alexnet": tvm.AlexNet_Weights, "vgg16": tvm.VGG16_Weights}[arch]
    url = enum.IMAGENET1K_V1.url  # what torchvision (so torchmetrics, pyiqa, lpips) downloads
    return WeightsFile(url.rsplit("/", 1)[-1], url, "checkpoints", f"torchvision's ImageNet {arch}")


# pyiqa 0.1.16's default NIQE model (the authors' MATLAB release, modelparameters.mat).
NIQE_PARAMS = WeightsFile(
    "niqe_modelparameters.mat",
    "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/niqe_modelparameters.mat",
    "pyiqa",
    "NIQE pristine-image model",
)


def weights_files(name: str) -> list[WeightsFile]:
    """The files metric ``name`` needs beyond what its library's wheel ships."""
    if name in _LPIPS_NETS:
        return [_torchvision_weights(_LPIPS_NETS[name][1])]
    if name == "dists":
        return [_torchvision_weights("vgg16")]
    if name == "niqe":
        return [NIQE_PARAMS]
    return []


class MissingWeights(FileNotFoundError):
    """A metric's weights file is not on this machine; the message is the one line to show."""

    def __init__(self, message: str, note: str) -> None:
        super().__init__(message)
        self.note = note  # the line printed when the metric is skipped instead


def _places(spec: WeightsFile, weights_dir: str | Path | None) -> list[Path]:
    hub = Path(torch.hub.get_dir()) / spec.hub_subdir  # $TORCH_HOME/hub, ~/.cache/torch/hub by default
    return ([Path(weights_dir).expanduser()] if weights_dir else []) + [hub]


def find_weights(
    name: str, spec: WeightsFile, weights_dir: str | Path | None = None, skip_key: str | None = None
) -> Path:
    """The path of ``spec``'s file, or ``MissingWeights`` naming it, its URL and where it goes."""
    places = _places(spec, weights_dir)
    for folder in places:
        if (folder / spec.file).is_file():
            return folder / spec.file
    looked = " or ".join(str(p) for p in places)
    skip = f", or set {skip_key}=skip to leave {name} out" if skip_key else ""
    get = f"download {spec.url} into {places[-1]} (or paths.weights_dir)"
    raise MissingWeights(
        f"{name} needs {spec.file} ({spec.what}), not found in {looked}: nothing is downloaded at run time; {get}{skip}",
        f"{name}: skipped ({skip_key or 'missing_weights'}=skip), {spec.file} is not in {looked}; {get}",
    )


def perceptual_names(value: Any, key: str) -> list[str]:
    """The perceptual metrics of a metric list (``[psnr, ssim, lpips]``), in their order; a name
    that is not a metric is one line listing those there are."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    bad = [str(v) for v in items if str(v) not in METRICS]
    if bad:
        raise ValueError(f"{key}: unknown metric(s) {bad}; choose from {list(METRICS)} (psnr and ssim are always computed)")
    return list(dict.fromkeys(str(v) for v in items if str(v) in PERCEPTUAL))


@contextlib.contextmanager
def _backbone_from(module: Any, attr: str, make: Callable[..., Any]) -> Iterator[None]:
    """Hand the library the backbone built here, where it would ask torchvision to download one."""
    with mock.patch.object(module, attr, make):
        yield


def _imagenet_backbone(arch: str, path: Path) -> torch.nn.Module:
    """torchvision's ``arch`` with the ImageNet weights of ``path`` (the file torchvision would
    download), built on the meta device so the unused classifier costs no initialisation."""
    import torchvision.models as tvm

    from sr_experiments.models.weights import read_weights  # the one weights reader: tensors only

    with torch.device("meta"):
        net = getattr(tvm, arch)(weights=None)
    try:
        state = read_weights(path)
        net.load_state_dict(state, strict=True, assign=True)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file: say which
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not torchvision's ImageNet {arch} weights ({first})") from None
    return net.eval()


class _LPIPS:
    """torchmetrics' LPIPS v0.1 network (linear layers from its wheel), one value per image."""

    def __init__(self, name: str, path: Path) -> None:
        from torchmetrics.functional.image import lpips as tm_lpips
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        net_type, arch = _LPIPS_NETS[name]
        backbone = _imagenet_backbone(arch, path)
        with _backbone_from(tm_lpips, "_get_tv_model_features", lambda net, pretrained=False: backbone.features):
            self.net = LearnedPerceptualImagePatchSimilarity(net_type=net_type, normalize=True).net

    def __call__(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        return self.net(sr, gt, normalize=True).reshape(-1)  # [0, 1] in, mapped to [-1, 1] inside


class _DISTS:
    """torchmetrics' DISTS network (alpha/beta from its wheel), one value per image."""

    def __init__(self, path: Path) -> None:
        from torchmetrics.functional.image import dists as tm_dists

        backbone = _imagenet_backbone("vgg16", path)
        with _backbone_from(tm_dists, "vgg16", lambda weights=None, **_: backbone):
            self.net = tm_dists.DISTSNetwork(load_weights=True).eval()

    def __call__(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        return self.net(sr, gt).reshape(-1)


class _NIQE:
    """pyiqa's NIQE (the authors' pristine model, RGB -> luma inside), one value per image."""

    def __init__(self, path: Path, device: torch.device, key: str) -> None:
        pyiqa = require("pyiqa", f"{key}=[niqe]")
        logging.getLogger("pyiqa").setLevel(logging.WARNING)  # not "Metric [NIQE] is created." on the console
        self.net = pyiqa.create_metric("niqe", device=device, pretrained_model_path=str(path))

    def __call__(self, sr: torch.Tensor, gt: torch.Tensor | None = None) -> torch.Tensor:
        if min(sr.shape[-2:]) < NIQE_MIN_SIDE:
            raise ValueError(f"NIQE needs images of at least {NIQE_MIN_SIDE}x{NIQE_MIN_SIDE} pixels after the border "
                             f"crop, got {tuple(sr.shape[-2:])}")
        return self.net(sr).reshape(-1)


class PerceptualScorer:
    """The perceptual metrics of ``names``, their weights loaded once.

    ``scorer(sr, gt, border)`` takes (N, 3, H, W) images in [0, 1] (SR as the network gave it) and
    returns ``{name: (N,) float64}``: SR clamped and rounded to 8 bits, both cropped by ``border``.
    ``missing="skip"`` leaves out a metric whose weights are absent; ``skipped`` then holds the one
    line saying why, by name.
    """

    def __init__(
        self,
        names: Iterable[str],
        weights_dir: str | Path | None = None,
        missing: str = "error",
        device: str | torch.device = "cpu",
        key: str = "eval.metrics",
        skip_key: str | None = "eval.missing_weights",
    ) -> None:
        if missing not in ("error", "skip"):
            raise ValueError(f"{skip_key or 'missing_weights'}={missing!r}: choose error or skip")
        self.device = torch.device(device)
        self.metrics: dict[str, Callable[..., torch.Tensor]] = {}
        self.skipped: dict[str, str] = {}
        self.files: dict[str, list[str]] = {}
        for name in perceptual_names(list(names), key):
            if name == "niqe":  # the missing extra first: a hint about weights would be premature
                require("pyiqa", f"{key}=[niqe]")
            try:
                paths = [find_weights(name, spec, weights_dir, skip_key) for spec in weights_files(name)]
            except MissingWeights as e:
                if missing == "error":
                    raise
                self.skipped[name] = e.note
                continue
            self.files[name] = [str(p) for p in paths]
            if name in _LPIPS_NETS:
                metric: Any = _LPIPS(name, paths[0])
            elif name == "dists":
                metric = _DISTS(paths[0])
            else:
                metric = _NIQE(paths[0], self.device, key)
            if hasattr(metric.net, "to"):
                metric.net.to(self.device)
            self.metrics[name] = metric

    @property
    def names(self) -> list[str]:
        return list(self.metrics)

    def to(self, device: str | torch.device) -> PerceptualScorer:
        device = torch.device(device)
        if device != self.device:
            for m in self.metrics.values():
                m.net.to(device)
            self.device = device
        return self

    @torch.inference_mode()
    def __call__(self, sr: torch.Tensor, gt: torch.Tensor, border: int) -> dict[str, torch.Tensor]:
        if sr.shape != gt.shape:
            raise ValueError(f"SR output {tuple(sr.shape)} and HR {tuple(gt.shape)} differ in shape")
        # The 8-bit values a saved PNG holds, in [0, 1]; HR is 8-bit already (rounding is a no-op).
        sr8 = shave(quantize(sr.detach().float()) / 255, border).to(self.device)
        gt8 = shave(quantize(gt.float()) / 255, border).to(self.device)
        with torch.autocast(self.device.type, enabled=False):  # fp32 under a bf16 training run too
            return {name: m(sr8, gt8).double().cpu() for name, m in self.metrics.items()}

    def describe(self) -> dict[str, Any]:
        """The conventions and files, for results.json."""
        return {
            "metrics": self.names,
            "skipped": dict(self.skipped),
            "input": "RGB, SR clamped to [0, 1] and rounded to uint8, then /255; LPIPS maps [0, 1] to [-1, 1]",
            "border_crop": "as PSNR/SSIM: scale pixels from every side",
            "averaging": "per image, then the mean over images",
            "lower_is_better": sorted(LOWER_IS_BETTER & set(self.names)),
            "implementations": {n: _IMPLEMENTATION[n] for n in self.names},
            "weights": dict(self.files),
            "versions": {d: _version(d) for d in ("torchmetrics", *(["pyiqa"] if "niqe" in self.metrics else []))},
        }


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


_IMPLEMENTATION = {
    "lpips": "torchmetrics LPIPS v0.1, AlexNet (pyiqa 'lpips')",
    "lpips_vgg": "torchmetrics LPIPS v0.1, VGG16 (BasicSR calculate_lpips, pyiqa 'lpips-vgg')",
    "dists": "torchmetrics DISTS (official alpha/beta, VGG16), no resizing",
    "niqe": "pyiqa NIQE (original model, 96x96 blocks, luma of RGB)",
}


class PerceptualMeans(Metric):
    """Image-averaged perceptual metrics in validation, exact under DDP (as ``SRMetrics``: each
    image counted once by its dataset index). ``compute()`` returns ``{name: mean}``."""

    full_state_update = False
    higher_is_better = False

    def __init__(self, names: Iterable[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names = list(names)
        for name in self.names:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")

    def update(self, scores: Mapping[str, torch.Tensor], index: torch.Tensor) -> None:  # type: ignore[override]
        index = torch.as_tensor(index, device=self.device).reshape(-1).long()
        for name in self.names:
            getattr(self, name).append(scores[name].to(self.device, torch.float64).reshape(-1))
        self.index.append(index)

    def compute(self) -> dict[str, torch.Tensor]:
        idx = dim_zero_cat(self.index)
        uniq, inverse = torch.unique(idx, return_inverse=True)
        first = torch.full((len(uniq),), len(idx), dtype=torch.long, device=idx.device)
        first.scatter_reduce_(0, inverse, torch.arange(len(idx), device=idx.device), reduce="amin")
        return {name: dim_zero_cat(getattr(self, name))[first].mean() for name in self.names}


def write_random_weights(folder: str | Path, names: Iterable[str], seed: int = 0) -> list[Path]:
    """Random stand-ins for the weights files of ``names``, written into ``folder`` under their real
    names, so tests and timings run without the real files (never for reported numbers).

    The backbones' unused classifier layers are stored as one broadcast value (a few bytes instead
    of hundreds of MB); they load like the real files, by torchvision as by ``find_weights``.
    """
    import torchvision.models as tvm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    written: list[Path] = []
    for name in names:
        for spec in weights_files(name):
            path = folder / spec.file
            written.append(path)
            if path.is_file():
                continue
            if spec is NIQE_PARAMS:
                import numpy as np
                import scipy.io

                rng = np.random.default_rng(seed)
                a = rng.standard_normal((36, 36))
                scipy.io.savemat(path, {"mu_prisparam": rng.standard_normal((1, 36)),
                                        "cov_prisparam": a @ a.T / 36 + np.eye(36)})
                continue
            arch = spec.file.split("-")[0]
            with torch.device("meta"):
                shapes = {k: v.shape for k, v in getattr(tvm, arch)(weights=None).state_dict().items()}
            state = {}
            for k, shape in shapes.items():
                if k.startswith("features."):
                    fan_in = max(1, int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1)
                    state[k] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5 if len(shape) > 1 \
                        else torch.randn(shape, generator=gen) * 0.01
                else:
                    state[k] = torch.zeros(()).expand(shape)
            torch.save(state, path)
    return written
