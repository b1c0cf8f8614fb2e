"""``unetlab-viz ckpt=PATH``: receptive fields, effective RFs and top-9 patches per unit as PNGs (``--help``)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from unetlab.cli import CONFIG_PATH, accept_run_overrides, run_overrides


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="viz")
def _main(cfg: DictConfig) -> None:
    from unetlab.viz import run_viz

    try:
        run_viz(cfg.ckpt, cfg.viz, overrides=run_overrides(cfg))
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"unetlab-viz: error: {err}")


def main() -> None:
    accept_run_overrides()
    _main()


if __name__ == "__main__":
    main()
