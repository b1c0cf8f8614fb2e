"""Training callbacks: ``EpochSummary`` (a printed line per epoch) and ``StopOnNonFiniteLoss``.

Jobs that run side by side (``unetlab-ablate``'s parallel sweep, SLURM logs) cannot share a terminal's progress
bars; a line per epoch names the run and says how far it is and how good it is.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning as L
import torch

LOG = logging.getLogger("unetlab")


class EpochSummary(L.Callback):
    """Prints ``[unetlab] <run> epoch 3/6: train/loss 0.214, val/dice 0.951, val/hd95 0.83 px (12 s)``.

    Silent when the Trainer has a progress bar (it shows the same numbers) and on ranks other than 0.
    """

    def __init__(self, name: str | None = None):
        self.name = name
        self.start = time.perf_counter()
        self.losses: list[float] = []

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.progress_bar_callback is None and isinstance(outputs, dict) and "loss" in outputs:
            self.losses.append(float(outputs["loss"]))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Here, after the module's on_validation_epoch_end, callback_metrics hold this epoch's val/* values
        # (train/*_epoch would only appear after the training epoch ends, so the train loss is averaged here).
        if trainer.progress_bar_callback is not None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        name = self.name or Path(trainer.default_root_dir).name
        metrics = trainer.callback_metrics
        parts = [f"train/loss {sum(self.losses) / len(self.losses):.3f}"] if self.losses else []
        unit = getattr(getattr(trainer, "datamodule", None), "unit", "px")  # the data's unit of distances
        parts += [
            f"{key} {float(metrics[key]):.3f}{f' {unit}' if key.endswith('hd95') else ''}"
            for key in ("val/dice", "val/hd95")
            if key in metrics
        ]
        self.losses = []
        line = (
            f"[unetlab] {name} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {', '.join(parts)} "
            f"({time.perf_counter() - self.start:.0f} s)"
        )
        print(line, flush=True)
        LOG.info(line)  # the run's train.log (Hydra's file handler on the root logger), where the console is shared


class NonFiniteLoss(ValueError):
    """The training loss became NaN or infinite (a user error: the learning rate, usually)."""


class StopOnNonFiniteLoss(L.Callback):
    """Stops training at the first NaN or infinite training loss, before that step's weights are checkpointed.

    ``last.ckpt`` keeps the last finished epoch; ``train`` writes no ``metrics.json`` for the run.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None or torch.isfinite(loss).all():
            return
        raise NonFiniteLoss(
            f"the training loss became {float(loss)} at epoch {trainer.current_epoch + 1}, step {trainer.global_step}"
            f" (batch {batch_idx + 1} of the epoch); try a lower learning rate, e.g. "
            f"task.optimizer.lr={_lower_lr(pl_module)}; "
            + (
                f"checkpoints/last.ckpt still holds epoch {trainer.current_epoch}"
                if trainer.current_epoch
                else "no epoch had finished, so no checkpoint was written"
            )
        )


def _lower_lr(pl_module: L.LightningModule) -> str:
    group = pl_module.optimizers(use_pl_optimizer=False).param_groups[0]
    return f"{group.get('initial_lr', group['lr']) / 10:g}"  # initial_lr: the configured one, before the schedule
