"""Zero-shot SR of your images: `python zssr.py input=PATH output=DIR scale=2` (sr_experiments/conf/zssr.yaml).

Each image trains its own small network on pairs made from itself (ZSSR, Shocher et al. 2018): no
weights, no training data. Exit status 0 when every input was written, 1 when some failed (each
named on stderr), 2 when nothing could start.
"""

import sys

import hydra
from omegaconf import DictConfig

from sr_experiments.cli import check_command_line


@hydra.main(version_base="1.3", config_path="sr_experiments/conf", config_name="zssr")
def main(cfg: DictConfig) -> None:
    # Imported here: torch and Lightning take seconds, which --help and completion should not pay.
    from sr_experiments.inference.zssr import main as run

    status = run(cfg)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    check_command_line("zssr.py", sys.argv[1:])
    main()
