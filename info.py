"""Parameters and 720p MACs of a network: `python info.py model=NAME scale=S`; the last line is JSON."""

import json
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from sr_experiments.cli import check_command_line


@hydra.main(version_base="1.3", config_path="sr_experiments/conf", config_name="train")
def main(cfg: DictConfig) -> None:
    # Imported here: torch and Lightning take seconds, which --help and completion should not pay.
    from sr_experiments.tools.info import format_info, network_info

    spec = OmegaConf.to_container(cfg.model, resolve=True)
    info = network_info(spec)
    print(format_info(info, spec))
    print(json.dumps({k: info[k] for k in ("model", "network", "scale", "params", "macs_720p")}))


if __name__ == "__main__":
    check_command_line("info.py", sys.argv[1:])
    main()
