"""Run infrastructure: the training run (run.py), its folder and config checks, loggers, checkpoints
and callbacks. It drives the training algorithm in ``sr_experiments/training`` (imported from
here, never the reverse)."""
