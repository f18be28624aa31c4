"""Prepare a training set for data=stream: `python prepare.py input=DIR output=DIR scale=[2,3,4]`
(sr_experiments/conf/prepare.yaml; sr_experiments/data/prepare.py). Exit status 0 done (or already
done), 2 refused (bad input or output, one line naming it), 1 failed while running."""

import sys

import hydra
from omegaconf import DictConfig

from sr_experiments.cli import check_command_line, errors_as_one_line


@hydra.main(version_base="1.3", config_path="sr_experiments/conf", config_name="prepare")
def main(cfg: DictConfig) -> None:
    with errors_as_one_line("prepare.py"):
        from sr_experiments.data.prepare import run_prepare  # torch only after argument parsing

        run_prepare(cfg)


if __name__ == "__main__":
    check_command_line("prepare.py", sys.argv[1:])
    main()
