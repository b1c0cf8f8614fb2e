"""``unetlab-train``: train one U-Net (``-m`` for sweeps). See ``unetlab-train --help``."""

from __future__ import annotations

import sys

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from unetlab.cli import CONFIG_PATH, check_launcher


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _main(cfg: DictConfig) -> None:
    from unetlab.train import train

    try:
        train(cfg)
    except (ValueError, InstantiationException) as err:
        sys.exit(f"unetlab-train: error: {err}")


def main() -> None:
    check_launcher("unetlab-train")
    _main()


if __name__ == "__main__":
    main()
