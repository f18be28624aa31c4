"""Parameters and 720p MACs of a network: `python info.py model=NAME scale=S`; the last line is JSON."""

import json
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from sr_experiments.cli import check_command_line, errors_as_one_line

# info.py only prints: no run folder, config record, log file or run-folder guard (train.yaml's).
WRITES_NOTHING = ("hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=none", "hydra/hydra_logging=none",
                  "~hydra.callbacks.run_dir_guard")


@hydra.main(version_base="1.3", config_path="sr_experiments/conf", config_name="train")
def main(cfg: DictConfig) -> None:
    # Imported here: torch and Lightning take seconds, which --help and completion should not pay.
    from sr_experiments.models.complexity import network_info
    from sr_experiments.tools.info import format_info
    from sr_experiments.runs.config_schema import validate_train_config

    with errors_as_one_line("info.py"):  # a bad value (scale=5 for a x2/x3/x4 network) is one line naming it
        validate_train_config(cfg)
        spec = OmegaConf.to_container(cfg.model, resolve=True)
        info = network_info(spec)
    print(format_info(info, spec))
    print(json.dumps({k: info[k] for k in ("model", "network", "scale", "params", "macs_720p")}))


def _writing_nothing(argv: list[str]) -> list[str]:
    given = {a.lstrip("+~").split("=", 1)[0] for a in argv}
    return [*argv, *(o for o in WRITES_NOTHING if o.lstrip("~").split("=", 1)[0] not in given)]


if __name__ == "__main__":
    check_command_line("info.py", sys.argv[1:])
    sys.argv[1:] = _writing_nothing(sys.argv[1:])
    main()
