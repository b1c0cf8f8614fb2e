"""Predicted and true masks as wandb segmentation images: ``mask_overlay`` makes one (training's ``val/masks``
callback and evaluation's ``eval/overlays`` both use it).

wandb draws each mask over its image and lets the viewer toggle masks and classes; ignored pixels (255) of the true
mask are a class of their own, ``ignore``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from unetlab.conventions import IGNORE_INDEX


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
