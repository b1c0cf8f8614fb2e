"""Reading images and masks from disk: Pillow for PNG/JPEG, tifffile for TIFF, nibabel for NIfTI. Nothing is held open.

Two kinds of access:
- headers (``image_header``): size and channel count without decoding the pixels, plus a cheap completeness
  check (a PNG must end with its IEND chunk, a JPEG with its end-of-image marker, TIFF strips must lie inside
  the file, a NIfTI file must hold all its voxels), for the validation pass;
- full reads (``read_image``, ``read_mask``) for training and for the mask scan.

Volumes are (D, H, W) = (z, y, x): NIfTI files (always volumes; stored (x, y, z[, c]), so their axes are reversed,
the voxel order as stored, the affine's orientation not applied) and TIFF stacks read with ``volume=True`` (a
(D, H, W) or (D, H, W, C) array; the validation pass reads a TIFF image as a volume when its mask is one).

Every failure is a ``DataError`` (a ``ValueError``) whose message starts with the file's path.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel
import numpy as np
import tifffile
from nibabel.filebasedimages import ImageFileError
from nibabel.openers import ImageOpener
from nibabel.spatialimages import HeaderDataError
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".nii", ".nii.gz")
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".nii", ".nii.gz")
TIFF_SUFFIXES = (".tif", ".tiff")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
NORMALIZE = ("auto", "range", "minmax", "zscore", "none")

# Pillow modes of one channel; every other mode is read as RGB (alpha dropped, palette and CMYK converted).
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_MASK_MODES = {"1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"}


# What a file can fail with while it is read; each becomes a DataError naming the file.
READ_ERRORS = (
    OSError, ValueError, EOFError, zlib.error, UnidentifiedImageError, tifffile.TiffFileError, ImageFileError,
    HeaderDataError,
)  # fmt: skip
# NIfTI spatial units (xyzt_units) in unetlab's names; "unknown" (code 0) is resolved per data set (files.py)
_NIFTI_UNITS = {"mm": "mm", "micron": "um", "meter": "m"}


class DataError(ValueError):
    """A problem with the data on disk; the message names the file (or folder, or config key) and the problem."""


def suffix_of(path: Path) -> str:
    """The file type, lower case: ``.nii.gz`` counts as one suffix, else the last one (``.png``)."""
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix.lower()


def stem_of(path: Path) -> str:
    """The name without ``suffix_of``: ``case_1.nii.gz`` -> ``case_1``."""
    return path.name[: len(path.name) - len(suffix_of(path))]


def is_tiff(path: Path) -> bool:
    return path.suffix.lower() in TIFF_SUFFIXES


def is_nifti(path: Path) -> bool:
    return suffix_of(path) in NIFTI_SUFFIXES


def _why(err: BaseException) -> str:
    """``Type: message`` on one line (some libraries' messages span lines)."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def _tiff_channel_axis(shape: tuple[int, ...], axes: str, path: Path) -> int | None:
    """Which axis of a TIFF series holds the channels: None for 2-D, else 0 or 2."""
    if len(shape) == 2:
        return None
    if len(shape) != 3:
        raise DataError(f"{path}: TIFF of shape {shape} (axes {axes}); expected (H, W), (H, W, C) or (C, H, W)")
    if "S" in axes:  # samples per pixel: tifffile knows where the channels are
        return axes.index("S")
    # A plain stack: channels are the shorter end axis ((H, W, C) arrays written without photometric info).
    return 0 if shape[0] <= shape[2] else 2


def _tiff_volume_channel_axis(shape: tuple[int, ...], axes: str, path: Path) -> int | None:
    """Which axis of a TIFF stack read as a volume holds the channels: None for (D, H, W); for 4-D the axis tifffile
    names samples (``S``) or channels (``C``, ImageJ hyperstacks), else the last ((D, H, W, C), as numpy saves it)."""
    if len(shape) == 3:
        return None
    if len(shape) != 4:
        raise DataError(f"{path}: TIFF of shape {shape} (axes {axes}); a volume is (D, H, W) or (D, H, W, C)")
    return next((axes.index(axis) for axis in "SC" if axis in axes), 3)


def _check_tiff_complete(tif: tifffile.TiffFile, path: Path) -> None:
    file_size = path.stat().st_size
    for page in tif.series[0].pages:
        ends = [offset + count for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True)]
        if ends and max(ends) > file_size:
            raise DataError(f"{path}: truncated TIFF (image data ends at byte {max(ends)}, the file has {file_size})")


def _check_complete(path: Path, image_format: str | None) -> None:
    """A complete PNG ends with its IEND chunk, a JPEG with its end-of-image marker (0xFFD9). Only a file
    without one is decoded in full, so a file with trailing bytes after the marker is not refused by mistake."""
    marker = {"PNG": b"IEND", "JPEG": b"\xff\xd9"}.get(image_format or "")
    if marker is None:
        return
    size = path.stat().st_size
    with open(path, "rb") as file:
        file.seek(max(0, size - 1024))
        if marker in file.read():
            return
    try:
        with Image.open(path) as image:
            image.load()
    except OSError as err:
        raise DataError(f"{path}: truncated {image_format} file ({err}; was it copied completely?)") from err


def _nifti_channels(shape: tuple[int, ...], path: Path) -> int:
    """Channels of a NIfTI image stored (x, y, z) (1) or (x, y, z, c) (c)."""
    if len(shape) not in (3, 4):
        raise DataError(f"{path}: NIfTI of shape {shape}; a volume is (x, y, z) or (x, y, z, c)")
    return 1 if len(shape) == 3 else int(shape[3])


def _check_nifti_complete(path: Path, image: nibabel.Nifti1Image) -> None:
    """All voxels are in the file: a ``.nii`` reaches the end of its voxel data; a ``.nii.gz`` whose gzip trailer
    (the uncompressed size, mod 2**32) says so is taken as complete, any other is decompressed in full to be sure."""
    proxy = image.dataobj
    needed = proxy.offset + int(np.prod(proxy.shape)) * proxy.dtype.itemsize
    size = path.stat().st_size
    if suffix_of(path) == ".nii":
        if size < needed:
            raise DataError(f"{path}: truncated NIfTI file (voxel data end at byte {needed}, the file has {size})")
        return
    with open(path, "rb") as file:
        file.seek(max(0, size - 4))
        if int.from_bytes(file.read(), "little") == needed % 2**32:
            return
    held = 0
    try:
        with gzip.open(path) as stream:
            while chunk := stream.read(1 << 22):
                held += len(chunk)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: truncated NIfTI file ({_why(err)}; was it copied completely?)") from err
    if held < needed:
        raise DataError(f"{path}: truncated NIfTI file (voxel data end at byte {needed}, it holds {held})")


def _as_written(zoom: np.floating) -> float:
    """A float32 header value as it was written: 0.8, not 0.800000011920929."""
    return float(str(zoom))


def _nifti_voxel(path: Path, image: nibabel.Nifti1Image) -> dict:
    """``{"spacing": [sz, sy, sx], "unit", "axes"}`` from the header: the zooms reversed to (z, y, x), the spatial unit
    (``mm``, ``um``, ``m`` or ``unknown``), and the world directions of the stored axes (``RAS``: x runs to the right,
    y anterior, z superior; empty when the header states no orientation). DataError for a zero or non-finite zoom or
    an affine that is not invertible."""
    with ImageOpener(path) as file:  # as written: nibabel's load turns a zero zoom into 1
        written = type(image.header).from_fileobj(file, check=False)
    zooms = tuple(abs(_as_written(zoom)) for zoom in written.get_zooms()[:3])  # a negative pixdim is read as positive
    if not all(np.isfinite(zoom) and zoom > 0 for zoom in zooms):
        raise DataError(
            f"{path}: the NIfTI header states no voxel size (zooms {zooms}, x y z); a volume needs three positive, "
            "finite zooms"
        )
    affine = image.affine
    if not np.isfinite(affine).all() or np.linalg.matrix_rank(affine[:3, :3]) < 3:
        rows = np.round(affine[:3, :3], 6).tolist()
        raise DataError(f"{path}: the NIfTI affine (voxel to world) is not invertible (rows {rows})")
    unit = _NIFTI_UNITS.get(image.header.get_xyzt_units()[0], "unknown")
    placed = int(image.header["sform_code"]) or int(image.header["qform_code"])  # 0 and 0: no orientation stated
    axes = "".join(nibabel.aff2axcodes(affine)) if placed else ""
    return {"spacing": list(reversed(zooms)), "unit": unit, "axes": axes}


def _load_nifti(path: Path) -> nibabel.Nifti1Image:
    """The image with its header read and its voxels not yet (a ``Nifti2Image`` is a ``Nifti1Image``)."""
    return nibabel.load(path, mmap=False)  # no memory map: nothing stays open


def nifti_voxel(path: Path) -> dict:
    """A NIfTI file's voxel size, unit and axes (``_nifti_voxel``), from its header only."""
    try:
        return _nifti_voxel(path, _load_nifti(path))
    except DataError:
        raise
    except READ_ERRORS as err:
        raise DataError(f"{path}: cannot read the NIfTI header ({_why(err)})") from err


def image_header(path: Path, volume: bool = False) -> dict:
    """``{"height", "width", "channels", "dtype"}`` from the file header, without decoding the pixels.

    Volumes add ``"depth"``: NIfTI files always (and ``"voxel"``, see ``nifti_voxel``), TIFF stacks of 3 or more
    dimensions when ``volume``."""
    try:
        if is_nifti(path):
            image = _load_nifti(path)
            channels = _nifti_channels(image.shape, path)
            _check_nifti_complete(path, image)
            width, height, depth = image.shape[:3]
            voxel = _nifti_voxel(path, image)
            dtype = str(image.get_data_dtype())
            return {"depth": int(depth), "height": int(height), "width": int(width), "channels": channels,
                    "dtype": dtype, "voxel": voxel}  # fmt: skip
        if is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape, axes, dtype = tuple(series.shape), series.axes, str(series.dtype)
                _check_tiff_complete(tif, path)
            if volume and len(shape) >= 3:
                channel_axis = _tiff_volume_channel_axis(shape, axes, path)
                depth, height, width = (n for axis, n in enumerate(shape) if axis != channel_axis)
                channels = 1 if channel_axis is None else shape[channel_axis]
                return {"depth": int(depth), "height": int(height), "width": int(width), "channels": int(channels),
                        "dtype": dtype}  # fmt: skip
            channel_axis = _tiff_channel_axis(shape, axes, path)
            if channel_axis is None:
                height, width, channels = *shape, 1
            else:
                channels = shape[channel_axis]
                height, width = (shape[1], shape[2]) if channel_axis == 0 else (shape[0], shape[1])
        else:
            with Image.open(path) as image:
                width, height = image.size
                mode, image_format = image.mode, image.format
            _check_complete(path, image_format)
            channels = 1 if mode in _GREY_MODES else 3
            dtype = mode
    except DataError:
        raise
    except READ_ERRORS as err:
        raise DataError(f"{path}: cannot read the image ({_why(err)})") from err
    return {"height": int(height), "width": int(width), "channels": int(channels), "dtype": dtype}


def _read_nifti(path: Path) -> np.ndarray:
    """The voxels as stored, axes reversed: (x, y, z) -> (z, y, x) = (D, H, W), (x, y, z, c) -> (C, D, H, W)."""
    image = _load_nifti(path)
    return np.ascontiguousarray(np.asanyarray(image.dataobj).T)  # dataobj applies the header's scaling


def _read_pixels(path: Path, volume: bool = False) -> np.ndarray:
    """The stored pixels as (C, H, W), or for volumes (C, D, H, W), dtype as stored (grey Pillow modes 1 channel,
    others RGB)."""
    if is_nifti(path):
        array = _read_nifti(path)
        return array[None] if _nifti_channels(array.shape[::-1], path) == 1 and array.ndim == 3 else array
    if is_tiff(path):
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            array, axes = series.asarray(), series.axes
        if volume and array.ndim >= 3:
            channel_axis = _tiff_volume_channel_axis(array.shape, axes, path)
            return array[None] if channel_axis is None else np.moveaxis(array, channel_axis, 0)
        channel_axis = _tiff_channel_axis(array.shape, axes, path)
        if channel_axis is None:
            return array[None]
        return array if channel_axis == 0 else np.moveaxis(array, 2, 0)
    with Image.open(path) as image:
        if image.mode not in _GREY_MODES:
            image = image.convert("RGB")
        elif image.mode in ("1", "LA"):
            image = image.convert("L")
        return np.array(image)[None] if image.mode != "RGB" else np.array(image).transpose(2, 0, 1)


def normalize_image(array: np.ndarray, normalize: str) -> np.ndarray:
    """float32 intensities from stored values (per image):

    - ``auto``: 8-bit / 255; anything else (16-bit, 32-bit, float) min-max to [0, 1];
    - ``range``: divided by the integer type's maximum (8-bit / 255, 16-bit / 65535); float as stored;
    - ``minmax``: min-max to [0, 1], every image; ``zscore``: zero mean, unit std, every image;
    - ``none``: the stored values as float32.
    """
    if normalize not in NORMALIZE:
        raise ValueError(f"data.normalize={normalize!r}; allowed: {' | '.join(NORMALIZE)}")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if normalize == "auto":
        normalize = "range" if array.dtype == np.uint8 else "minmax"
    values = array.astype(np.float32)
    if normalize == "range" and array.dtype.kind in "ui":
        values /= np.iinfo(array.dtype).max
    elif normalize == "minmax":
        low, high = float(values.min()), float(values.max())
        values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    elif normalize == "zscore":
        std = float(values.std())
        values = (values - float(values.mean())) / (std if std > 0 else 1.0)
    return values


def read_image(path: Path, channels: int, normalize: str = "auto", volume: bool = False) -> np.ndarray:
    """Image (channels, H, W) float32, or with ``volume`` (channels, D, H, W) (NIfTI files always); a one-channel
    image is repeated to ``channels``."""
    try:
        array = _read_pixels(path, volume)
    except DataError:
        raise
    except READ_ERRORS as err:
        raise DataError(f"{path}: cannot read the image ({_why(err)})") from err
    if array.shape[0] != channels:
        if array.shape[0] != 1:
            raise DataError(f"{path}: has {array.shape[0]} channels, the data set has {channels}")
        array = np.repeat(array, channels, axis=0)
    return normalize_image(array, normalize)


def read_mask(path: Path) -> np.ndarray:
    """Mask of integer labels as stored: (H, W) from a one-channel PNG (mode L, P, I;16, I, 1) or a 2-D TIFF, or a
    volume (D, H, W) from a 3-D TIFF or a NIfTI file ((x, y, z) reversed)."""
    try:
        if is_nifti(path):
            array = _read_nifti(path)
            if array.ndim == 4 and array.shape[0] == 1:  # (x, y, z, 1)
                array = array[0]
        elif is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                samples = series.shape[series.axes.index("S")] if "S" in series.axes else 1
                array = np.squeeze(series.asarray())
            if samples > 1:
                raise DataError(
                    f"{path}: mask has {samples} samples per pixel (RGB?); a mask holds one class index per pixel"
                )
        else:
            with Image.open(path) as image:
                if image.mode not in _MASK_MODES:
                    raise DataError(
                        f"{path}: mask has mode {image.mode}; a mask holds one class index per pixel "
                        "(a one-channel or palette PNG, or a 2-D TIFF)"
                    )
                array = np.array(image)
    except DataError:
        raise
    except READ_ERRORS as err:
        raise DataError(f"{path}: cannot read the mask ({_why(err)})") from err
    if array.ndim not in (2, 3) or (is_nifti(path) and array.ndim != 3):
        raise DataError(
            f"{path}: mask has shape {array.shape}; a mask is (H, W), or (D, H, W) for a volume: one class index "
            "per pixel"
        )
    if array.dtype.kind == "f":
        if not np.array_equal(array, np.round(array)):
            raise DataError(f"{path}: mask holds non-integer values; a mask holds class indices")
        array = array.astype(np.int64)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8)
    return array


def mask_labels(mask: np.ndarray) -> list[int]:
    """The distinct values of a mask, sorted."""
    if mask.dtype == np.uint8:
        return np.flatnonzero(np.bincount(mask.ravel(), minlength=256)).tolist()
    return np.unique(mask).astype(np.int64).tolist()


# TIFF ResolutionUnit: 2 = inch, 3 = centimetre (1 = none: ImageJ then says the unit in its metadata)
_TIFF_UNIT_MM = {2: 25.4, 3: 10.0}
_IMAGEJ_UNITS = {"micron": "um", "µm": "um", "um": "um", "\\u00B5m": "um", "nm": "nm", "mm": "mm", "cm": "cm"}


def tiff_spacing(path: Path) -> tuple[tuple[float, float], str] | None:
    """The pixel size ``((sy, sx), unit)`` that a TIFF's resolution tags state, or None (not a TIFF, no tags, or a
    unit it cannot name). ImageJ files: pixels per ``unit`` from its metadata (``micron`` -> ``um``); others: pixels
    per inch or centimetre, given in ``mm``. A resolution of exactly 1 pixel per unit without a unit is a default,
    not a measurement, and counts as none."""
    if not is_tiff(path):
        return None
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        if "XResolution" not in tags or "YResolution" not in tags:
            return None
        (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
        if not (xn and xd and yn and yd):
            return None
        per_x, per_y = xn / xd, yn / yd  # pixels per unit
        unit_tag = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
        imagej = tif.imagej_metadata or {}
    if imagej.get("unit") and unit_tag == 1:
        unit = _IMAGEJ_UNITS.get(str(imagej["unit"]))
        return ((1 / per_y, 1 / per_x), unit) if unit else None
    if unit_tag in _TIFF_UNIT_MM and not (per_x == per_y == 1):
        scale = _TIFF_UNIT_MM[unit_tag]
        return (scale / per_y, scale / per_x), "mm"
    return None
