"""Export a checkpoint: `python export.py ckpt_path=CKPT format=onnx|torchscript|safetensors|pth`
(sr_experiments/conf/export.yaml).

onnx / torchscript take any input size and are checked against PyTorch on a random image (max abs
difference < 1e-4, onnxruntime for ONNX); `python upscale.py ckpt_path=MODEL.onnx ...` runs them.
safetensors / pth hold the weights in the official layout (pth: BasicSR's ``params``, and
``params_ema`` for a run with EMA: the EMA weights, which loaders prefer), which
spandrel-based tools (chaiNNer, ComfyUI) load as the same architecture; checked by reading back.
"""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from sr_experiments.cli import check_command_line, errors_as_one_line, fail, first_line
from sr_experiments.extras import MissingExtra
from sr_experiments.outputs import check_targets, check_writable_folder

PROG = "export"

SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors", "pth": ".pth"}


@hydra.main(version_base="1.3", config_path="sr_experiments/conf", config_name="export")
def main(cfg: DictConfig) -> None:
    """Exit status 0 written and checked; 2 refused (bad setting or checkpoint, or an output the
    output policy refuses: one line, nothing written); 1 failed while writing (a full disk)."""
    # Imported here: torch and Lightning take seconds, which --help and completion should not pay.
    from sr_experiments.methods import weights_source

    if not (cfg.ckpt_path or cfg.model.get("pretrained")):
        fail(PROG, "pass ckpt_path=FILE (a train.py checkpoint, `latest`, or any .pth/.safetensors spandrel reads)")
    with errors_as_one_line(PROG):
        paths = weights_source(cfg)  # ckpt_path (latest: the newest run's) or model.pretrained
        if len(paths) != 1:
            fail(PROG, f"ckpt_path names {len(paths)} files: export one at a time")
        ckpt = paths[0]
        if cfg.format not in SUFFIXES:
            fail(PROG, f"format={cfg.format} is not one of {', '.join(SUFFIXES)}")
        out = Path(cfg.output) if cfg.output else Path(ckpt).with_suffix(SUFFIXES[cfg.format])
        # The output is planned before loading anything: never the checkpoint, never a file this run
        # did not write (unless overwrite=true), and a folder that can be written.
        check_targets([out], [ckpt], bool(cfg.get("overwrite", False)))
        check_writable_folder(out.parent)
        export(cfg, ckpt, out)


def export(cfg: DictConfig, ckpt: str, out: Path) -> None:
    from sr_experiments.inference.export import (
        WEIGHT_FORMATS,
        ExportError,
        export_network,
        export_weights,
    )
    from sr_experiments.methods import NetworkMethod, resolve_method

    overwrite = bool(cfg.get("overwrite", False))
    try:
        method = resolve_method(cfg, paths=[str(ckpt)])
    except (ValueError, OSError, RuntimeError) as e:  # messages name the file and what to do
        fail(PROG, first_line(e))
    if not isinstance(method, NetworkMethod):
        fail(PROG, f"ckpt_path={ckpt} is not a weights file (.ckpt, .pth, .safetensors): nothing to export")
    net, spec = method.network(), method.spec
    try:
        if cfg.format in WEIGHT_FORMATS:
            # A run with EMA: params_ema (the EMA, loaded by default) and params (raw), as BasicSR.
            raw = method.raw_network() if cfg.format == "pth" else None
            checked = export_weights(net, spec, cfg.format, out, raw=raw, overwrite=overwrite)
            print(f"export: {out} ({cfg.format}, {spec['name']} x{spec['scale']}); {checked}")
            return
        diff = export_network(net, spec, cfg.format, out, overwrite=overwrite)
    except ExportError as e:  # the file did not compute what the network does: nothing was written
        fail(PROG, first_line(e), 1)
    except MissingExtra as e:
        fail(PROG, first_line(e))
    print(f"export: {out} ({cfg.format}, {spec['name']} x{spec['scale']}); max abs difference from PyTorch "
          f"on a random image: {diff:.2e}")


if __name__ == "__main__":
    check_command_line("export.py", sys.argv[1:])
    main()
