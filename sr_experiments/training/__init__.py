"""Training algorithm: ``SRLitModule`` (and its GAN and video variants), losses, EMA, LR schedules.
Run infrastructure (the run, its folder, loggers, callbacks) is ``sr_experiments/runs``."""
