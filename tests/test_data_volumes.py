"""``data=folder`` with volumes: NIfTI files (``.nii``, ``.nii.gz``) and TIFF stacks in the folder layout."""

import re

import nibabel
import numpy as np
import pytest
import tifffile
import torch
from omegaconf import OmegaConf
from PIL import Image

from tests.fixtures_data import (
    DEPTH,
    VOLUME_HEIGHT,
    VOLUME_WIDTH,
    VOXEL,
    draw_volume,
    nifti_affine,
    patch_nifti_zoom,
    save_nifti,
    write_folder,
    write_volume_folder,
)
from unetlab.data.folder import FolderDataModule
from unetlab.data.io import DataError
from unetlab.data.transforms import Geometry
from unetlab.models.unet import UNet
from unetlab.runs.checkpoint import model_channels

SHAPE = (DEPTH, VOLUME_HEIGHT, VOLUME_WIDTH)  # (6, 20, 24): a depth-2 U-Net pads the 6 slices to 8


def folder(root, **kwargs) -> FolderDataModule:
    kwargs = {"image_size": None, "depth": 2, "batch_size": 1, "augment": False, **kwargs}
    module = FolderDataModule(root=str(root), **kwargs)
    module.setup("fit")
    return module


def fails(root, message: str, **kwargs) -> DataError:
    """setup() raises a one-line DataError containing ``message`` (paths literally)."""
    with pytest.raises(DataError, match=re.escape(message)) as info:
        folder(root, **kwargs)
    assert "\n" not in str(info.value)
    return info.value


def put_marker(root, x: int, y: int, z: int) -> None:
    """A bright voxel and a class-2 voxel at NIfTI index (x, y, z) of train/case_0, written through nibabel."""
    for folder_name, value in (("images", 5000), ("masks", 2)):
        path = root / "train" / folder_name / "case_0.nii.gz"
        stored = nibabel.load(path)
        data = np.zeros(stored.shape, dtype=stored.get_data_dtype())
        data[x, y, z] = value
        image = nibabel.Nifti1Image(data, stored.affine, stored.header)
        nibabel.save(image, path)


def test_nifti_items_are_z_y_x_volumes_with_the_header_voxel_size(tmp_path, capsys):
    root = write_volume_folder(tmp_path / "data")
    put_marker(root, x=17, y=3, z=4)
    module = folder(root)
    assert module.spatial_dims == 3 and module.in_channels == 1 and module.num_classes == 3
    assert module.spacing == VOXEL and module.unit == "mm"  # (sz, sy, sx), the float32 zooms as written
    out = capsys.readouterr().out
    assert "voxel size 2.5 x 0.8 x 0.8 mm (slices x rows x columns) from the NIfTI header of" in out
    assert "3/1/1 volumes (train/val/test)" in out
    image, mask = module.datasets["train"][0]
    assert image.dtype == torch.float32 and mask.dtype == torch.int64
    assert image.shape == (1, 8, VOLUME_HEIGHT, VOLUME_WIDTH) and mask.shape == (8, VOLUME_HEIGHT, VOLUME_WIDTH)
    assert (mask[DEPTH:] == 255).all() and (image[:, DEPTH:] == 0).all()  # slices padded to a multiple of 4
    assert torch.nonzero(image[0] == image.max()).tolist() == [[4, 3, 17]]  # (z, y, x)
    assert torch.nonzero(mask == 2).tolist() == [[4, 3, 17]]
    stored_image, stored_mask = draw_volume(301)  # train/case_1 as drawn (D, H, W)
    image, mask = module.datasets["train"][1]
    assert torch.equal(mask[:DEPTH], torch.from_numpy(stored_mask).long())
    low, high = stored_image.min(), stored_image.max()
    assert torch.allclose(image[0, :DEPTH], torch.from_numpy((stored_image - low) / (high - low)).float(), atol=1e-6)

    # the model follows: spatial_dims 3, and a batch runs through a 3-D U-Net
    channels = model_channels(OmegaConf.create({"model": {}}), module)
    assert channels == {"in_channels": 1, "num_classes": 3, "spatial_dims": 3}
    images, masks = next(iter(module.train_dataloader()))
    net = UNet(depth=2, base_channels=4, **channels).eval()
    with torch.no_grad():
        assert net(images).shape == (1, 3, *masks.shape[1:])


def test_a_4d_nifti_image_has_channels_and_a_second_setup_reads_nothing(tmp_path):
    root = write_volume_folder(tmp_path / "data", suffix=".nii")
    for path in root.glob("*/images/*.nii"):
        volume = np.asarray(nibabel.load(path).dataobj).T  # (D, H, W)
        save_nifti(path, np.stack([volume, -volume]))  # (C, D, H, W) -> stored (x, y, z, c)
    module = folder(root)
    assert module.in_channels == 2 and module.spatial_dims == 3
    image, _ = module.datasets["val"][0]
    assert image.shape == (2, 8, VOLUME_HEIGHT, VOLUME_WIDTH)
    assert torch.allclose(image[0, :DEPTH], 1 - image[1, :DEPTH], atol=1e-6)  # min-max of v and of -v
    assert folder(root).validation["cached"] == 10  # 5 images, 5 masks


def test_tiff_stacks_take_data_spacing_or_unit_voxels(tmp_path):
    root = write_volume_folder(tmp_path / "data", suffix=".tif")
    stored = tifffile.imread(root / "train/images/case_0.tif").copy()
    stored[2, 5, 7] = 30000
    tifffile.imwrite(root / "train/images/case_0.tif", stored)
    plain = folder(root)
    assert plain.spatial_dims == 3 and (plain.spacing, plain.unit) == ((1.0, 1.0, 1.0), "px")
    image, mask = plain.datasets["train"][0]
    assert torch.nonzero(image[0] == 1.0).tolist() == [[2, 5, 7]] and mask.shape == (8, VOLUME_HEIGHT, VOLUME_WIDTH)
    given = folder(root, spacing=[3, 0.5, 0.5], unit="um")
    assert given.spatial_dims == 3 and (given.spacing, given.unit) == ((3.0, 0.5, 0.5), "um")
    assert folder(root, spacing=0.5, unit="um").spacing == (0.5, 0.5, 0.5)  # one number: cubic voxels


def test_tiff_stacks_with_channels_last(tmp_path):
    root = write_volume_folder(tmp_path / "data", suffix=".tif", counts={"train": 2, "val": 1, "test": 1})
    for path in root.glob("*/images/*.tif"):
        volume = tifffile.imread(path).astype(np.float32)
        tifffile.imwrite(path, np.stack([volume, 2 * volume, 3 * volume], axis=-1))  # (D, H, W, C)
    module = folder(root)
    assert module.in_channels == 3
    image, mask = module.datasets["test"][0]
    assert image.shape == (3, 8, VOLUME_HEIGHT, VOLUME_WIDTH) and mask.shape == (8, VOLUME_HEIGHT, VOLUME_WIDTH)


def test_crop_takes_cubes_and_augmentation_stays_in_plane(tmp_path):
    module = folder(write_volume_folder(tmp_path / "data"), image_size=8, resize="crop", augment=True)
    image, mask = module.datasets["train"][0]
    assert image.shape == (1, 8, 8, 8) and mask.shape == (8, 8, 8)
    # every slice has its own label pattern: flips and rotations move (H, W), never the slice order
    mask = (torch.arange(4).view(4, 1, 1) * 100 + torch.arange(16).view(4, 4)).long()
    image = mask[None].float()
    geometry = Geometry(None, "crop", 4, train=True, augment=True)
    seen = set()
    for seed in range(30):
        out_image, out_mask = geometry(image, mask, torch.Generator().manual_seed(seed))
        assert out_mask.shape == (4, 4, 4) and torch.equal(out_image[0], out_mask.float())
        assert torch.equal(out_mask // 100, mask // 100)  # slice d stays slice d
        seen.add(tuple(out_mask[0].flatten().tolist()))
    assert len(seen) == 8  # the in-plane dihedral group


# --- bad input: each error is one line naming the file (or key) and the problem ----------------------------------


def test_a_folder_mixing_images_and_volumes(tmp_path):
    root = write_folder(tmp_path / "data")
    volume, mask = draw_volume(0)
    for path in (root / "val/images/sample_0.png", root / "val/masks/sample_0.png"):
        path.unlink()
    save_nifti(root / "val/images/sample_0.nii.gz", volume)
    save_nifti(root / "val/masks/sample_0.nii.gz", mask)
    fails(
        root, f"{root / 'val/images/sample_0.nii.gz'} is a volume but {root / 'train/images/sample_0.png'} is a 2-D "
        "image; a data set holds 2-D images or volumes, not both", image_size=32,
    )  # fmt: skip


def test_image_and_mask_with_different_voxel_sizes(tmp_path):
    root = write_volume_folder(tmp_path / "data")
    _, mask = draw_volume(302)
    save_nifti(root / "train/masks/case_2.nii.gz", mask, spacing=(3.0, 0.8, 0.8))
    fails(
        root, f"{root / 'train/masks/case_2.nii.gz'}: voxel size 3 x 0.8 x 0.8 mm but its image "
        f"{root / 'train/images/case_2.nii.gz'} has 2.5 x 0.8 x 0.8 mm (sz x sy x sx)",
    )  # fmt: skip


def test_image_and_mask_with_different_orientations(tmp_path):
    root = write_volume_folder(tmp_path / "data")
    _, mask = draw_volume(300)
    flipped = nifti_affine() @ np.diag([-1.0, 1, 1, 1])  # x runs to the left: LAS
    save_nifti(root / "train/masks/case_0.nii.gz", mask, affine=flipped)
    fails(root, f"{root / 'train/masks/case_0.nii.gz'}: its x, y, z axes point LAS but those of its image")


def test_volumes_with_different_voxel_sizes(tmp_path):
    root = write_volume_folder(tmp_path / "data")
    volume, mask = draw_volume(304)  # the test case
    save_nifti(root / "test/images/case_0.nii.gz", volume, spacing=(2.5, 0.7, 0.7))
    save_nifti(root / "test/masks/case_0.nii.gz", mask, spacing=(2.5, 0.7, 0.7))
    fails(
        root, f"{root / 'test/images/case_0.nii.gz'}: voxel size 2.5 x 0.7 x 0.7 mm but "
        f"{root / 'train/images/case_0.nii.gz'} has 2.5 x 0.8 x 0.8 mm (sz x sy x sx); the metrics take one voxel size",
    )  # fmt: skip


def test_given_spacing_must_match_the_headers(tmp_path):
    root = write_volume_folder(tmp_path / "data")
    header = root / "train/images/case_0.nii.gz"
    fails(
        root, f"data.spacing=[2.0, 0.8, 0.8] data.unit=mm differs from the voxel size 2.5 x 0.8 x 0.8 mm "
        f"(sz x sy x sx) in the header of {header}", spacing=[2, 0.8, 0.8], unit="mm",
    )  # fmt: skip
    fails(root, "data.spacing=[2.5, 0.8, 0.8] data.unit=um differs", spacing=[2.5, 0.8, 0.8], unit="um")
    assert folder(root, spacing=[2.5, 0.8, 0.8], unit="mm").spacing == (2.5, 0.8, 0.8)
    fails(root, "must be a positive number or three [sz, sy, sx] (slice, row, column): the images are volumes",
          spacing=[0.8, 0.8], unit="mm")  # fmt: skip


def test_an_unknown_header_unit_is_mm_unless_data_unit_names_it(tmp_path, capsys):
    root = write_volume_folder(tmp_path / "data", unit=None)
    module = folder(root)
    assert (module.spacing, module.unit) == (VOXEL, "mm")
    assert "(the header names no unit: read as mm" in capsys.readouterr().out
    named = folder(root, spacing=[2.5, 0.8, 0.8], unit="um")
    assert (named.spacing, named.unit) == (VOXEL, "um")


@pytest.mark.parametrize("zoom", [0.0, float("nan")])
def test_a_nifti_file_without_a_voxel_size(tmp_path, zoom):
    root = write_volume_folder(tmp_path / "data")
    path = root / "val/images/case_0.nii.gz"
    patch_nifti_zoom(path, axis=2, value=zoom)
    fails(root, f"{path}: the NIfTI header states no voxel size (zooms (0.8, 0.8, {zoom}), x y z)")


def test_a_nifti_file_whose_affine_is_not_invertible(tmp_path):
    root = write_volume_folder(tmp_path / "data")
    path = root / "test/masks/case_0.nii.gz"
    _, mask = draw_volume(304)
    singular = nifti_affine()
    singular[:3, 1] = singular[:3, 0]  # y runs along x: a flat world
    save_nifti(path, mask, affine=singular)
    fails(root, f"{path}: the NIfTI affine (voxel to world) is not invertible")


def test_missing_volume_mask(tmp_path):
    root = write_volume_folder(tmp_path / "data")
    (root / "val/masks/case_0.nii.gz").unlink()
    image = root / "val/images/case_0.nii.gz"
    fails(root, f"{image}: missing mask {root / 'val/masks/case_0'}.nii.gz (or .nii, .tif, .tiff)")


def test_volume_and_mask_shape_mismatch(tmp_path):
    root = write_volume_folder(tmp_path / "data")
    _, mask = draw_volume(300, shape=(DEPTH + 1, VOLUME_HEIGHT, VOLUME_WIDTH))
    save_nifti(root / "train/masks/case_0.nii.gz", mask)
    fails(
        root, f"{root / 'train/masks/case_0.nii.gz'}: mask is 7x20x24 (DxHxW) but its image "
        f"{root / 'train/images/case_0.nii.gz'} is 6x20x24; a mask must have its image's size",
    )  # fmt: skip
    save_nifti(root / "train/masks/case_0.nii.gz", mask[0])  # one slice, stored (x, y)
    fails(root, f"{root / 'train/masks/case_0.nii.gz'}: mask has shape (20, 24); a mask is (H, W), or (D, H, W)")


def test_volume_label_out_of_range(tmp_path):
    root = write_volume_folder(tmp_path / "data")
    _, mask = draw_volume(303)
    mask[1, 2, 3] = 7
    save_nifti(root / "val/masks/case_0.nii.gz", mask)
    fails(root, f"{root / 'val/masks/case_0.nii.gz'}: mask holds label(s) 7 outside 0..2 and 255", num_classes=3)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_truncated_nifti_image(tmp_path, suffix):
    root = write_volume_folder(tmp_path / "data", suffix=suffix)
    path = root / f"train/images/case_1{suffix}"
    path.write_bytes(path.read_bytes()[:-200])
    fails(root, f"{path}: truncated NIfTI file")


def test_unreadable_nifti_mask(tmp_path):
    root = write_volume_folder(tmp_path / "data")
    path = root / "test/masks/case_0.nii.gz"
    path.write_bytes(b"not a volume at all")
    fails(root, f"{path}: cannot read the mask (ImageFileError:")


def test_volume_sizes_that_pad_differently_need_batch_size_1(tmp_path):
    root = write_volume_folder(tmp_path / "data")
    volume, mask = draw_volume(302, shape=(12, VOLUME_HEIGHT, VOLUME_WIDTH))
    save_nifti(root / "train/images/case_2.nii.gz", volume)
    save_nifti(root / "train/masks/case_2.nii.gz", mask)
    error = fails(root, "data.image_size=null keeps each image's native size", batch_size=2)
    assert f"{root / 'train/images/case_2.nii.gz'} is 12x20x24 (DxHxW)" in str(error)
    assert folder(root, batch_size=1).datasets["train"][2][1].shape == (12, VOLUME_HEIGHT, VOLUME_WIDTH)


def test_resizing_volumes_is_refused(tmp_path):
    root = write_volume_folder(tmp_path / "data")
    fails(root, "data.resize=resize with data.image_size=16 would scale every volume", image_size=16)


def test_a_voxel_size_needs_volumes(tmp_path):
    root = write_folder(tmp_path / "images")
    with pytest.raises(ValueError, match=r"must be a positive number or a pair \[sy, sx\]"):
        FolderDataModule(root=str(root), depth=2, spacing=[2.5, 0.8, 0.8], unit="mm")
    volumes = write_volume_folder(tmp_path / "volumes")
    assert FolderDataModule(root=str(volumes), depth=2, spacing=[2.5, 0.8, 0.8], unit="mm").spatial_dims == 3


def test_a_tiff_mask_with_rgb_samples_is_refused(tmp_path):
    root = write_folder(tmp_path / "data")
    path = root / "train/masks/sample_0.png"
    rgb = np.array(Image.open(path))[..., None].repeat(3, axis=-1)
    path.unlink()
    tifffile.imwrite(path.with_suffix(".tif"), rgb, photometric="rgb")
    fails(root, f"{path.with_suffix('.tif')}: mask has 3 samples per pixel", image_size=32)
