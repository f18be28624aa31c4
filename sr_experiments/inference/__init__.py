"""Inference: engines (PyTorch, ONNX), export, and the upscaling command
behind ``upscale.py`` / ``sr-upscale``; image files in any mode are read and written by
``sr_experiments/imaging/io.py``, tiles by ``sr_experiments/imaging/tiling.py``."""
