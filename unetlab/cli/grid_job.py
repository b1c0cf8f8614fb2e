"""One job of ``unetlab-ablate``'s grid (``python -m unetlab.cli.grid_job -m ...``, run by the grid, not by users):
train, then evaluate (``unetlab.grid.job``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from unetlab.cli import CONFIG_PATH, check_launcher, register_resolvers, run_app, task_errors


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _main(cfg: DictConfig) -> None:
    from unetlab.grid.job import train_then_evaluate

    with task_errors("unetlab-ablate"):
        train_then_evaluate(cfg)


def main() -> None:
    # a grid job's errors are the main job's
    run_app("unetlab-ablate", _main, register_resolvers, lambda: check_launcher("unetlab-ablate"))


if __name__ == "__main__":
    main()
