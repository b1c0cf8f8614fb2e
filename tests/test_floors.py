"""The resolution floor: the ground truth at level 0, a per-image optimised map read out as a probe above it,
never better at a coarser level, independent per image, computed once and cached."""

import pytest
import torch

from unetlab.data.shapes import ShapesDataModule
from unetlab.evaluation import floors
from unetlab.evaluation.floors import cached_floor, resolution_floor
from unetlab.metrics import BoundaryMetrics


def test_level_zero_is_the_ground_truth():
    masks = torch.zeros(2, 8, 8, dtype=torch.long)
    masks[0, 2:5, 3:7] = 2
    masks[1, :, :4] = 1
    masks[1, 0, 0] = 255
    floor = resolution_floor(masks, 0, 3)
    assert torch.equal(floor[0], masks[0])
    assert floor[1, 0, 0] == 0 and torch.equal(floor[1].flatten()[1:], masks[1].flatten()[1:])


def test_small_objects_survive_where_area_averaging_lost_them():
    masks = torch.zeros(1, 32, 32, dtype=torch.long)
    masks[0, 13:15, 13:15] = 1  # 2x2 px, straddling four 8x8 cells at level 3: each holds 1/64 of object
    masks[0, :, 26] = 1  # a 1 px bar
    floor = resolution_floor(masks, 3, 2)
    assert floor[0, 13:15, 13:15].any()  # the old rule (area fraction > 0.5 after upsampling) dropped it
    level1 = resolution_floor(masks, 1, 2)
    assert torch.equal(level1[0, :, 25:28], masks[0, :, 25:28])  # a 1 px bar fits a level-1 map exactly


def test_floors_never_improve_with_level_on_shapes():
    masks = ShapesDataModule(image_size=64, train_size=1, val_size=1, test_size=32).build_split("test").masks
    hd95, empty = [], []
    for level in range(5):
        metric = BoundaryMetrics(2)
        metric.update(resolution_floor(masks, level, 2), masks)
        values = metric.compute()
        hd95.append(float(values["hd95"]))
        empty.append(float(values["empty_rate"]))
    assert hd95[0] == 0 and hd95[1] < 0.5
    assert all(a <= b + 1e-6 for a, b in zip(hd95, hd95[1:])), hd95
    assert hd95[4] > 2 * max(hd95[2], 0.5)  # resolution costs little at level 1, a lot at level 4
    assert max(empty) <= 1 / 32  # objects are not lost wholesale, as the area-average rule lost them


def test_each_image_is_optimised_on_its_own():
    masks = ShapesDataModule(image_size=32, train_size=1, val_size=1, test_size=3).build_split("test").masks
    together = resolution_floor(masks, 2, 2, steps=50)
    alone = torch.cat([resolution_floor(masks[i : i + 1], 2, 2, steps=50) for i in range(3)])
    assert torch.equal(together, alone)


def test_cached_floor_is_computed_once_per_masks_and_level(tmp_path, monkeypatch):
    masks = ShapesDataModule(image_size=32, train_size=1, val_size=1, test_size=4).build_split("test").masks
    first = cached_floor(masks, 2, 2, directory=tmp_path)
    assert torch.equal(first, resolution_floor(masks, 2, 2))
    assert len(list(tmp_path.glob("level2-*.pt"))) == 1

    def not_again(*args, **kwargs):
        raise AssertionError("the floor was computed again")

    monkeypatch.setattr(floors, "resolution_floor", not_again)
    assert torch.equal(cached_floor(masks, 2, 2, directory=tmp_path), first)
    other = masks.clone()
    other[0, 0, 0] = 1 - other[0, 0, 0]
    with pytest.raises(AssertionError, match="computed again"):
        cached_floor(other, 2, 2, directory=tmp_path)  # other masks, another entry


def test_read_out_is_bilinear_upsampling():
    cells = torch.randn(2, 3, 5, 4, dtype=torch.float64)
    for size in ((20, 16), (40, 8), (5, 4)):
        expected = torch.nn.functional.interpolate(cells, size=size, mode="bilinear", align_corners=False)
        torch.testing.assert_close(floors.read_out(cells, size), expected)
    volume = torch.randn(2, 3, 2, 5, 4, dtype=torch.float64)  # volumes: trilinear
    for size in ((8, 20, 16), (2, 10, 8)):
        expected = torch.nn.functional.interpolate(volume, size=size, mode="trilinear", align_corners=False)
        torch.testing.assert_close(floors.read_out(volume, size), expected)
