import hashlib

import numpy as np
import pytest
import torch

from unetlab.data.shapes import KINDS, ShapesDataModule, _ellipse, _star, make_sample


def test_sample_is_a_pure_function_of_seed_split_index():
    a_img, a_mask = make_sample(3, "train", 7)
    b_img, b_mask = make_sample(3, "train", 7)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_mask, b_mask)
    c_img, _ = make_sample(4, "train", 7)
    d_img, _ = make_sample(3, "val", 7)
    assert not np.array_equal(a_img, c_img) and not np.array_equal(a_img, d_img)


def test_splits_never_share_samples():
    digest = {}
    for split in ("train", "val", "test"):
        for i in range(64):
            img, _ = make_sample(0, split, i, image_size=32)
            digest.setdefault(hashlib.sha1(img.tobytes()).hexdigest(), set()).add(split)
    assert all(len(splits) == 1 for splits in digest.values())
    assert len(digest) == 3 * 64


class FixedRng:
    """Feeds hand-chosen numbers to a shape drawer in the order it asks for them."""

    def __init__(self, *values):
        self.values = list(values)

    def uniform(self, low=0.0, high=1.0, size=None):
        if size is None:
            return self.values.pop(0)
        return np.array([self.values.pop(0) for _ in range(size)])

    def integers(self, low, high=None):
        return self.values.pop(0)


def test_ellipse_mask_is_exact_pixel_centre_membership():
    yy, xx = np.mgrid[0:16, 0:16].astype(float)
    # centre (8, 8) (fractions of 16 px), semi-axes 4 px (x) and 2 px (y), no rotation
    inside = _ellipse(yy, xx, FixedRng(0.5, 0.5, 0.25, 0.125, 0.0), 16, 0.5)
    expected = np.zeros((16, 16), bool)
    for r in range(16):
        for c in range(16):
            expected[r, c] = ((c - 8) / 4) ** 2 + ((r - 8) / 2) ** 2 <= 1
    np.testing.assert_array_equal(inside, expected)
    # hand-checked: row 8 spans columns 4..12, row 6 and row 10 hold only the centre column
    assert inside[8].nonzero()[0].tolist() == list(range(4, 13))
    assert inside[6].nonzero()[0].tolist() == [8] and inside[5].sum() == 0


def test_star_radius_follows_detail_formula():
    yy, xx = np.mgrid[0:64, 0:64].astype(float)
    # centre (32, 32), r0 = 16 px, k = 5 lobes, amplitude 0.3, phase 0
    inside = _star(yy, xx, FixedRng(0.5, 0.5, 0.25, 5, 0.3, 0.0), 64, 1.0)
    theta = np.arctan2(yy - 32, xx - 32)
    radius = 16 * (1 + 0.3 * np.sin(5 * theta))
    np.testing.assert_array_equal(inside, np.hypot(yy - 32, xx - 32) <= radius)


def test_more_detail_gives_longer_boundaries():
    def boundary_per_area(detail):
        total_boundary = total_area = 0
        for i in range(40):
            _, mask = make_sample(0, "train", i, kinds=["star"], max_objects=1, detail=detail)
            m = torch.from_numpy(mask > 0)[None, None].float()
            eroded = -torch.nn.functional.max_pool2d(-m, 3, 1, 1)
            total_boundary += (m - eroded).sum().item()
            total_area += m.sum().item()
        return total_boundary / total_area

    assert boundary_per_area(1.0) > 1.1 * boundary_per_area(0.0)


def test_one_class_per_kind_and_datamodule():
    dm = ShapesDataModule(image_size=32, num_classes=len(KINDS) + 1, train_size=40, val_size=8, test_size=8)
    dm.setup("fit")
    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (16, 1, 32, 32) and images.dtype == torch.float32
    assert masks.dtype == torch.int64
    labels = torch.cat([dm.datasets["train"][i][1].unique() for i in range(40)]).unique().tolist()
    assert labels == [0, 1, 2, 3, 4]
    assert len(dm.datasets["val"]) == 8 and dm.in_channels == 1 and dm.num_classes == 5


def test_bad_shapes_config_errors():
    with pytest.raises(ValueError, match=r"data.num_classes=3.*2 classes .* or one per kind \(5"):
        ShapesDataModule(num_classes=3)
    with pytest.raises(ValueError, match=r"data.kinds=\['blob'\].*allowed: ellipse, polygon, star, bar"):
        ShapesDataModule(kinds=["blob"])
    with pytest.raises(ValueError, match=r"data.detail=2"):
        ShapesDataModule(detail=2)


def test_a_split_is_generated_once_per_process_and_per_config():
    """Data modules of the same config (training, then evaluation, then the next job of a launcher's worker) share
    each split; any other config draws its own."""
    first, second, other = (ShapesDataModule(image_size=32, train_size=8, val_size=4, test_size=4, seed=s)
                            for s in (3, 3, 4))  # fmt: skip
    for dm in (first, second, other):
        dm.setup()
    assert first.datasets["test"] is second.datasets["test"]
    assert other.datasets["test"] is not first.datasets["test"]
    assert not torch.equal(other.datasets["test"].images, first.datasets["test"].images)
