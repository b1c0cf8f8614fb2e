"""The Lightning system: loss, train/val/test steps, logging. No model code (that lives in models/)."""

from __future__ import annotations

from functools import partial

import lightning as L
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from unetlab.conventions import IGNORE_INDEX
from unetlab.metrics import BoundaryMetrics
from unetlab.models import protocol


def soft_dice_loss(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX, eps: float = 1.0) -> Tensor:
    """1 - soft Dice over the foreground classes, pooled over the batch.

    logits: (B, K, H, W), or (P, B, K, H, W) for P predictions of the same batch (the probes: one loss each);
    target: (B, H, W) int64 with ``ignore_index`` pixels left out. Returns a scalar, or (P,). Volumes: one more
    axis in both, (B, K, D, H, W) and (B, D, H, W).
    """
    spatial = tuple(range(-(target.ndim - 1), 0))  # the pixel (voxel) axes, counted from the end
    class_dim = spatial[0] - 1
    num_classes = logits.shape[class_dim]
    valid = (target != ignore_index).unsqueeze(1)  # (B, 1, *spatial)
    probs = logits.softmax(dim=class_dim) * valid
    one_hot = F.one_hot(target.clamp(0, num_classes - 1), num_classes).movedim(-1, 1) * valid
    dims = (class_dim - 1, *spatial)  # batch and pixels
    intersection = (probs * one_hot).sum(dims)
    denominator = probs.sum(dims) + one_hot.sum(dims)
    dice = (2 * intersection + eps) / (denominator + eps)  # (K,) or (P, K)
    return 1 - dice[..., 1:].mean(dim=-1)


class SegmentationTask(L.LightningModule):
    """Trains a segmentation network with cross-entropy + soft Dice; logs boundary metrics.

    Args:
        net: any module mapping (B, C, H, W) images to (B, K, H, W) logits; must expose ``num_classes``.
        optimizer: a partial optimizer, called with the parameters.
        scheduler: a partial LR scheduler, called with the optimizer (stepped once per epoch), or None.
        dice_weight: weight of the soft Dice term beside cross-entropy.
        tolerance: tolerance of ``nsd`` and ``bf1`` in the logged metrics, in the unit of ``spacing``.
        ignore_index: mask value left out of the loss and the metrics.
        spacing: the pixel size ``(sy, sx)`` the logged distances are measured in (the data's ``spacing``; ``train``
            passes it); ``(1, 1)``: pixels. Volumes: the voxel size ``(sz, sy, sx)`` (its length says 3D).
        channels_last: run the network in channels-last memory format (same maths, another memory layout; ~1.3x faster
            convolutions on CPU; scripts/bench_train.py); ``channels_last_3d`` for volumes.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: partial[Optimizer],
        scheduler: partial[LRScheduler] | None = None,
        dice_weight: float = 1.0,
        tolerance: float = 2.0,
        ignore_index: int = IGNORE_INDEX,
        channels_last: bool = True,
        spacing: tuple[float, float] = (1.0, 1.0),
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        spacing = tuple(float(s) for s in spacing)
        self.memory_format = protocol.channels_last(len(spacing))
        self.net = net.to(memory_format=self.memory_format) if channels_last else net
        metric = partial(BoundaryMetrics, net.num_classes, tolerance, ignore_index, spacing, spatial_dims=len(spacing))
        self.val_metrics, self.test_metrics = metric(), metric()

    def forward(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> logits (B, K, H, W); volumes (B, C, D, H, W) -> (B, K, D, H, W)."""
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=self.memory_format)
        return self.net(images)

    def loss(self, logits: Tensor, masks: Tensor) -> Tensor:
        ce = F.cross_entropy(logits, masks, ignore_index=self.hparams.ignore_index)
        return ce + self.hparams.dice_weight * soft_dice_loss(logits, masks, self.hparams.ignore_index)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, masks = batch
        loss = self.loss(self(images), masks)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(images))
        return loss

    def _eval_step(self, batch: tuple[Tensor, Tensor], stage: str, metrics: BoundaryMetrics) -> None:
        images, masks = batch
        logits = self(images)
        self.log(f"{stage}/loss", self.loss(logits, masks), sync_dist=True, batch_size=len(images))
        metrics.update(protocol.labels(logits), masks)  # argmax over the classes

    def _log_metrics(self, stage: str, metrics: BoundaryMetrics) -> None:
        # BoundaryMetrics returns a dict (per class and mean); compute() syncs across ranks itself, so every rank
        # holds the same values: sync_dist with "max" keeps them exact and tells Lightning they are global.
        values = {f"{stage}/{name}": value for name, value in metrics.compute().items()}
        dice = values.pop(f"{stage}/dice")
        self.log(f"{stage}/dice", dice, prog_bar=True, sync_dist=True, reduce_fx="max")
        self.log_dict(values, sync_dist=True, reduce_fx="max")
        metrics.reset()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_metrics)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def configure_optimizers(self):
        optimizer = self.hparams.optimizer(params=self.parameters())
        if self.hparams.scheduler is None:
            return optimizer
        scheduler = self.hparams.scheduler(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
