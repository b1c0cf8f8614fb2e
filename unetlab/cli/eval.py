"""``unetlab-eval ckpt=PATH``: the results table of one trained model (see ``unetlab-eval --help``)."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from unetlab.cli import (
    CONFIG_PATH,
    accept_run_overrides,
    check_launcher,
    register_schema,
    run_app,
    run_key_overrides,
    run_on_checkpoint,
    task_errors,
)
from unetlab.evaluation.options import EvalOptions

register_schema("eval", EvalOptions)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="eval")
def _main(cfg: DictConfig) -> None:
    from unetlab.evaluation.evaluate import run_eval  # torch and Lightning: not for --help

    if cfg.get("weights"):
        with task_errors("unetlab-eval"):
            ckpt = import_weights(cfg)
        cfg.ckpt = str(ckpt)
    run_on_checkpoint("unetlab-eval", "eval", cfg, run_eval)


def import_weights(cfg: DictConfig) -> str:
    """``weights=PATH``: the run directory of weights trained elsewhere (``unetlab.runs.foreign``), built from the
    train config that the command line's ``model=``/``data=`` keys compose; returns its checkpoint."""
    from hydra import compose

    from unetlab.runs.foreign import import_run

    if not OmegaConf.is_missing(cfg, "ckpt") and cfg.ckpt:
        raise ValueError("give ckpt= (a run of unetlab-train) or weights= (weights trained elsewhere), not both")
    overrides = run_key_overrides()
    if not any(o.split("=", 1)[0] == "model" for o in overrides):
        raise ValueError("weights= needs the model they belong to: model=NAME and its architecture keys, e.g. "
                         "unetlab-eval model=monai_dynunet model.depth=4 weights=PATH")  # fmt: skip
    train_cfg = compose("train", overrides=overrides)
    run_dir = cfg.out or f"imported/{Path(cfg.weights).stem}"
    ckpt = import_run(train_cfg, cfg.weights, run_dir, allow_pickle=cfg.weights_allow_pickle)
    print(f"[unetlab] imported {cfg.weights} into {run_dir} ({' '.join(overrides)})")
    return str(ckpt)


def main() -> None:
    run_app("unetlab-eval", _main, lambda: check_launcher("unetlab-eval"), accept_run_overrides)


if __name__ == "__main__":
    main()
