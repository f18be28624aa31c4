"""Evaluate on the SR benchmarks: `python eval.py ckpt_path=CKPT` or `python eval.py model=bicubic` (sr_experiments/conf/eval.yaml)."""

import sys

import hydra
from omegaconf import DictConfig

from sr_experiments.cli import check_command_line
from sr_experiments.extras import MissingExtra


@hydra.main(version_base="1.3", config_path="sr_experiments/conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    # Imported here: torch and Lightning take seconds, which --help and completion should not pay.
    from sr_experiments.evaluation.protocol import SetsFailed
    from sr_experiments.evaluation.run import run_eval
    from sr_experiments.models.loading import CheckpointLoadError

    try:
        run_eval(cfg)
    except SetsFailed as e:  # the sets that worked are written; exit non-zero for scripts and CI
        sys.exit(f"eval: {e}")
    except (MissingExtra, CheckpointLoadError, FileNotFoundError) as e:
        sys.exit(f"eval: {e}")
    except ValueError as e:  # a checkpoint that fits no network, spandrel's or ours: the message says which
        sys.exit(f"eval: {e}")


if __name__ == "__main__":
    check_command_line("eval.py", sys.argv[1:])
    main()
