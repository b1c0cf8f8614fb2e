"""Reading images and masks from disk: Pillow for PNG/JPEG, tifffile for TIFF. Nothing is held open.

Two kinds of access:
- headers (``image_header``): size and channel count without decoding the pixels, plus a cheap completeness
  check (a PNG must end with its IEND chunk, a JPEG with its end-of-image marker, TIFF strips must lie inside
  the file), for the validation pass;
- full reads (``read_image``, ``read_mask``) for training and for the mask scan.

Every failure is a ``DataError`` (a ``ValueError``) whose message starts with the file's path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
MASK_SUFFIXES = (".png", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")
NORMALIZE = ("auto", "range", "minmax", "zscore", "none")

# Pillow modes of one channel; every other mode is read as RGB (alpha dropped, palette and CMYK converted).
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_MASK_MODES = {"1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"}


class DataError(ValueError):
    """A problem with the data on disk; the message names the file (or folder, or config key) and the problem."""


def is_tiff(path: Path) -> bool:
    return path.suffix.lower() in TIFF_SUFFIXES


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


def image_header(path: Path) -> dict:
    """``{"height", "width", "channels", "dtype"}`` from the file header, without decoding the pixels."""
    try:
        if is_tiff(path):
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape, axes, dtype = tuple(series.shape), series.axes, str(series.dtype)
                _check_tiff_complete(tif, path)
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
    except (OSError, ValueError, UnidentifiedImageError, tifffile.TiffFileError) as err:
        raise DataError(f"{path}: cannot read the image ({type(err).__name__}: {err})") from err
    return {"height": int(height), "width": int(width), "channels": int(channels), "dtype": dtype}


def _read_pixels(path: Path) -> np.ndarray:
    """The stored pixels as (C, H, W), dtype as stored (grey Pillow modes 1 channel, others RGB)."""
    if is_tiff(path):
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            array, axes = series.asarray(), series.axes
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


def read_image(path: Path, channels: int, normalize: str = "auto") -> np.ndarray:
    """Image (channels, H, W) float32; a one-channel image is repeated to ``channels``."""
    try:
        array = _read_pixels(path)
    except DataError:
        raise
    except (OSError, ValueError, UnidentifiedImageError, tifffile.TiffFileError) as err:
        raise DataError(f"{path}: cannot read the image ({type(err).__name__}: {err})") from err
    if array.shape[0] != channels:
        if array.shape[0] != 1:
            raise DataError(f"{path}: has {array.shape[0]} channels, the data set has {channels}")
        array = np.repeat(array, channels, axis=0)
    return normalize_image(array, normalize)


def read_mask(path: Path) -> np.ndarray:
    """Mask (H, W) of integer labels as stored: a one-channel PNG (mode L, P, I;16, I, 1) or a 2-D TIFF."""
    try:
        if is_tiff(path):
            array = np.squeeze(tifffile.imread(path))
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
    except (OSError, ValueError, UnidentifiedImageError, tifffile.TiffFileError) as err:
        raise DataError(f"{path}: cannot read the mask ({type(err).__name__}: {err})") from err
    if array.ndim != 2:
        raise DataError(f"{path}: mask has shape {array.shape}; a mask is 2-D (H, W), one class index per pixel")
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
