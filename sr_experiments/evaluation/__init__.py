"""Evaluation: the metric protocol (PSNR/SSIM on Y, border crop), MATLAB-exact bicubic, and the
benchmark runner behind ``eval.py``."""
