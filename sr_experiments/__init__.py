"""Image super-resolution experiments on PyTorch Lightning and Hydra.

Subpackages by stage: ``models`` (the zoo and weight loading), ``data`` (images, pairs, patch
sampling), ``training`` (the LightningModule, losses, callbacks, run management),
``evaluation`` (the metric protocol, MATLAB bicubic, the benchmark runner), ``inference``
(tiling, engines, image files, export, upscaling) and ``tools`` (compare, info, download).
Importing this package imports none of them (and no torch): command lines start fast.
"""

from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent / "conf"  # the Hydra configs, shipped inside the package
