"""Size and augmentation transforms on ``(image (C, H, W) float32, mask (H, W) int64)`` pairs, plain tensor ops.

Volumes ``(image (C, D, H, W), mask (D, H, W))`` take the same padding and cropping per axis (the spatial axes are the
mask's); flips and 90-degree rotations act in the (H, W) plane of every slice, and resizing is for 2-D images only.
Images are resized bilinearly (antialiased when shrinking), masks by nearest neighbour at pixel centres
(``nearest-exact``), so mask values stay labels and ``255`` (ignore) stays ignore. Padding fills images with 0
and masks with ``IGNORE_INDEX``, so padded pixels never count in the loss or the metrics. Randomness comes from the
``generator`` given (training: one per item, seeded by ``(seed, epoch, index)``; see ``unetlab.data.sampling``), or
else from torch's global generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from unetlab.conventions import IGNORE_INDEX

RESIZE_MODES = ("resize", "crop")


def resize(image: Tensor, mask: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Image (C, H, W) bilinear, mask (H, W) nearest, both to ``size = (height, width)``."""
    if mask.ndim != 2:
        raise ValueError(f"resize takes 2-D images; got a mask of shape {tuple(mask.shape)} (volumes: use crop)")
    if tuple(image.shape[-2:]) == tuple(size):
        return image, mask
    shrinking = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=shrinking)[0]
    mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
    return image, mask


def pad(image: Tensor, mask: Tensor, before: Sequence[int], after: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Pad each spatial axis ((H, W), or (D, H, W)) by the given counts: images with 0, masks with ``IGNORE_INDEX``."""
    if not any(before) and not any(after):
        return image, mask
    widths = [n for first, last in zip(reversed(before), reversed(after), strict=True) for n in (first, last)]
    return F.pad(image, widths, value=0.0), F.pad(mask, widths, value=IGNORE_INDEX)


def crop(image: Tensor, mask: Tensor, start: Sequence[int], size: Sequence[int]) -> tuple[Tensor, Tensor]:
    """The ``size`` window (per spatial axis) whose first pixel is ``start``, e.g. ``(top, left)``."""
    window = tuple(slice(first, first + side) for first, side in zip(start, size, strict=True))
    return image[(slice(None), *window)], mask[window]


def pad_to_at_least(image: Tensor, mask: Tensor, size: Sequence[int]) -> tuple[Tensor, Tensor]:
    """Pad evenly on both sides (the odd pixel at the bottom/right/back) up to at least ``size``."""
    extra = [max(0, side - have) for side, have in zip(size, mask.shape, strict=True)]
    return pad(image, mask, [n // 2 for n in extra], [n - n // 2 for n in extra])


def center_crop_or_pad(image: Tensor, mask: Tensor, size: Sequence[int]) -> tuple[Tensor, Tensor]:
    """The centre ``size`` window; sides shorter than ``size`` are padded first."""
    image, mask = pad_to_at_least(image, mask, size)
    return crop(image, mask, [(have - side) // 2 for have, side in zip(mask.shape, size, strict=True)], size)


def random_crop_or_pad(
    image: Tensor, mask: Tensor, size: Sequence[int], generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """A uniformly placed ``size`` window; sides shorter than ``size`` are padded first."""
    image, mask = pad_to_at_least(image, mask, size)
    slack = [have - side for have, side in zip(mask.shape, size, strict=True)]
    start = [int(torch.randint(extra + 1, (), generator=generator)) for extra in slack]
    return crop(image, mask, start, size)


def pad_to_multiple(image: Tensor, mask: Tensor, multiple: int) -> tuple[Tensor, Tensor]:
    """Pad at the end of each axis (bottom, right, back) up to the next multiple of ``multiple``; pixel (r, c) stays
    at (r, c)."""
    return pad(image, mask, [0] * mask.ndim, [-side % multiple for side in mask.shape])


def random_flip_rotate(
    image: Tensor, mask: Tensor, rotate: bool, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Random horizontal and vertical flips (p = 0.5 each); if ``rotate``, a random multiple of 90 degrees. Volumes:
    the same in the (H, W) plane of every slice (the slice axis D is neither flipped nor rotated)."""
    if torch.rand((), generator=generator) < 0.5:
        image, mask = image.flip(-1), mask.flip(-1)
    if torch.rand((), generator=generator) < 0.5:
        image, mask = image.flip(-2), mask.flip(-2)
    if rotate:
        turns = int(torch.randint(4, (), generator=generator))
        image, mask = image.rot90(turns, (-2, -1)), mask.rot90(turns, (-2, -1))
    return image.contiguous(), mask.contiguous()


class Geometry:
    """What each split does to sizes, and the training augmentation.

    Args:
        image_size: output side (square, or cube for volumes) in px, a multiple of ``multiple``; None keeps each
            image's native size, padded at the bottom/right (and back) up to the next multiple of ``multiple`` (mask
            padding = ignore).
        mode: ``resize`` scales every image to ``image_size`` (aspect ratio not kept; 2-D images only); ``crop``
            takes a random ``image_size`` window for training and the centre window for evaluation, padding smaller
            images.
        multiple: every output side is a multiple of this (``2**model.depth``).
        train: training split (random crops and augmentation) or evaluation (deterministic).
        augment: random flips, and 90-degree rotations when the output is square; training only.
    """

    def __init__(self, image_size: int | None, mode: str, multiple: int, train: bool, augment: bool):
        if mode not in RESIZE_MODES:
            raise ValueError(f"data.resize={mode!r}; allowed: {' | '.join(RESIZE_MODES)}")
        if image_size is not None and (image_size < 1 or image_size % multiple):
            raise ValueError(
                f"data.image_size={image_size} is not a positive multiple of 2**model.depth = {multiple}; "
                f"use e.g. data.image_size={max(multiple, image_size // multiple * multiple)}"
            )
        self.image_size = image_size
        self.mode = mode
        self.multiple = multiple
        self.train = train
        self.augment = augment and train

    def __call__(self, image: Tensor, mask: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        if self.image_size is None:
            image, mask = pad_to_multiple(image, mask, self.multiple)
        else:
            size = (self.image_size,) * mask.ndim
            if self.mode == "resize":
                image, mask = resize(image, mask, size)
            elif self.train:
                image, mask = random_crop_or_pad(image, mask, size, generator)
            else:
                image, mask = center_crop_or_pad(image, mask, size)
        if self.augment:
            image, mask = random_flip_rotate(image, mask, image.shape[-2] == image.shape[-1], generator)
        return image, mask

    def __repr__(self) -> str:
        return (
            f"Geometry(image_size={self.image_size}, mode={self.mode!r}, multiple={self.multiple}, "
            f"train={self.train}, augment={self.augment})"
        )
