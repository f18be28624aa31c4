"""Training: ``SRLitModule``, losses, LR schedules, callbacks, loggers, and the run itself
(config schema, run folders, resume, signals)."""
