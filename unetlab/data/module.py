"""The LightningDataModule every data set shares: splits, loaders, and what the model needs to know.

A data set subclass implements ``build_split(split) -> Dataset`` whose items are
``(image (C, H, W) float32, mask (H, W) int64)``, mask values in ``0..num_classes-1`` or ``ignore_index``,
and sets ``in_channels`` and ``num_classes`` by the end of ``setup``. Volumes: ``spatial_dims = 3`` and items
``(image (C, D, H, W), mask (D, H, W))``, a voxel size ``(sz, sy, sx)``; the model's ``spatial_dims`` follows.
Items are looked up by an index or, for training, by an ``(index, item_seed)`` key from ``EpochShuffle`` (read it
with ``unetlab.data.sampling.split_key``).
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
from torch.utils.data import DataLoader, Dataset, Sampler

from unetlab.conventions import IGNORE_INDEX, SPLITS
from unetlab.data.sampling import EpochShuffle
from unetlab.metrics.functional import check_spacing as pixel_size


def check_spacing(
    spacing: Sequence[float] | float | None, unit: str | None, spatial_dims: int = 2
) -> tuple[tuple[float, ...], str]:
    """``data.spacing`` and ``data.unit`` -> ``((sy, sx), unit)``: the pixel size per axis (rows, columns) in ``unit``;
    for volumes (``spatial_dims=3``) the voxel size ``(sz, sy, sx)`` (slices, rows, columns).

    None -> ``((1.0, 1.0), "px")``: distances in pixels (voxels). A number is a square pixel (a cubic voxel); a unit
    is required with a spacing (so that no table calls micrometres pixels) and must be one word (``um``, ``mm``,
    ``nm``, ...)."""
    axes = "a pair [sy, sx] of them (row, column)" if spatial_dims == 2 else "three [sz, sy, sx] (slice, row, column)"
    if spacing is None:
        if unit not in (None, "px"):
            raise ValueError(f"data.unit={unit!r} needs data.spacing: the pixel size (sy, sx) in {unit}")
        return (1.0,) * spatial_dims, "px"
    values = [spacing] * spatial_dims if isinstance(spacing, (int, float)) else list(spacing)
    try:
        if not all(isinstance(v, (int, float)) for v in values):
            raise ValueError
        pair = pixel_size(values, spatial_dims)  # the metrics' own check: positive finite numbers, one per axis
    except ValueError:
        raise ValueError(f"data.spacing={spacing!r} must be a positive number or {axes}") from None
    if not unit or not str(unit).isidentifier():
        raise ValueError(f"data.unit={unit!r}: name the unit of data.spacing in one word, e.g. data.unit=um")
    return pair, str(unit)


class SegmentationDataModule(L.LightningDataModule):
    """Train/val/test loaders over ``build_split``; ``setup`` is idempotent so ``train`` can call it early.

    Args:
        batch_size: images per batch (all loaders).
        num_workers: DataLoader worker processes (0 = load in the main process).
        pin_memory: pin host memory for faster copies to a GPU.
        order_seed: seeds the training order and augmentation (``EpochShuffle``); ``train`` sets it to the run's
            ``seed``.
        spacing, unit: the pixel size ``(sy, sx)`` in ``unit`` (``check_spacing``); distances are measured in it.
            Volumes: the voxel size ``(sz, sy, sx)``.
    """

    in_channels: int
    num_classes: int
    ignore_index: int = IGNORE_INDEX
    spatial_dims: int = 2  # 3 for volumes; a subclass sets it before calling __init__ (it checks the spacing)

    def __init__(
        self,
        batch_size: int = 16,
        num_workers: int = 0,
        pin_memory: bool = False,
        order_seed: int = 0,
        spacing: Sequence[float] | float | None = None,
        unit: str | None = None,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size} must be >= 1")
        self.spacing, self.unit = check_spacing(spacing, unit, self.spatial_dims)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.order_seed = order_seed
        self.datasets: dict[str, Dataset] = {}

    def build_split(self, split: str) -> Dataset:
        raise NotImplementedError(f"{type(self).__name__} must implement build_split(split)")

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            if split not in self.datasets:
                dataset = self.build_split(split)
                if len(dataset) == 0:
                    raise ValueError(f"{type(self).__name__}: the {split} split is empty")
                self.datasets[split] = dataset

    def _loader(self, split: str, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", EpochShuffle(self.datasets["train"], seed=self.order_seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
