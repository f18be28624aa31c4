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

from sr_experiments.cli import first_line
from sr_experiments.extras import require
from sr_experiments.outputs import atomic_write

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


def check_input(net: nn.Module, seed: int = 0) -> torch.Tensor:
    """The random input exports are checked on: a ``CHECK_SIZE`` image, or for a video network a
    clip of its window (3 frames where it takes any length) at 32x48 (EDVR needs multiples of 4)."""
    from sr_experiments.models.registry import is_multi_frame

    generator = torch.Generator().manual_seed(seed)
    if is_multi_frame(net):
        return torch.rand(1, getattr(net, "num_frame", None) or 3, 3, 32, 48, generator=generator)
    return torch.rand(1, 3, *CHECK_SIZE, generator=generator)


def check_export(net: nn.Module, path: Path, fmt: str, seed: int = 0, name: Path | None = None) -> float:
    """Max |exported - PyTorch| on a random ``CHECK_SIZE`` image; raises ExportError above ``TOLERANCE``
    (``name``: the file to name in the message, where ``path`` is its temporary copy)."""
    name = name or path
    x = check_input(net, seed)
    with torch.no_grad():
        ref = net(x)
    got = run_exported(path, fmt, x)
    if got.shape != ref.shape:
        raise ExportError(f"{name}: output shape {tuple(got.shape)} != PyTorch's {tuple(ref.shape)} on a {CHECK_SIZE} input")
    diff = float((got - ref).abs().max())
    if not diff < TOLERANCE:
        raise ExportError(f"{name}: max abs difference {diff:.3g} from PyTorch exceeds {TOLERANCE:g}")
    return diff


WEIGHT_FORMATS = ("safetensors", "pth")


def export_weights(
    net: nn.Module, spec: Mapping[str, Any], fmt: str, path: str | Path, raw: nn.Module | None = None,
    overwrite: bool = True,
) -> str:
    """Write ``net``'s weights as ``fmt`` (official layout, our spec beside them) and check the file.

    ``raw``: when ``net`` holds EMA weights, the raw weights of the same run; ``pth`` then carries
    both as BasicSR does (``params_ema``: ``net``, preferred by loaders; ``params``: ``raw``).
    ``safetensors`` holds one state dict: ``net``'s.

    The check reads the file back twice: through this framework's loader (identical output) and,
    for architectures spandrel knows, through spandrel (same architecture and scale, output within
    1e-5). Returns a line saying what was checked. The file is written and checked under a
    temporary name (``outputs.atomic_write``): a failed check or a full disk leaves ``path`` as it was."""
    from sr_experiments.models.interop import check_with_spandrel
    from sr_experiments.models.weights import load_network, read_weights, unwrap_state_dict

    path = Path(path)
    if fmt not in WEIGHT_FORMATS:
        raise ValueError(f"format={fmt} is not one of {', '.join(WEIGHT_FORMATS)}")
    net = net.float().eval().cpu()
    with atomic_write(path, overwrite) as tmp:
        try:
            _save_weights(net, spec, fmt, tmp, raw)
            x = check_input(net)
            reloaded, _ = load_network(tmp, quiet=True)
            with torch.no_grad():
                diff = float((reloaded(x.clone()) - net(x.clone())).abs().max())
            if diff != 0.0:
                raise ExportError(f"{path}: reloaded here, the network differs by {diff:.3g} (max abs)")
            return check_with_spandrel(net, unwrap_state_dict(read_weights(tmp)), tmp, spec).replace(str(tmp), str(path))
        except (ExportError, OSError):
            raise  # OSError: atomic_write says it in one line (a full disk, a read-only folder)
        except Exception as e:
            raise ExportError(f"{spec['name']} cannot be exported to {fmt}: {first_line(e).replace(str(tmp), str(path))}") from None


def _save_weights(net: nn.Module, spec: Mapping[str, Any], fmt: str, path: Path, raw: nn.Module | None) -> None:
    from sr_experiments.models.interop import official_state_dict

    state = official_state_dict(net)
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={"format": "pt", "network": json.dumps(dict(spec)),
                                              "scale": str(int(spec["scale"]))})
    elif raw is not None:  # pth, BasicSR's layout: what its, spandrel's and most SR code's loaders unwrap
        torch.save({"params_ema": state, "params": official_state_dict(raw.float().eval().cpu()), "network": dict(spec)}, path)
    else:
        torch.save({"params": state, "network": dict(spec)}, path)


def export_network(net: nn.Module, spec: Mapping[str, Any], fmt: str, path: str | Path, overwrite: bool = True) -> float:
    """Export ``net`` (fp32, eval) to ``path`` as ``fmt`` and check it; returns the max abs difference.

    Networks whose forward depends on Python-side shape arithmetic (bicubic pre-upsampling in
    SRCNN/VDSR, SwinIR's window padding, SAFMN's adaptive pooling in ONNX) fail here with an
    ExportError rather than producing a file fixed to the traced size. The file is written and
    checked under a temporary name (``outputs.atomic_write``): a failure leaves ``path`` as it was."""
    path = Path(path)
    net = net.float().eval().cpu()
    if fmt not in ("onnx", "torchscript"):
        raise ValueError(f"format={fmt} is not one of onnx, torchscript")
    if fmt == "onnx":  # before tracing: a missing package is the user's to install, not an export failure
        require("onnx", "export.py format=onnx")
        require("onnxruntime", "export.py format=onnx (the check against PyTorch)")
    with atomic_write(path, overwrite) as tmp:
        try:
            (export_onnx if fmt == "onnx" else export_torchscript)(net, spec, tmp)
            return check_export(net, tmp, fmt, name=path)
        except (ExportError, OSError):
            raise  # OSError: atomic_write says it in one line (a full disk, a read-only folder)
        except Exception as e:  # never leave a file that does not compute what the network does
            raise ExportError(f"{spec['name']} cannot be exported to {fmt}: {type(e).__name__}: {first_line(e)}") from None
