"""``unetlab-eval ckpt=PATH``: the results table of one trained model (see ``unetlab-eval --help``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from unetlab.cli import (
    CONFIG_PATH,
    accept_run_overrides,
    app_errors,
    check_launcher,
    check_types,
    checkpoint_arg,
    run_overrides,
    task_errors,
)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def _main(cfg: DictConfig) -> None:
    from unetlab.evaluation.evaluate import run_eval

    with task_errors("unetlab-eval"):
        ckpt = checkpoint_arg("unetlab-eval", cfg)
        check_types(cfg, "eval", "eval")
        run_eval(ckpt, cfg.eval, overrides=run_overrides(cfg))


def main() -> None:
    check_launcher("unetlab-eval")
    accept_run_overrides()
    with app_errors("unetlab-eval"):
        _main()


if __name__ == "__main__":
    main()
