"""Weights & Biases for a trained run: whether it logs there (``uses_wandb``) and the wandb run of a later job on it
(``wandb_job``: eval, viz), in the same project and group as its training."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from omegaconf import DictConfig


def uses_wandb(cfg: DictConfig) -> bool:
    """Whether the training config ``cfg`` logs to wandb: its ``logger._target_`` is a Lightning ``WandbLogger``
    (``logger=wandb``, the default; ``logger=csv`` and ``logger=none`` do not)."""
    target = (cfg.get("logger") or {}).get("_target_")
    return target is not None and issubclass(get_class(target), LightningWandbLogger)


@contextmanager
def wandb_job(cfg: DictConfig, run_dir: Path, job_type: str, config: dict) -> Iterator[Any]:
    """The wandb run of a job on a trained run (``job_type`` eval or viz), finished on exit; None when the training
    config ``cfg`` did not log to wandb. Same project, group and mode as the training; named ``<job_type>/<run>``, its
    files under ``run_dir``. When the training run of ``run_dir`` is still live in this process, that run itself."""
    if not uses_wandb(cfg):
        yield None
        return
    import wandb

    if wandb.run is not None and Path(wandb.run.dir).resolve().is_relative_to(run_dir.resolve()):
        # The training run of this run dir is still open in this process (unetlab-train evaluating at its end):
        # log there, and leave finishing it to the training. A second wandb.init and finish would cost ~2.5 s a run.
        yield wandb.run
        return
    logger = cfg.logger
    run = wandb.init(
        project=logger.get("project", "unetlab"),
        group=logger.get("group"),
        dir=str(run_dir),
        mode=logger.get("mode", "offline"),
        job_type=job_type,
        name=f"{job_type}/{run_dir.name}",
        config=config,
        reinit="finish_previous",
    )
    try:
        yield run
    finally:
        run.finish()


@contextmanager
def finishing_wandb(cfg: DictConfig) -> Iterator[None]:
    """End the process-wide wandb run on exit, when ``cfg`` logs to wandb: the next job of a sweep (same process)
    then starts its own. Jobs that log to a run still open (evaluation after training) go inside the block."""
    try:
        yield
    finally:
        if uses_wandb(cfg):
            import wandb

            if wandb.run is not None:
                wandb.finish()
