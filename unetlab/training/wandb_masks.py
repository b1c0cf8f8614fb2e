"""Predicted and true masks in wandb's segmentation panel: ``WandbMasks`` logs a few validation images every few
epochs (``val/masks``); ``mask_overlay`` makes one such image (``unetlab-eval``'s ``eval/overlays`` uses it too).

wandb draws each mask over its image and lets the viewer toggle masks and classes; ignored pixels (255) of the true
mask are a class of their own, ``ignore``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor, nn

from unetlab.conventions import IGNORE_INDEX


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


def predict(net: nn.Module, images: Sequence[Tensor]) -> tuple[list[Tensor], int]:
    """The argmax labels (H, W) int64, on the CPU, of ``net`` on each (C, H, W) image, and the number of classes (its
    logits' channels). One image at a time (sizes may differ), in eval mode without gradients, on the device and in
    the dtype of its weights; its training mode is restored afterwards."""
    weight = next(net.parameters())
    training = net.training
    net.eval()
    with torch.no_grad():
        logits = [net(image[None].to(weight.device, weight.dtype))[0] for image in images]  # each (K, H, W)
    net.train(training)
    return [x.argmax(dim=0).cpu() for x in logits], logits[0].shape[0]


def class_labels(
    num_classes: int, names: Sequence[str] | None = None, ignore_index: int = IGNORE_INDEX
) -> dict[int, str]:
    """wandb's ``class_labels``: label -> name (the data's ``names``, else ``class k``), and ``ignore_index`` ->
    ``ignore``."""
    labels = {k: str(names[k]) if names is not None and k < len(names) else f"class {k}" for k in range(num_classes)}
    return labels | {ignore_index: "ignore"}


def display_image(image: Tensor) -> np.ndarray:
    """(C, H, W) float -> (H, W, 3) uint8: one channel repeated to grey, else the first three as RGB.

    Images in [0, 1] (every ``data.normalize`` but ``zscore`` and ``none``; procedural noise may step a little out)
    are shown as they are, clipped; others (z-scored, raw) min-max stretched.
    """
    image = image.detach().float().cpu()
    rgb = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
    low, high = rgb.min().item(), rgb.max().item()
    if low < -0.5 or high > 1.5:
        rgb = (rgb - low) / (high - low) if high > low else torch.zeros_like(rgb)
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def mask_overlay(
    image: Tensor, prediction: Tensor, target: Tensor, labels: dict[int, str], caption: str | None = None
) -> Any:
    """A ``wandb.Image`` of ``image`` (C, H, W) with masks ``prediction`` and ``ground_truth``, (H, W) integer labels
    (0..255; ``labels`` from ``class_labels``)."""
    import wandb

    def mask(values: Tensor) -> dict:
        return {"mask_data": values.cpu().numpy().astype(np.uint8), "class_labels": labels}

    masks = {"prediction": mask(prediction), "ground_truth": mask(target)}
    return wandb.Image(display_image(image), masks=masks, caption=caption)
