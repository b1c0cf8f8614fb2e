"""``unetlab-viz ckpt=PATH``: receptive fields, effective RFs and top-9 patches per unit as PNGs (``--help``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from unetlab.cli import CONFIG_PATH, accept_run_overrides, register_schema, run_app, run_on_checkpoint
from unetlab.explain.options import VizOptions

register_schema("viz", VizOptions)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="viz")
def _main(cfg: DictConfig) -> None:
    from unetlab.explain.viz import run_viz  # torch and Lightning: not for --help

    run_on_checkpoint("unetlab-viz", "viz", cfg, run_viz)


def main() -> None:
    run_app("unetlab-viz", _main, accept_run_overrides)


if __name__ == "__main__":
    main()
