"""Write the degraded LR of HR images: `python degrade.py input=DIR output=DIR scale=4 degradation=realesrgan seed=0`
(sr_experiments/conf/degrade.yaml; verbose=true adds the kernels and parameters drawn).

Exit status 0 when every input was written, 1 when some failed (each named on stderr), 2 when
nothing could start.
"""

import sys

import hydra
from omegaconf import DictConfig

from sr_experiments.cli import check_command_line


@hydra.main(version_base="1.3", config_path="sr_experiments/conf", config_name="degrade")
def main(cfg: DictConfig) -> None:
    from sr_experiments.data.degradations.files import main as run  # torch only after argument parsing

    status = run(cfg)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    check_command_line("degrade.py", sys.argv[1:])
    main()
