"""Image super-resolution experiments on PyTorch Lightning and Hydra."""
