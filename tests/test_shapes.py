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


SHIFTS = ("noise:0.1", "speckle:0.3", "contrast:0.5", "blur:1.5", "texture:0.2")


@pytest.mark.parametrize("shift", SHIFTS)
def test_a_shift_changes_the_image_only(shift):
    """Same sample index, same scene: the mask is the same and a zero-strength shift is no shift at all."""
    image, mask = make_sample(0, "test", 5, image_size=48)
    shifted, shifted_mask = make_sample(0, "test", 5, image_size=48, shift=shift)
    np.testing.assert_array_equal(mask, shifted_mask)
    assert not np.array_equal(image, shifted)
    zero, _ = make_sample(0, "test", 5, image_size=48, shift=shift.split(":")[0] + ":0")
    np.testing.assert_array_equal(image, zero)
    again, _ = make_sample(0, "test", 5, image_size=48, shift=shift)
    np.testing.assert_array_equal(shifted, again)  # seeded: the same shifted image every time


def test_each_shift_does_what_its_name_says():
    from scipy import ndimage

    image, mask = (a.astype(np.float64) for a in make_sample(1, "test", 2, image_size=64))
    noisy, _ = make_sample(1, "test", 2, image_size=64, shift="noise:0.2")
    assert np.std(noisy - image) == pytest.approx(0.2, rel=0.05)
    speckled, _ = make_sample(1, "test", 2, image_size=64, shift="speckle:0.3")
    assert np.std((speckled - image) / image) == pytest.approx(0.3, rel=0.05)  # noise proportional to the image
    flat, _ = make_sample(1, "test", 2, image_size=64, shift="contrast:0.75")
    assert np.std(flat) == pytest.approx(0.25 * np.std(image), rel=1e-4)
    assert np.mean(flat) == pytest.approx(np.mean(image), abs=1e-5)
    blurred, _ = make_sample(1, "test", 2, image_size=64, shift="blur:2")
    np.testing.assert_allclose(blurred, ndimage.gaussian_filter(image, 2.0, mode="reflect"), atol=1e-5)
    textured, _ = make_sample(1, "test", 2, image_size=64, shift="texture:0.3")
    change = np.abs(textured - image)
    assert change[mask > 0].max() < 1e-5 and change[mask == 0].mean() > 0.1  # the background only


def test_the_test_shift_reaches_the_test_split_only():
    plain = ShapesDataModule(image_size=32, train_size=4, val_size=4, test_size=4)
    shifted = ShapesDataModule(image_size=32, train_size=4, val_size=4, test_size=4, test_shift="blur:1")
    for module in (plain, shifted):
        module.setup()
    for split in ("train", "val"):
        assert torch.equal(plain.datasets[split].images, shifted.datasets[split].images)
    assert torch.equal(plain.datasets["test"].masks, shifted.datasets["test"].masks)
    assert not torch.equal(plain.datasets["test"].images, shifted.datasets["test"].images)
    assert torch.equal(plain.shifted_split("test", "blur:1").images, shifted.datasets["test"].images)
    for bad in ("blur", "fog:1", "noise:-1", "contrast:1"):
        with pytest.raises(ValueError, match="data.test_shift: shift"):
            ShapesDataModule(test_shift=bad)


def test_texture_complexity_makes_background_and_objects_alike():
    """Kamath et al.'s task complexity: the background blended towards the objects' texture by 0.9 * complexity."""
    image, mask = make_sample(2, "train", 4, image_size=64, noise=0.0)
    plain, _ = make_sample(2, "train", 4, image_size=64, noise=0.0, complexity=0.0)
    np.testing.assert_array_equal(image, plain)  # complexity 0 is the plain data set
    contrast = image[mask > 0].mean() - image[mask == 0].mean()
    for complexity in (0.25, 0.5, 1.0):
        textured, textured_mask = make_sample(2, "train", 4, image_size=64, noise=0.0, complexity=complexity)
        np.testing.assert_array_equal(mask, textured_mask)
        assert np.std((textured - image)[mask > 0]) == pytest.approx(0.15, abs=0.05)  # the objects' texture
        shrunk = textured[mask > 0].mean() - textured[mask == 0].mean()
        blend = 0.9 * complexity  # the background moves towards the objects' mean (0.75) by the blend
        expected = image[mask > 0].mean() - ((1 - blend) * image[mask == 0].mean() + blend * 0.75)
        assert shrunk == pytest.approx(expected, abs=0.03) and shrunk < contrast
    with pytest.raises(ValueError, match=r"data.complexity=1.5 must lie in \[0, 1\]"):
        ShapesDataModule(complexity=1.5)


def test_complexity_names_the_data_set():
    from omegaconf import OmegaConf

    from unetlab.runs.results import dataset_name

    cfg = OmegaConf.create({"data": {"_target_": "unetlab.data.shapes.ShapesDataModule", "complexity": 0.5}})
    assert dataset_name(cfg) == "shapes-complexity0.5"
    cfg.data.complexity = 0.0
    assert dataset_name(cfg) == "shapes"
