"""``unetlab-viz ckpt=PATH``: receptive fields, effective RFs and top-9 patches per unit as PNGs (``--help``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from unetlab.cli import (
    CONFIG_PATH,
    accept_run_overrides,
    app_errors,
    check_types,
    checkpoint_arg,
    run_overrides,
    task_errors,
)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="viz")
def _main(cfg: DictConfig) -> None:
    from unetlab.explain.viz import run_viz

    with task_errors("unetlab-viz"):
        ckpt = checkpoint_arg("unetlab-viz", cfg)
        check_types(cfg, "viz", "viz")
        run_viz(ckpt, cfg.viz, overrides=run_overrides(cfg))


def main() -> None:
    accept_run_overrides()
    with app_errors("unetlab-viz"):
        _main()


if __name__ == "__main__":
    main()
