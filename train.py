"""Train an SR network: `python train.py model=deep lr=1e-4` (see sr_experiments/conf/train.yaml)."""

import os
import sys

import hydra
from omegaconf import DictConfig

from sr_experiments.cli import check_command_line, errors_as_one_line, fail, first_line


@hydra.main(version_base="1.3", config_path="sr_experiments/conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    # Imported here, not at the top: Lightning and torch take seconds to import, which --help,
    # --cfg and shell completion should not pay.
    from sr_experiments.models.weights import CheckpointLoadError
    from sr_experiments.runs.run import train

    # The one error policy (cli.py): a bad value, key, file or folder is one line and exit 2; a
    # full disk or a diverged run one line and exit 1.
    with errors_as_one_line("train.py"):
        try:
            summary = train(cfg)
        except (CheckpointLoadError, FloatingPointError) as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            fail("train.py", first_line(e), 2 if isinstance(e, CheckpointLoadError) else 1)
    best = summary.get("best")
    # Returned for Hydra sweepers (e.g. Optuna): the best validation PSNR.
    return best["psnr"] if best else None


if __name__ == "__main__":
    check_command_line("train.py", sys.argv[1:])
    main()
