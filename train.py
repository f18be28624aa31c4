"""Train an SR network: `python train.py model=deep lr=1e-4` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from sr_experiments.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    summary = train(cfg)
    best = summary.get("best")
    # Returned for Hydra sweepers (e.g. Optuna): the best validation PSNR.
    return best["psnr"] if best else None


if __name__ == "__main__":
    main()
