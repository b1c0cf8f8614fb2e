import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from unetlab.conventions import SPLITS
from unetlab.data.shapes3d import (
    KINDS,
    Object3D,
    Shapes3DDataModule,
    draw_scene,
    inside,
    make_volume,
    random_rotation,
    voxel_centres,
)

SPACING = (2.5, 0.8, 0.8)
SMALL = dict(volume_size=(8, 24, 24), train_size=6, val_size=2, test_size=2)


def test_items_are_volumes_with_one_channel():
    dm = Shapes3DDataModule(**SMALL, batch_size=3)
    dm.setup("fit")
    image, mask = dm.datasets["train"][0]
    assert image.shape == (1, 8, 24, 24) and image.dtype == torch.float32
    assert mask.shape == (8, 24, 24) and mask.dtype == torch.int64
    images, masks = next(iter(dm.train_dataloader()))
    assert images.shape == (3, 1, 8, 24, 24) and masks.shape == (3, 8, 24, 24) and masks.dtype == torch.int64
    assert dm.spatial_dims == 3 and dm.in_channels == 1 and dm.num_classes == 2
    assert dm.spacing == SPACING and dm.unit == "mm"
    assert set(torch.cat([m.unique() for _, m in dm.datasets["train"]]).tolist()) == {0, 1}


def test_the_config_builds_the_defaults():
    cfg = OmegaConf.load(Path(__file__).parents[1] / "conf/data/shapes3d.yaml")
    dm = instantiate(cfg, train_size=2, val_size=1, test_size=1)
    assert dm.volume_size == (16, 48, 48) and dm.spacing == SPACING and dm.sizes == {"train": 2, "val": 1, "test": 1}
    assert dm.volume_kwargs["kinds"] == list(KINDS) and dm.batch_size == 4


def test_a_volume_is_a_pure_function_of_seed_split_index():
    a_img, a_mask = make_volume(3, "train", 7)
    b_img, b_mask = make_volume(3, "train", 7)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_mask, b_mask)
    assert a_mask.any()
    for other in (make_volume(4, "train", 7), make_volume(3, "val", 7), make_volume(3, "train", 8)):
        assert not np.array_equal(a_img, other[0]) and not np.array_equal(a_mask, other[1])


def test_a_split_is_generated_once_per_process_and_per_config():
    first, second, other = (Shapes3DDataModule(**SMALL, seed=s) for s in (3, 3, 4))
    for dm in (first, second, other):
        dm.setup()
    assert first.datasets["test"] is second.datasets["test"]
    assert not torch.equal(other.datasets["test"].images, first.datasets["test"].images)


def brute_force(quadric: np.ndarray, centre, size) -> np.ndarray:
    """Voxel by voxel: (p - c)^T Q (p - c) <= 1 at p = (z*sz, y*sy, x*sx)."""
    out = np.zeros(size, bool)
    for z, y, x in itertools.product(*map(range, size)):
        d = np.array([z, y, x]) * SPACING - centre
        out[z, y, x] = d @ quadric @ d <= 1.0
    return out


def test_ellipsoid_mask_is_exact_voxel_centre_membership():
    size = (10, 20, 20)
    grid = voxel_centres(size, SPACING)
    # axis-aligned, centred on voxel (4, 10, 10): radii 5.1 mm (2 slices each way), 2.5 mm (3 rows), 1.7 mm (2 columns)
    centre = (10.0, 8.0, 8.0)
    mask = inside(Object3D("ellipsoid", centre, np.eye(3), (5.1, 2.5, 1.7)), *grid)
    assert mask[:, 10, 10].nonzero()[0].tolist() == [2, 3, 4, 5, 6]
    assert mask[4, :, 10].nonzero()[0].tolist() == [7, 8, 9, 10, 11, 12, 13]
    assert mask[4, 10].nonzero()[0].tolist() == [8, 9, 10, 11, 12]
    np.testing.assert_array_equal(mask, brute_force(np.diag(np.array([5.1, 2.5, 1.7]) ** -2.0), centre, size))
    # rotated: the quadric R diag(1/r^2) R^T, evaluated independently
    rotation = random_rotation(np.random.default_rng(0))
    radii = np.array([6.3, 3.1, 4.2])
    mask = inside(Object3D("ellipsoid", (11.0, 7.9, 8.3), rotation, tuple(radii)), *grid)
    np.testing.assert_array_equal(
        mask, brute_force(rotation @ np.diag(radii**-2.0) @ rotation.T, (11.0, 7.9, 8.3), size)
    )


def test_ellipsoid_volume_on_the_anisotropic_grid():
    size = (24, 64, 64)
    grid = voxel_centres(size, SPACING)
    rng = np.random.default_rng(1)
    for radii in ((9.0, 6.0, 11.0), (12.0, 7.5, 8.0), (6.0, 6.0, 14.0)):
        rotation = random_rotation(rng)
        mask = inside(Object3D("ellipsoid", (30.0, 25.6, 25.6), rotation, radii), *grid)
        assert mask.sum() * np.prod(SPACING) == pytest.approx(4 / 3 * np.pi * np.prod(radii), rel=0.03)


def test_plate_and_tube_are_what_their_parameters_say():
    size = (12, 40, 40)
    grid = voxel_centres(size, SPACING)
    centre = (15.0, 16.0, 16.0)
    # a plate with its normal along x: 2.4 mm thick -> x offsets -1.2..1.2 mm -> 3 columns (0.8 mm apart)
    plate = inside(Object3D("plate", centre, np.eye(3)[:, [2, 1, 0]], (1.2, 6.2, 5.6)), *grid)
    assert np.unique(plate.nonzero()[2]).tolist() == [19, 20, 21]
    assert np.unique(plate.nonzero()[0]).tolist() == [4, 5, 6, 7, 8]  # |z - 15| <= 5.6 mm, slices 2.5 mm apart
    assert plate.sum() == 3 * 5 * 15  # and |y - 16| <= 6.2 mm: rows 13..27
    # a tube along z, 8 mm long, radius 1.7 mm: in each slice it crosses, the 13 voxels with i^2 + j^2 <= 4
    tube = inside(Object3D("tube", centre, np.eye(3), (4.0, 1.7, 1.7)), *grid)
    assert tube.sum(axis=(1, 2)).tolist() == [0] * 5 + [13] * 3 + [0] * 4


def test_each_kind_has_its_own_class_and_later_objects_occlude_earlier_ones():
    size = (16, 48, 48)
    grid = voxel_centres(size, SPACING)
    kinds_seen, labels_seen, occluded = set(), set(), 0
    for i in range(10):
        _, mask = make_volume(0, "train", i, num_classes=len(KINDS) + 1)
        _, binary = make_volume(0, "train", i)
        scene = draw_scene(np.random.default_rng([0, SPLITS.index("train"), i]), size, SPACING)  # make_volume's stream
        expected, first_wins = np.zeros(size, np.int64), np.zeros(size, np.int64)
        for obj, _ in scene:
            covered = inside(obj, *grid)
            expected[covered] = {"ellipsoid": 1, "plate": 2, "tube": 3}[obj.kind]
            first_wins[covered & (first_wins == 0)] = expected[covered & (first_wins == 0)]
            kinds_seen.add(obj.kind)
        occluded += (expected != first_wins).sum()
        np.testing.assert_array_equal(mask, expected)
        np.testing.assert_array_equal(binary, expected > 0)
        labels_seen |= set(np.unique(mask).tolist())
    assert kinds_seen == set(KINDS) and labels_seen == {0, 1, 2, 3}
    assert occluded > 0  # some later object covers an earlier one of another kind


def principal_stds(mask: np.ndarray) -> np.ndarray:
    """Standard deviations (mm) of the object's voxel centres along its principal axes, smallest first."""
    points = np.argwhere(mask) * SPACING
    return np.sqrt(np.linalg.eigvalsh(np.cov(points.T)))


def test_plates_are_thin_along_their_normal_and_tubes_are_long():
    for i in range(8):
        _, plate = make_volume(5, "train", i, kinds=["plate"], max_objects=1)
        thin, _, wide = principal_stds(plate > 0)
        assert thin < 3.0 / np.sqrt(12) + 0.05 and wide > 3.0  # a slab at most 3 mm thick, sides >= 11 mm
        _, tube = make_volume(5, "train", i, kinds=["tube"], max_objects=1)
        narrow, _, long = principal_stds(tube > 0)
        assert narrow < 1.6 and long > 3.0  # radius <= 3 mm; length >= 19 mm unless cut by the volume's edge


def test_objects_are_brighter_than_the_background():
    image, mask = make_volume(2, "test", 1, noise=0.0)
    contrast = image[mask > 0].mean() - image[mask == 0].mean()
    assert 0.2 < contrast < 0.75
    noisy, noisy_mask = make_volume(2, "test", 1, noise=0.1)
    np.testing.assert_array_equal(mask, noisy_mask)
    assert np.std(noisy - image) == pytest.approx(0.1, rel=0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(volume_size=[16, 48]), r"data.volume_size=\[16, 48\] must be three voxel counts \[D, H, W\], each >= 8"),
        (dict(volume_size=[4, 48, 48]), r"data.volume_size=\[4, 48, 48\] must be three"),
        (dict(kinds=["cube"]), r"data.kinds=\['cube'\].*allowed: ellipsoid, plate, tube"),
        (dict(spacing=[0.8, 0.8]), r"data.spacing=\[0.8, 0.8\] must be a positive number or three \[sz, sy, sx\]"),
        (dict(num_classes=3), r"data.num_classes=3: .* one per kind \(4 for"),
        (dict(max_objects=0), r"data.max_objects=0 must be >= 1"),
    ],
)
def test_bad_keys_name_the_key_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        Shapes3DDataModule(**kwargs)
    assert "\n" not in str(error.value)
