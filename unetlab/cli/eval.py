"""``unetlab-eval ckpt=PATH``: the results table of one trained model (see ``unetlab-eval --help``)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from unetlab.cli import (
    CONFIG_PATH,
    accept_run_overrides,
    check_launcher,
    register_schema,
    run_app,
    run_on_checkpoint,
)
from unetlab.evaluation.options import EvalOptions

register_schema("eval", EvalOptions)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def _main(cfg: DictConfig) -> None:
    from unetlab.evaluation.evaluate import run_eval  # torch and Lightning: not for --help

    run_on_checkpoint("unetlab-eval", "eval", cfg, run_eval)


def main() -> None:
    run_app("unetlab-eval", _main, lambda: check_launcher("unetlab-eval"), accept_run_overrides)


if __name__ == "__main__":
    main()
