import pytest
import torch

from unetlab.data.transforms import (
    Geometry,
    center_crop_or_pad,
    pad_to_multiple,
    random_crop_or_pad,
    random_flip_rotate,
    resize,
)


def pair(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An image whose channel 0 equals its mask (labels 0..9), so any transform can be checked for agreement."""
    mask = torch.arange(height * width).reshape(height, width) % 10
    image = torch.stack([mask.float(), torch.rand(height, width)])
    return image, mask


def test_resize_images_bilinear_masks_nearest_at_pixel_centres():
    image = torch.linspace(0, 1, 8).repeat(1, 8, 1)  # (1, 8, 8) ramp along x
    mask = torch.zeros(8, 8, dtype=torch.long)
    mask[:, 4:] = 1
    mask[0, 0] = 255
    big_image, big_mask = resize(image, mask, (16, 16))
    assert big_image.shape == (1, 16, 16) and big_mask.shape == (16, 16) and big_mask.dtype == torch.long
    # nearest at pixel centres: every source pixel becomes an exact 2x2 block
    assert torch.equal(big_mask, mask.repeat_interleave(2, 0).repeat_interleave(2, 1))
    # bilinear: values interpolate (new values appear), monotone along the ramp, within the range
    assert len(big_image.unique()) > len(image.unique())
    assert (big_image[0, 0].diff() >= -1e-6).all() and big_image.min() >= 0 and big_image.max() <= 1
    small_image, small_mask = resize(image, mask, (4, 4))
    assert set(small_mask.unique().tolist()) <= {0, 1, 255}
    assert small_image.shape == (1, 4, 4)


def test_pad_to_multiple_pads_bottom_right_with_ignore():
    image, mask = pair(40, 44)
    padded_image, padded_mask = pad_to_multiple(image, mask, 16)
    assert padded_image.shape == (2, 48, 48) and padded_mask.shape == (48, 48)
    assert torch.equal(padded_mask[:40, :44], mask) and torch.equal(padded_image[:, :40, :44], image)
    assert (padded_mask[40:] == 255).all() and (padded_mask[:, 44:] == 255).all()
    assert (padded_image[:, 40:] == 0).all()
    same_image, same_mask = pad_to_multiple(image, mask, 4)
    assert same_mask is mask and same_image is image


def test_center_crop_takes_the_middle_and_pads_small_sides():
    image, mask = pair(40, 48)
    crop_image, crop_mask = center_crop_or_pad(image, mask, (32, 32))
    assert torch.equal(crop_mask, mask[4:36, 8:40]) and torch.equal(crop_image, image[:, 4:36, 8:40])
    padded_image, padded_mask = center_crop_or_pad(image, mask, (44, 48))
    assert torch.equal(padded_mask[2:42], mask) and (padded_mask[:2] == 255).all() and (padded_mask[42:] == 255).all()


def test_random_crop_is_a_window_of_the_input():
    torch.manual_seed(0)
    image, mask = pair(40, 48)
    tops_lefts = set()
    for _ in range(20):
        crop_image, crop_mask = random_crop_or_pad(image, mask, (32, 32))
        assert crop_mask.shape == (32, 32)
        matches = [
            (top, left)
            for top in range(9)
            for left in range(17)
            if torch.equal(crop_mask, mask[top : top + 32, left : left + 32])
            and torch.equal(crop_image, image[:, top : top + 32, left : left + 32])
        ]
        assert matches
        tops_lefts.add(matches[0])
    assert len(tops_lefts) > 1  # the window moves


def test_flips_and_rotations_move_image_and_mask_together():
    torch.manual_seed(0)
    image, mask = pair(32, 32)
    seen = set()
    for _ in range(40):
        out_image, out_mask = random_flip_rotate(image, mask, rotate=True)
        assert torch.equal(out_image[0], out_mask.float())
        seen.add(tuple(out_mask[0, :2].tolist() + out_mask[-1, -2:].tolist()))
    assert len(seen) == 8  # the dihedral group: 4 rotations x flip
    tall_image, tall_mask = pair(40, 32)
    for _ in range(10):
        out_image, out_mask = random_flip_rotate(tall_image, tall_mask, rotate=False)
        assert out_mask.shape == (40, 32) and torch.equal(out_image[0], out_mask.float())


def test_geometry_sizes_per_mode_and_split():
    torch.manual_seed(0)
    image, mask = pair(40, 48)
    for mode in ("resize", "crop"):
        for train in (True, False):
            out_image, out_mask = Geometry(32, mode, 8, train=train, augment=True)(image, mask)
            assert out_image.shape == (2, 32, 32) and out_mask.shape == (32, 32)
    native = Geometry(None, "resize", 16, train=True, augment=False)
    out_image, out_mask = native(image, mask)
    assert out_mask.shape == (48, 48) and torch.equal(out_mask[:40], mask)
    evaluation = Geometry(32, "crop", 8, train=False, augment=True)
    assert not evaluation.augment
    first, second = evaluation(image, mask), evaluation(image, mask)
    assert torch.equal(first[1], second[1])  # evaluation is deterministic


def test_geometry_rejects_sizes_that_are_not_a_multiple():
    with pytest.raises(ValueError, match=r"data.image_size=36 is not a positive multiple of 2\*\*model.depth = 16"):
        Geometry(36, "resize", 16, train=True, augment=True)
    with pytest.raises(ValueError, match="data.resize='scale'"):
        Geometry(32, "scale", 16, train=True, augment=True)
