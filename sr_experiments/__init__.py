"""Image super-resolution experiments on PyTorch Lightning and Hydra.

Subpackages by stage: ``imaging`` (the ground: MATLAB bicubic, image files in and out,
labelled pictures, tiling), ``models`` (the zoo and weight loading), ``data`` (sources, pairs, patch
sampling), ``training`` (the LightningModule, losses, callbacks, run management),
``evaluation`` (the metric protocol, the benchmark runner), ``inference`` (engines,
export, upscaling) and ``tools`` (compare, info, download).
Importing this package imports none of them (and no torch): command lines start fast.
"""

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent / "conf"  # the Hydra configs, shipped inside the package
