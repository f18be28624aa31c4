"""Train an SR network: `python train.py model=deep lr=1e-4` (see sr_experiments/conf/train.yaml)."""

import os
import sys

import hydra
from omegaconf import DictConfig

from sr_experiments.cli import check_command_line
from sr_experiments.extras import MissingExtra
from sr_experiments.training.config_schema import ConfigError
from sr_experiments.training.run_dir import RunDirError

# Errors a user can fix from the message alone: one line, not a traceback from inside torch.
USAGE_ERRORS = (ConfigError, RunDirError, MissingExtra)
INPUT_ERRORS = (ValueError, FileNotFoundError, FloatingPointError, MissingExtra)


@hydra.main(version_base="1.3", config_path="sr_experiments/conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # Imported here, not at the top: Lightning and torch take seconds to import, which --help,
    # --cfg and shell completion should not pay.
    from sr_experiments.training.run import train

    try:
        summary = train(cfg)
    except INPUT_ERRORS as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"train.py: {e}", file=sys.stderr, flush=True)
        sys.exit(2 if isinstance(e, USAGE_ERRORS) else 1)
    best = summary.get("best")
    # Returned for Hydra sweepers (e.g. Optuna): the best validation PSNR.
    return best["psnr"] if best else None


if __name__ == "__main__":
    check_command_line("train.py", sys.argv[1:])
    main()
