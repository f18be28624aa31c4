"""Export a trained network: ONNX (any input size) or TorchScript for deployment, each checked
against the PyTorch output on a random image of another size than the one traced; or its weights
as ``.safetensors`` / ``.pth`` (BasicSR layout) in the official key layout, which spandrel (chaiNNer,
ComfyUI) reads as the same architecture, checked by reading them back the way spandrel does."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sr_experiments.extras import require

TRACE_SIZE = (48, 64)  # (h, w) of the example input the graph is traced on
CHECK_SIZE = (37, 53)  # (h, w) of the check input: odd, and unlike the trace size
TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """The exported model is missing or disagrees with PyTorch; the message says by how much."""


def export_onnx(net: nn.Module, spec: Mapping[str, Any], path: Path, opset: int = 17) -> None:
    """Write ``net`` as ONNX with dynamic batch, height and width; the spec (and scale) as metadata."""
    onnx = require("onnx", "export.py format=onnx")

    x = torch.rand(1, 3, *TRACE_SIZE)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings about python ints in shapes; the check below is what counts
        # dynamo=False: the TorchScript-based exporter handles these networks' dynamic H/W reliably.
        torch.onnx.export(net, (x,), str(path), input_names=["lq"], output_names=["sr"],
                          dynamic_axes={"lq": axes, "sr": axes}, opset_version=opset, dynamo=False)
    model = onnx.load(str(path))
    for key, value in (("scale", str(int(spec["scale"]))), ("network", json.dumps(dict(spec)))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def export_torchscript(net: nn.Module, spec: Mapping[str, Any], path: Path) -> None:
    """``torch.jit.trace`` (shape-generic for convolutional networks; the check below proves it)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, torch.rand(1, 3, *TRACE_SIZE), check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={"network.json": json.dumps(dict(spec))})


def run_exported(path: Path, fmt: str, x: torch.Tensor) -> torch.Tensor:
    if fmt == "onnx":
        ort = require("onnxruntime", "checking the ONNX export")

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (y,) = session.run(None, {"lq": x.numpy()})
        return torch.from_numpy(np.asarray(y))
    with torch.no_grad():
        return torch.jit.load(str(path))(x)


def check_export(net: nn.Module, path: Path, fmt: str, seed: int = 0) -> float:
    """Max |exported - PyTorch| on a random ``CHECK_SIZE`` image; raises ExportError above ``TOLERANCE``."""
    x = torch.rand(1, 3, *CHECK_SIZE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = net(x)
    got = run_exported(path, fmt, x)
    if got.shape != ref.shape:
        raise ExportError(f"{path}: output shape {tuple(got.shape)} != PyTorch's {tuple(ref.shape)} on a {CHECK_SIZE} input")
    diff = float((got - ref).abs().max())
    if not diff < TOLERANCE:
        raise ExportError(f"{path}: max abs difference {diff:.3g} from PyTorch exceeds {TOLERANCE:g}")
    return diff


WEIGHT_FORMATS = ("safetensors", "pth")


def export_weights(net: nn.Module, spec: Mapping[str, Any], fmt: str, path: str | Path, raw: nn.Module | None = None) -> str:
    """Write ``net``'s weights as ``fmt`` (official layout, our spec beside them) and check the file.

    ``raw``: when ``net`` holds EMA weights, the raw weights of the same run; ``pth`` then carries
    both as BasicSR does (``params_ema``: ``net``, preferred by loaders; ``params``: ``raw``).
    ``safetensors`` holds one state dict: ``net``'s.

    The check reads the file back twice: through this framework's loader (identical output) and,
    for architectures spandrel knows, through spandrel (same architecture and scale, output within
    1e-5). Returns a line saying what was checked; the file is removed if a check fails."""
    from sr_experiments.models.interop import check_with_spandrel, official_state_dict
    from sr_experiments.models.loading import load_network

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.float().eval().cpu()
    state = official_state_dict(net)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if fmt == "safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp), metadata={"format": "pt", "network": json.dumps(dict(spec)),
                                                  "scale": str(int(spec["scale"]))})
        elif fmt == "pth":  # BasicSR's layout: what its, spandrel's and most SR code's loaders unwrap
            if raw is not None:
                raw_state = official_state_dict(raw.float().eval().cpu())
                torch.save({"params_ema": state, "params": raw_state, "network": dict(spec)}, tmp)
            else:
                torch.save({"params": state, "network": dict(spec)}, tmp)
        else:
            raise ValueError(f"format={fmt} is not one of {', '.join(WEIGHT_FORMATS)}")
        tmp.replace(path)
        x = torch.rand(1, 3, *CHECK_SIZE, generator=torch.Generator().manual_seed(0))
        reloaded, _ = load_network(path, quiet=True)
        with torch.no_grad():
            diff = float((reloaded(x.clone()) - net(x.clone())).abs().max())
        if diff != 0.0:
            raise ExportError(f"{path}: reloaded here, the network differs by {diff:.3g} (max abs)")
        return check_with_spandrel(net, path, spec)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        if isinstance(e, ExportError):
            raise
        raise ExportError(f"{spec['name']} cannot be exported to {fmt}: {e}") from e


def export_network(net: nn.Module, spec: Mapping[str, Any], fmt: str, path: str | Path) -> float:
    """Export ``net`` (fp32, eval) to ``path`` as ``fmt`` and check it; returns the max abs difference.

    Networks whose forward depends on Python-side shape arithmetic (bicubic pre-upsampling in
    SRCNN/VDSR, SwinIR's window padding, SAFMN's adaptive pooling in ONNX) fail here with an
    ExportError rather than producing a file fixed to the traced size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.float().eval().cpu()
    if fmt not in ("onnx", "torchscript"):
        raise ValueError(f"format={fmt} is not one of onnx, torchscript")
    if fmt == "onnx":  # before tracing: a missing package is the user's to install, not an export failure
        require("onnx", "export.py format=onnx")
        require("onnxruntime", "export.py format=onnx (the check against PyTorch)")
    try:
        (export_onnx if fmt == "onnx" else export_torchscript)(net, spec, path)
        return check_export(net, path, fmt)
    except Exception as e:
        path.unlink(missing_ok=True)  # never leave a file that does not compute what the network does
        if isinstance(e, ExportError):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ExportError(f"{spec['name']} cannot be exported to {fmt}: {type(e).__name__}: {first}") from e
