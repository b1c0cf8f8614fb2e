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
FORWARDED: list[str] = []


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="ablate")
def _main(cfg: DictConfig) -> None:
    from unetlab.grid.run import run_ablation

    experiment = HydraConfig.get().runtime.choices["experiment"]
    # RuntimeError: a training job failed (it has printed why).
    with task_errors("unetlab-ablate", extra=(RuntimeError,)):
        run_ablation(cfg, experiment, FORWARDED)


def main() -> None:
    check_launcher("unetlab-ablate")
    args = sys.argv[1:]

    def forwarded(arg: str) -> bool:
        head = arg.split("=", 1)[0].lstrip("+~")
        return "=" in arg and any(head == key or head.startswith(key + ".") for key in FORWARD)

    FORWARDED[:] = [arg for arg in args if forwarded(arg)]
    sys.argv = [sys.argv[0], *[a for a in args if a not in FORWARDED]]
    with app_errors("unetlab-ablate", output_key="out_dir"):
        _main()


if __name__ == "__main__":
    main()
