"""Predicted and true masks in wandb's segmentation panel: ``WandbMasks`` logs a few validation images every few
epochs (``val/masks``); each image is a ``unetlab.runs.wandb_masks.mask_overlay``.

wandb draws each mask over its image and lets the viewer toggle masks and classes; ignored pixels (255) of the true
mask are a class of their own, ``ignore``.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from unetlab.conventions import IGNORE_INDEX
from unetlab.runs.wandb_masks import class_labels, mask_overlay, predict


class WandbMasks(L.Callback):
    """At the end of validation every ``every_n_epochs`` epochs, and of the last epoch, logs the first ``num_images``
    validation images with their predicted and true masks under ``val/masks`` (at ``trainer/global_step``, as
    Lightning's ``WandbLogger`` logs metrics).

    Does nothing without a Lightning ``WandbLogger`` (``logger=csv``, ``logger=none``), in the sanity check, and on
    ranks other than 0.
    """

    def __init__(self, every_n_epochs: int = 2, num_images: int = 4):
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"callbacks.wandb_masks.every_n_epochs={every_n_epochs!r} must be an integer >= 1")
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"callbacks.wandb_masks.num_images={num_images!r} must be an integer >= 1")
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self.logged_epoch: int | None = None  # validation may run several times an epoch (val_check_interval)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        logger = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
        if logger is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        epoch = trainer.current_epoch
        last = epoch + 1 == trainer.max_epochs
        if epoch == self.logged_epoch or ((epoch + 1) % self.every_n_epochs and not last):
            return
        self.logged_epoch = epoch
        loaders = trainer.val_dataloaders
        dataset = (loaders[0] if isinstance(loaders, Sequence) else loaders).dataset
        images, targets = zip(*(dataset[i] for i in range(min(self.num_images, len(dataset)))))
        predictions, num_classes = predict(pl_module, images)
        datamodule = trainer.datamodule  # None when fit was given loaders
        labels = class_labels(
            num_classes, getattr(datamodule, "class_names", None), getattr(datamodule, "ignore_index", IGNORE_INDEX)
        )
        overlays = [
            mask_overlay(image, prediction, target, labels, caption=f"val {index}, epoch {epoch + 1}")
            for index, (image, prediction, target) in enumerate(zip(images, predictions, targets))
        ]
        logger.log_metrics({"val/masks": overlays}, step=trainer.global_step)
