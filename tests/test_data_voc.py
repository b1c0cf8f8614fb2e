import re

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fixtures_data import HEIGHT, WIDTH, save_voc_mask, write_voc
from tests.test_train import trained_and_untrained
from unetlab.data.io import DataError
from unetlab.data.voc import CLASSES, VOCDataModule, read_voc_mask, voc_colormap

FAST = ["task.optimizer.lr=0.01"]  # a short run on a few fixture images: a larger step than the default


def voc(root, **kwargs) -> VOCDataModule:
    kwargs = {"image_size": 32, "depth": 2, "batch_size": 2, **kwargs}
    module = VOCDataModule(root=str(root), **kwargs)
    module.setup("fit")
    return module


def fails(root, message: str, **kwargs) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        voc(root, **kwargs)


def labels_with_every_class() -> np.ndarray:
    labels = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    for index in range(len(CLASSES)):
        labels[index, :] = index
    labels[30:, :] = 255
    return labels


def test_colormap_is_the_voc_palette():
    colors = voc_colormap()
    assert colors[0].tolist() == [0, 0, 0]
    assert colors[1].tolist() == [128, 0, 0]  # aeroplane
    assert colors[15].tolist() == [192, 128, 128]  # person
    assert colors[20].tolist() == [0, 64, 128]  # tvmonitor
    assert colors[255].tolist() == [224, 224, 192]  # void border


def test_palette_png_decodes_to_class_indices(tmp_path):
    labels = labels_with_every_class()
    save_voc_mask(tmp_path / "mask.png", labels)
    assert Image.open(tmp_path / "mask.png").mode == "P"
    assert np.array_equal(read_voc_mask(tmp_path / "mask.png"), labels)
    rgb = voc_colormap()[labels]  # the same mask as colours, as some converted copies store it
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.array_equal(read_voc_mask(tmp_path / "rgb.png"), labels)


def test_unknown_rgb_colour_names_the_file(tmp_path):
    rgb = voc_colormap()[labels_with_every_class()]
    rgb[3, 4] = (1, 2, 3)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'rgb.png'}: RGB mask colour (1, 2, 3) at (3, 4)")):
        read_voc_mask(tmp_path / "rgb.png")


def test_items_and_classes(tmp_path):
    root = write_voc(tmp_path / "VOC2012")
    save_voc_mask(root / "SegmentationClass" / "2007_000206.png", labels_with_every_class())  # first val id
    module = voc(root, image_size=None, depth=3)
    assert module.num_classes == 21 and module.in_channels == 3
    image, mask = module.datasets["test"][0]
    assert image.shape == (3, HEIGHT, WIDTH) and mask.dtype == torch.int64
    assert torch.equal(mask, torch.from_numpy(labels_with_every_class()).long())


def test_official_val_is_the_test_split_and_val_is_carved_from_train(tmp_path):
    root = write_voc(tmp_path / "VOC2012", train=10, val=4)
    module = voc(root, val_fraction=0.2)
    lists = root / "ImageSets" / "Segmentation"
    official_train = lists.joinpath("train.txt").read_text().split()
    ids = {split: [s.image.stem for s in module.samples[split]] for split in ("train", "val", "test")}
    assert ids["test"] == lists.joinpath("val.txt").read_text().split()
    assert len(ids["val"]) == 2 and sorted(ids["train"] + ids["val"]) == sorted(official_train)
    assert [s.image.stem for s in voc(root, val_fraction=0.2).samples["val"]] == ids["val"]


def test_label_out_of_range(tmp_path):
    root = write_voc(tmp_path / "VOC2012")
    labels = labels_with_every_class()
    labels[0, 0] = 21
    path = root / "SegmentationClass" / "2007_000200.png"
    save_voc_mask(path, labels)
    fails(root, f"{path}: mask holds label(s) 21 outside 0..20 and 255 (ignore)")


def test_missing_mask_and_image(tmp_path):
    root = write_voc(tmp_path / "VOC2012")
    (root / "SegmentationClass" / "2007_000207.png").unlink()
    fails(root, f"{root / 'SegmentationClass' / '2007_000207.png'}: missing mask for 2007_000207.jpg")
    root = write_voc(tmp_path / "other" / "VOC2012")
    (root / "JPEGImages" / "2007_000201.jpg").unlink()
    fails(root, f"{root / 'JPEGImages' / '2007_000201.jpg'}: missing image")


def test_unreadable_and_truncated_masks(tmp_path):
    root = write_voc(tmp_path / "VOC2012")
    path = root / "SegmentationClass" / "2007_000203.png"
    path.write_bytes(path.read_bytes()[:70])
    fails(root, f"{path}: cannot read the mask")
    path.write_bytes(b"<html>404</html>")
    fails(root, f"{path}: cannot read the mask (UnidentifiedImageError")


def test_missing_split_list(tmp_path):
    root = write_voc(tmp_path / "VOC2012")
    (root / "ImageSets" / "Segmentation" / "train.txt").unlink()
    fails(root, f"{root / 'ImageSets' / 'Segmentation' / 'train.txt'}: split list does not exist")


def test_root_that_is_not_voc(tmp_path):
    fails(tmp_path / "VOCdevkit", f"data.root={tmp_path / 'VOCdevkit'} does not exist")


def test_a_short_run_learns(tmp_path):
    root = write_voc(tmp_path / "VOC2012")
    data = ["data=voc", f"data.root={root}", "data.image_size=32", "data.batch_size=1"]  # 5 steps an epoch
    trained, untrained, background = trained_and_untrained(tmp_path, *data, "trainer.max_epochs=20", *FAST)
    assert (tmp_path / "trained" / "metrics.json").is_file() and trained["epochs"] == 20
    assert trained["test/loss"] < 0.9 * untrained["test/loss"]
    person = CLASSES.index("person")  # the fixture's discs; its boxes are cats
    assert trained[f"test/dice/{person}"] > background[f"dice/{person}"] + 0.5
    # The mean over the 20 classes counts each class absent from image and prediction as 1, so predicting background
    # everywhere scores high already (18 of the 20 classes are absent); the run must beat that, not hallucinate.
    assert trained["test/dice"] > background["dice"]
