"""Evaluate on the SR benchmarks: `python eval.py ckpt_path=CKPT` or `python eval.py model=bicubic` (sr_experiments/conf/eval.yaml)."""

import os
import sys

import hydra
from omegaconf import DictConfig

from sr_experiments.cli import check_command_line, errors_as_one_line, fail, first_line


@hydra.main(version_base="1.3", config_path="sr_experiments/conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    # Imported here: torch and Lightning take seconds, which --help and completion should not pay.
    from sr_experiments.evaluation.protocol import SetsFailed
    from sr_experiments.evaluation.run import run_eval
    from sr_experiments.models.weights import CheckpointLoadError

    # The one error policy (cli.py): one line; exit 2 refused (a bad value, checkpoint or folder),
    # 1 failed while running (a full disk; some sets failed: the others' results are written).
    with errors_as_one_line("eval.py"):
        try:
            run_eval(cfg)
        except (SetsFailed, CheckpointLoadError) as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            fail("eval.py", first_line(e), 1 if isinstance(e, SetsFailed) else 2)


if __name__ == "__main__":
    check_command_line("eval.py", sys.argv[1:])
    main()
