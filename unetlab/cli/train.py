"""``unetlab-train``: train one U-Net (``-m`` for sweeps). See ``unetlab-train --help``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from unetlab.cli import CONFIG_PATH, check_launcher, register_resolvers, run_app, task_errors


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _main(cfg: DictConfig) -> None:
    from unetlab.runs.wandb_job import finishing_wandb
    from unetlab.training.train import train

    with task_errors("unetlab-train"), finishing_wandb(cfg):  # a sweep's next job starts its own wandb run
        train(cfg)


def main() -> None:
    run_app("unetlab-train", _main, register_resolvers, lambda: check_launcher("unetlab-train"))


if __name__ == "__main__":
    main()
