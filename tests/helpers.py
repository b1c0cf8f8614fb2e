"""Shared test helpers: compose the train config, run a CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONFIG_DIR = str(files("unetlab.conf"))
TINY = ["experiment=tiny", "logger=csv", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]


def compose_train(run_dir: Path, *overrides: str) -> DictConfig:
    """The train config as the CLI would build it, with the tiny experiment and the run dir set."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[*TINY, f"paths.output_dir={run_dir}", *overrides])


def run_cli(*args: str, cwd: Path, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run a unetlab console script (``unetlab-train ...``) from ``cwd``; output is captured."""
    script = Path(sys.executable).parent / args[0]
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run([str(script), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc
