"""Lightning's ``WandbLogger`` less a setting that makes wandb warn in every run. Whether a run logs to wandb, and
the wandb run of a later job on it: ``unetlab.runs.wandb_job``."""

from __future__ import annotations

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger


class WandbLogger(LightningWandbLogger):
    """As Lightning's, but without ``anonymous=None`` in the ``wandb.init`` arguments: Lightning always passes it,
    and wandb >= 0.19 prints "The anonymous setting has no effect" for it in every run."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
