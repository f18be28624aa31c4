"""Upscale your images: `python upscale.py ckpt_path=CKPT input=PATH output=DIR` (sr_experiments/conf/upscale.yaml).

Exit status 0 when every input was written, 1 when some failed (each named on stderr), 2 when
nothing could start.
"""

import sys

import hydra
from omegaconf import DictConfig

from sr_experiments.cli import check_command_line


@hydra.main(version_base="1.3", config_path="sr_experiments/conf", config_name="upscale")
def main(cfg: DictConfig) -> None:
    # Imported here: torch and Lightning take seconds, which --help and completion should not pay.
    from sr_experiments.inference.upscale import main as run

    status = run(cfg)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    check_command_line("upscale.py", sys.argv[1:])
    main()
