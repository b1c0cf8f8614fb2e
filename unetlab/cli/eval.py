"""``unetlab-eval ckpt=PATH``: the results table of one trained model (see ``unetlab-eval --help``)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from unetlab.cli import CONFIG_PATH, accept_run_overrides, check_launcher, run_overrides


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def _main(cfg: DictConfig) -> None:
    from unetlab.evaluate import run_eval

    try:
        run_eval(cfg.ckpt, cfg.eval, overrides=run_overrides(cfg))
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"unetlab-eval: error: {err}")


def main() -> None:
    check_launcher("unetlab-eval")
    accept_run_overrides()
    _main()


if __name__ == "__main__":
    main()
