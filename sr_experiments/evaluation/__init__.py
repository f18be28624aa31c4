"""Evaluation: the metric protocol (PSNR/SSIM on Y, border crop) and the benchmark runner behind
``eval.py``; MATLAB-exact bicubic is in ``sr_experiments/imaging``."""
