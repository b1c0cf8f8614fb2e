import re

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fixtures_data import HEIGHT, WIDTH, write_pets
from tests.test_train import trained_and_untrained
from unetlab.data.io import DataError
from unetlab.data.pets import PetsDataModule, read_list

FAST = ["task.optimizer.lr=0.01"]  # a short run on a few fixture images: a larger step than the default


def pets(root, **kwargs) -> PetsDataModule:
    kwargs = {"image_size": 32, "depth": 2, "batch_size": 2, **kwargs}
    module = PetsDataModule(root=str(root), **kwargs)
    module.setup("fit")
    return module


def fails(root, message: str, **kwargs) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        pets(root, **kwargs)


def trimap_sample(root) -> np.ndarray:
    """Overwrite the first test trimap with every value at known places; returns it."""
    trimap = np.full((HEIGHT, WIDTH), 2, dtype=np.uint8)
    trimap[10:20, 10:30] = 1
    trimap[9, 10:30] = 3
    trimap[20, 10:30] = 3
    name = read_list(root / "annotations" / "test.txt")[0]
    Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{name}.png")
    return trimap


@pytest.mark.parametrize(("border", "border_label"), [("ignore", 255), ("foreground", 1), ("background", 0)])
def test_trimap_mapping_is_exact(tmp_path, border, border_label):
    root = write_pets(tmp_path / "pets")
    trimap = trimap_sample(root)
    module = pets(root, image_size=None, depth=3, border=border)  # 40x48: native size, no padding
    image, mask = module.datasets["test"][0]
    expected = np.select([trimap == 1, trimap == 2, trimap == 3], [1, 0, border_label])
    assert image.shape == (3, HEIGHT, WIDTH) and mask.dtype == torch.int64
    assert torch.equal(mask, torch.from_numpy(expected).long())
    assert module.num_classes == 2 and module.in_channels == 3


def test_splits_test_list_and_a_seeded_val_carve(tmp_path):
    root = write_pets(tmp_path / "pets", trainval=20, test=3)
    module = pets(root, val_fraction=0.25)
    names = {split: [s.image.stem for s in module.samples[split]] for split in ("train", "val", "test")}
    assert names["test"] == read_list(root / "annotations" / "test.txt")
    trainval = read_list(root / "annotations" / "trainval.txt")
    assert len(names["val"]) == 5 and len(names["train"]) == 15
    assert sorted(names["train"] + names["val"]) == sorted(trainval)
    again = pets(root, val_fraction=0.25)
    assert [s.image.stem for s in again.samples["val"]] == names["val"]  # deterministic
    other = pets(root, val_fraction=0.25, split_seed=1)
    assert [s.image.stem for s in other.samples["val"]] != names["val"]


def test_grey_jpeg_is_read_as_rgb(tmp_path):
    root = write_pets(tmp_path / "pets")
    name = read_list(root / "annotations" / "test.txt")[0]
    Image.fromarray(np.full((HEIGHT, WIDTH), 90, dtype=np.uint8)).save(root / "images" / f"{name}.jpg")
    image, _ = pets(root, image_size=None, depth=3).datasets["test"][0]
    assert image.shape == (3, HEIGHT, WIDTH)
    assert torch.allclose(image, torch.full_like(image, 90 / 255), atol=2 / 255)


def test_missing_trimap(tmp_path):
    root = write_pets(tmp_path / "pets")
    name = read_list(root / "annotations" / "test.txt")[1]
    (root / "annotations" / "trimaps" / f"{name}.png").unlink()
    fails(root, f"{root / 'annotations' / 'trimaps' / name}.png: missing trimap for {name}.jpg")


def test_missing_image(tmp_path):
    root = write_pets(tmp_path / "pets")
    name = read_list(root / "annotations" / "trainval.txt")[2]
    (root / "images" / f"{name}.jpg").unlink()
    fails(root, f"{root / 'images' / name}.jpg: missing image")


def test_trimap_value_outside_1_2_3(tmp_path):
    root = write_pets(tmp_path / "pets")
    name = read_list(root / "annotations" / "test.txt")[0]
    path = root / "annotations" / "trimaps" / f"{name}.png"
    trimap = np.array(Image.open(path))
    trimap[0, 0] = 0
    Image.fromarray(trimap).save(path)
    fails(root, f"{path}: mask holds label(s) 0 outside the trimap values 1 (pet), 2 (background), 3 (border)")


def test_missing_or_malformed_lists(tmp_path):
    root = write_pets(tmp_path / "pets")
    lines = (root / "annotations" / "trainval.txt").read_text().splitlines()
    (root / "annotations" / "trainval.txt").write_text("\n".join([*lines, "Abyssinian_9 1"]) + "\n")
    fails(root, f"{root / 'annotations' / 'trainval.txt'}:{len(lines) + 1}: expected 'NAME CLASS_ID SPECIES BREED_ID'")
    (root / "annotations" / "test.txt").unlink()
    (root / "annotations" / "trainval.txt").write_text("\n".join(lines) + "\n")
    fails(root, f"{root / 'annotations' / 'test.txt'}: split list does not exist")


def test_empty_test_list(tmp_path):
    root = write_pets(tmp_path / "pets")
    (root / "annotations" / "test.txt").write_text("")
    fails(root, f"data.root={root}: the test split is empty")


def test_size_mismatch(tmp_path):
    root = write_pets(tmp_path / "pets")
    name = read_list(root / "annotations" / "trainval.txt")[0]
    path = root / "annotations" / "trimaps" / f"{name}.png"
    Image.fromarray(np.full((HEIGHT + 2, WIDTH), 2, dtype=np.uint8)).save(path)
    fails(root, f"{path}: mask is 42x48 (HxW) but its image {root / 'images' / name}.jpg is 40x48")


def test_a_short_run_learns(tmp_path):
    root = write_pets(tmp_path / "pets")
    data = ["data=pets", f"data.root={root}", "data.image_size=32", "data.batch_size=1"]  # 5 steps an epoch
    trained, untrained, background = trained_and_untrained(tmp_path, *data, "trainer.max_epochs=10", *FAST)
    assert (tmp_path / "trained" / "metrics.json").is_file() and trained["epochs"] == 10
    assert trained["test/loss"] < 0.9 * untrained["test/loss"]
    assert trained["test/dice"] > background["dice"] + 0.5  # the pet (class 1), borders ignored
    assert trained["test/dice"] > untrained["test/dice"] + 0.25
