"""``unetlab-ablate``: the main job (train -> eval -> viz -> report over a preset grid)."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from unetlab.cli import CONFIG_PATH, app_errors, check_launcher, task_errors

# Overrides with these heads go to the training jobs, not to the ablate app itself.
FORWARD = (
    "data", "model", "trainer", "task", "logger", "eval", "callbacks", "threads", "hydra/launcher", "hydra.launcher",
)  # fmt: skip


def split_forwarded(args: list[str]) -> tuple[list[str], list[str]]:
    """The command line split into the overrides for the training jobs (``FORWARD`` heads) and the rest."""

    def forwarded(arg: str) -> bool:
        head = arg.split("=", 1)[0].lstrip("+~")
        return "=" in arg and any(head == key or head.startswith(key + ".") for key in FORWARD)

    return [a for a in args if forwarded(a)], [a for a in args if not forwarded(a)]


def main() -> None:
    check_launcher("unetlab-ablate")
    forwarded, own = split_forwarded(sys.argv[1:])
    sys.argv = [sys.argv[0], *own]

    @hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="ablate")
    def ablate(cfg: DictConfig) -> None:
        from unetlab.grid.run import run_ablation

        experiment = HydraConfig.get().runtime.choices["experiment"]
        # RuntimeError: a training job failed (it has printed why).
        with task_errors("unetlab-ablate", extra=(RuntimeError,)):
            run_ablation(cfg, experiment, forwarded)

    with app_errors("unetlab-ablate", output_key="out_dir"):
        ablate()


if __name__ == "__main__":
    main()
