"""Inference: tiled forward passes, engines (PyTorch, ONNX), image files in any mode, export, and
the upscaling command behind ``upscale.py`` / ``sr-upscale``."""
