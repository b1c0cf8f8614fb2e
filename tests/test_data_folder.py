import pickle
import re
import shutil

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from tests.fixtures_data import HEIGHT, WIDTH, draw, write_folder
from tests.test_train import trained_and_untrained
from unetlab.data.folder import FolderDataModule
from unetlab.data.io import DataError

FAST = ["task.optimizer.lr=0.01"]  # a short run on a few fixture images: a larger step than the default


def folder(root, **kwargs) -> FolderDataModule:
    kwargs = {"image_size": 32, "depth": 2, "batch_size": 2, **kwargs}
    module = FolderDataModule(root=str(root), **kwargs)
    module.setup("fit")
    return module


def fails(root, message: str, **kwargs) -> DataError:
    """setup() raises a DataError whose message contains ``message`` (a path, literally)."""
    with pytest.raises(DataError, match=re.escape(message)) as info:
        folder(root, **kwargs)
    return info.value


def test_reads_rgb_pairs_and_infers_classes(tmp_path, capsys):
    module = folder(write_folder(tmp_path / "data"), image_size=None)
    assert module.in_channels == 3 and module.num_classes == 3
    assert "data.num_classes=3 inferred from the training masks" in capsys.readouterr().out
    assert {split: len(ds) for split, ds in module.datasets.items()} == {"train": 4, "val": 2, "test": 2}
    image, mask = module.datasets["test"][0]
    assert image.dtype == torch.float32 and mask.dtype == torch.int64
    assert image.shape == (3, HEIGHT, WIDTH) and mask.shape == (HEIGHT, WIDTH)  # 40x48: multiples of 4 already
    stored_image = np.array(Image.open(tmp_path / "data/test/images/sample_0.png"))
    stored_mask = np.array(Image.open(tmp_path / "data/test/masks/sample_0.png"))
    assert torch.allclose(image, torch.from_numpy(stored_image).permute(2, 0, 1).float() / 255)
    assert torch.equal(mask, torch.from_numpy(stored_mask).long())


def test_given_num_classes_wins(tmp_path):
    assert folder(write_folder(tmp_path / "data"), num_classes=5).num_classes == 5


def test_grey_images_give_one_channel_and_mixed_sets_repeat_grey(tmp_path):
    root = write_folder(tmp_path / "data", grey=True)
    assert folder(root).in_channels == 1
    image, _ = draw(99)
    Image.fromarray(image).save(root / "train/images/sample_0.png")  # one RGB image among grey ones
    module = folder(root, image_size=None)
    assert module.in_channels == 3
    grey, _ = module.datasets["train"][1]
    assert grey.shape[0] == 3 and torch.equal(grey[0], grey[1]) and torch.equal(grey[0], grey[2])


def test_native_size_pads_to_a_multiple_of_two_to_the_depth(tmp_path):
    module = folder(write_folder(tmp_path / "data"), image_size=None, depth=4, augment=False)
    image, mask = module.datasets["train"][0]
    assert image.shape == (3, 48, 48) and mask.shape == (48, 48)
    assert (mask[HEIGHT:] == 255).all() and (image[:, HEIGHT:] == 0).all()
    images, masks = next(iter(module.train_dataloader()))
    assert images.shape == (2, 3, 48, 48) and masks.shape == (2, 48, 48)


def test_crop_mode_random_crops_for_training_centre_crops_for_evaluation(tmp_path):
    torch.manual_seed(0)
    module = folder(write_folder(tmp_path / "data"), resize="crop", image_size=32)
    stored = torch.from_numpy(np.array(Image.open(tmp_path / "data/val/masks/sample_0.png"))).long()
    val_masks = [module.datasets["val"][0][1] for _ in range(3)]
    assert all(torch.equal(mask, stored[4:36, 8:40]) for mask in val_masks)  # centre, no augmentation
    train_masks = {tuple(module.datasets["train"][0][1].flatten().tolist()) for _ in range(10)}
    assert len(train_masks) > 1  # random windows, flips and rotations


@pytest.mark.parametrize(
    ("normalize", "expected"),
    [
        ("auto", lambda a: (a - a.min()) / (a.max() - a.min())),
        ("minmax", lambda a: (a - a.min()) / (a.max() - a.min())),
        ("range", lambda a: a / 65535),
        ("zscore", lambda a: (a - a.mean()) / a.std()),
        ("none", lambda a: a),
    ],
)
def test_16bit_tiff_images_are_normalised_as_configured(tmp_path, normalize, expected):
    root = write_folder(tmp_path / "data", grey=True)
    rng = np.random.default_rng(0)
    stored = rng.integers(1000, 30000, (HEIGHT, WIDTH)).astype(np.uint16)
    (root / "train/images/sample_0.png").unlink()
    tifffile.imwrite(root / "train/images/sample_0.tif", stored)
    module = folder(root, image_size=None, normalize=normalize, augment=False)
    image, _ = module.datasets["train"][0]
    assert image.shape == (1, HEIGHT, WIDTH)
    reference = expected(stored.astype(np.float64))
    assert np.allclose(image[0].numpy(), reference, rtol=1e-5, atol=1e-4)


def test_float_and_multichannel_tiffs(tmp_path):
    root = write_folder(tmp_path / "data", counts={"train": 2, "val": 1, "test": 1})
    rng = np.random.default_rng(0)
    for path in root.glob("*/images/*.png"):
        path.unlink()
        tifffile.imwrite(path.with_suffix(".tiff"), rng.normal(5, 2, (4, HEIGHT, WIDTH)).astype(np.float32))
    for path in root.glob("*/masks/*.png"):
        mask = np.array(Image.open(path))
        path.unlink()
        tifffile.imwrite(path.with_suffix(".tif"), mask.astype(np.float32))  # float TIFF masks holding integers
    module = folder(root, image_size=None)
    assert module.in_channels == 4 and module.num_classes == 3
    image, mask = module.datasets["val"][0]
    assert image.shape == (4, HEIGHT, WIDTH) and float(image.min()) == 0.0 and float(image.max()) == 1.0
    assert set(mask.unique().tolist()) <= {0, 1, 2}


def test_dataset_pickles_and_loads_in_persistent_workers(tmp_path):
    module = folder(write_folder(tmp_path / "data"), num_workers=2)
    val = module.datasets["val"]
    clone = pickle.loads(pickle.dumps(val))
    assert torch.equal(clone[1][0], val[1][0]) and torch.equal(clone[1][1], val[1][1])
    loader = module.train_dataloader()
    assert loader.persistent_workers and loader.num_workers == 2
    for _ in range(2):  # a second epoch reuses the same worker processes
        batches = list(loader)
        assert sum(len(masks) for _, masks in batches) == 4
        assert all(images.shape[1:] == (3, 32, 32) for images, _ in batches)
    assert loader._iterator is not None and loader._iterator._workers
    val_batches = list(module.val_dataloader())
    assert len(val_batches) == 1 and val_batches[0][0].shape == (2, 3, 32, 32)


# --- bad input: each error names the file (or folder, or key) and the problem ---------------------------------


def test_missing_root(tmp_path):
    fails(tmp_path / "nowhere", f"data.root={tmp_path / 'nowhere'} does not exist")
    with pytest.raises(DataError, match="data.root is not set; pass data.root=DIR"):
        FolderDataModule(root=None).setup()


def test_missing_split_folder(tmp_path):
    root = write_folder(tmp_path / "data")
    shutil.rmtree(root / "val" / "masks")
    fails(root, f"{root / 'val' / 'masks'}: folder does not exist")


def test_empty_split(tmp_path):
    root = write_folder(tmp_path / "data")
    for path in (root / "test").glob("*/*"):
        path.unlink()
    fails(root, f"{root / 'test' / 'images'}: no images, so the test split is empty")


def test_missing_mask(tmp_path):
    root = write_folder(tmp_path / "data")
    (root / "train/masks/sample_2.png").unlink()
    fails(root, f"{root / 'train/images/sample_2.png'}: missing mask {root / 'train/masks/sample_2'}.png")


def test_mask_without_image(tmp_path):
    root = write_folder(tmp_path / "data")
    (root / "val/images/sample_1.png").unlink()
    fails(root, f"{root / 'val/masks/sample_1.png'}: mask without an image")


def test_jpeg_mask_is_refused(tmp_path):
    root = write_folder(tmp_path / "data")
    mask = root / "train/masks/sample_0.png"
    Image.open(mask).save(mask.with_suffix(".jpg"))
    mask.unlink()
    fails(root, f"{mask.with_suffix('.jpg')}: JPEG masks are lossy")


def test_size_mismatch(tmp_path):
    root = write_folder(tmp_path / "data")
    Image.fromarray(np.zeros((HEIGHT, WIDTH - 8), dtype=np.uint8)).save(root / "test/masks/sample_1.png")
    error = fails(root, f"{root / 'test/masks/sample_1.png'}: mask is 40x40 (HxW) but its image")
    assert str(root / "test/images/sample_1.png") in str(error) and "is 40x48" in str(error)


def test_label_out_of_range_with_given_num_classes(tmp_path):
    root = write_folder(tmp_path / "data")
    mask = np.array(Image.open(root / "val/masks/sample_0.png"))
    mask[0, 0] = 7
    Image.fromarray(mask).save(root / "val/masks/sample_0.png")
    fails(root, f"{root / 'val/masks/sample_0.png'}: mask holds label(s) 7 outside 0..2 and 255", num_classes=3)


def test_label_beyond_the_inferred_classes(tmp_path):
    root = write_folder(tmp_path / "data")
    mask = np.array(Image.open(root / "test/masks/sample_1.png"))
    mask[5, 5] = 4
    Image.fromarray(mask).save(root / "test/masks/sample_1.png")
    error = fails(root, f"{root / 'test/masks/sample_1.png'}: mask holds label(s) 4 outside 0..2")
    assert "inferred from the training masks" in str(error)


def test_rgb_mask_is_refused(tmp_path):
    root = write_folder(tmp_path / "data")
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)).save(root / "train/masks/sample_3.png")
    fails(root, f"{root / 'train/masks/sample_3.png'}: mask has mode RGB")


def test_unreadable_image(tmp_path):
    root = write_folder(tmp_path / "data")
    (root / "train/images/sample_1.png").write_bytes(b"not an image at all")
    fails(root, f"{root / 'train/images/sample_1.png'}: cannot read the image")


def test_truncated_png_image(tmp_path):
    root = write_folder(tmp_path / "data")
    path = root / "val/images/sample_1.png"
    path.write_bytes(path.read_bytes()[:-200])
    fails(root, f"{path}: truncated PNG file")


def test_truncated_jpeg_image(tmp_path):
    root = write_folder(tmp_path / "data", image_suffix=".jpg")
    path = root / "train/images/sample_0.jpg"
    path.write_bytes(path.read_bytes()[:-300])
    fails(root, f"{path}: truncated JPEG file")


def test_truncated_tiff_image(tmp_path):
    root = write_folder(tmp_path / "data")
    path = root / "test/images/sample_0.png"
    path.unlink()
    tifffile.imwrite(path.with_suffix(".tif"), np.zeros((HEIGHT, WIDTH), dtype=np.uint16))
    data = path.with_suffix(".tif").read_bytes()
    path.with_suffix(".tif").write_bytes(data[:-1000])
    fails(root, f"{path.with_suffix('.tif')}: truncated TIFF")


def test_truncated_mask(tmp_path):
    root = write_folder(tmp_path / "data")
    path = root / "train/masks/sample_1.png"
    path.write_bytes(path.read_bytes()[:60])
    fails(root, f"{path}: cannot read the mask")


def test_mixed_sizes_need_an_image_size_or_batch_size_1(tmp_path):
    root = write_folder(tmp_path / "data")
    image, mask = draw(5, height=64, width=64)
    Image.fromarray(image).save(root / "train/images/sample_3.png")
    Image.fromarray(mask).save(root / "train/masks/sample_3.png")
    error = fails(root, "data.image_size=null keeps each image's native size", image_size=None)
    assert str(root / "train/images/sample_3.png") in str(error) and "data.batch_size=1" in str(error)
    assert folder(root, image_size=None, batch_size=1).datasets["train"][3][1].shape == (64, 64)
    assert folder(root, image_size=32).datasets["train"][3][1].shape == (32, 32)


def test_wrong_channel_count(tmp_path):
    root = write_folder(tmp_path / "data")
    (root / "train/images/sample_0.png").unlink()
    tifffile.imwrite(root / "train/images/sample_0.tif", np.zeros((2, HEIGHT, WIDTH), dtype=np.uint8))
    fails(root, f"{root / 'train/images/sample_0.tif'}: has 2 channels, other images have 3")


def test_a_short_run_learns(tmp_path):
    root = write_folder(tmp_path / "data")
    data = ["data=folder", f"data.root={root}", "data.image_size=32", "data.batch_size=1"]  # 4 steps an epoch
    trained, untrained, background = trained_and_untrained(tmp_path, *data, "trainer.max_epochs=20", *FAST)
    assert (tmp_path / "trained" / "metrics.json").is_file() and trained["epochs"] == 20
    assert trained["test/loss"] < 0.9 * untrained["test/loss"]
    assert trained["test/dice/1"] > background["dice/1"] + 0.5  # the disc; the small box (class 2) takes longer
    assert trained["test/dice"] > background["dice"] + 0.25


def write_tiff_images(root, resolution, unit_tag, imagej_unit=None):
    """Replace the training images of a folder data set by TIFFs with the given resolution tags."""
    for path in sorted((root / "train" / "images").glob("*.png")):
        image = np.asarray(Image.open(path))
        metadata = {"unit": imagej_unit} if imagej_unit else None
        tifffile.imwrite(path.with_suffix(".tif"), image, resolution=resolution, resolutionunit=unit_tag,
                         imagej=imagej_unit is not None, metadata=metadata)  # fmt: skip
        path.unlink()


@pytest.mark.parametrize(
    ("resolution", "unit_tag", "imagej_unit", "expected"),
    [
        ((4.0, 2.0), 1, "micron", ((0.5, 0.25), "um")),  # ImageJ: pixels per micron, x then y
        ((254.0, 254.0), 2, None, ((0.1, 0.1), "mm")),  # 254 dpi = 0.1 mm
        ((1.0, 1.0), 2, None, ((1.0, 1.0), "px")),  # tifffile's default tags: no measurement
    ],
)
def test_pixel_size_from_tiff_resolution_tags(tmp_path, capsys, resolution, unit_tag, imagej_unit, expected):
    root = write_folder(tmp_path / "data")
    write_tiff_images(root, resolution, unit_tag, imagej_unit)
    dm = FolderDataModule(root=str(root), depth=2)
    dm.setup()
    assert dm.spacing == pytest.approx(expected[0]) and dm.unit == expected[1]
    if expected[1] != "px":
        assert f"{expected[1]} (rows x columns) from the resolution tags of" in capsys.readouterr().out


def test_given_spacing_wins_over_tags_and_resize_scales_the_read_one(tmp_path):
    root = write_folder(tmp_path / "data")
    write_tiff_images(root, (4.0, 2.0), 1, "micron")
    given = FolderDataModule(root=str(root), depth=2, spacing=[2, 3], unit="nm")
    given.setup()
    assert (given.spacing, given.unit) == ((2.0, 3.0), "nm")
    resized = FolderDataModule(root=str(root), depth=2, image_size=24)  # native 40 x 48 -> 24 x 24
    resized.setup()
    assert resized.spacing == pytest.approx((0.5 * HEIGHT / 24, 0.25 * WIDTH / 24))


@pytest.mark.parametrize(
    ("spacing", "unit", "message"),
    [
        ([1, -2], "um", r"data.spacing=\[1, -2\] must be a positive number or a pair"),
        ([1, 2, 3], "um", "must be a positive number or a pair"),
        ([0.5, 0.5], None, "data.unit=None: name the unit of data.spacing in one word"),
        (None, "um", "data.unit='um' needs data.spacing"),
    ],
)
def test_bad_spacing_is_refused_naming_the_key(tmp_path, spacing, unit, message):
    with pytest.raises(ValueError, match=message):
        FolderDataModule(root=str(tmp_path), depth=2, spacing=spacing, unit=unit)
