"""The explorer page: one self-contained HTML file that shows why deep U-Net layers lose location.

``write_explorer(data, path)`` writes *data only* (one JSON blob in ``<script type="application/json"
id="explorer-data">``, images as base64 PNGs, label maps as base64 bytes) into the template ``explorer.html``,
with ``explorer.js`` (which draws every view from that blob) and ``explorer.css`` inlined: no server, no network.
The schema of ``data`` and what each view shows are in ``docs/explorer.md``. ``encode_labels`` and ``encode_png``
turn arrays into the strings the schema holds.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unetlab.atomic import replace_atomically
from unetlab.encode import as_numpy, encode_labels, encode_png  # noqa: F401  (encoders re-exported)

if TYPE_CHECKING:
    pass

TOP_LEVEL = {
    "title": str,
    "image_size": list,
    "classes": list,
    "images": list,
    "models": list,
    "key_levels": dict,
    "floors": dict,
    "fields": (dict, type(None)),
    "units": (dict, type(None)),
}
IMAGE_KEYS = ("index", "why", "png", "truth")
MODEL_KEYS = ("id", "label", "depth", "skips", "run", "predictions", "probe_keys", "probes")
PREDICTION_KEYS = ("labels", "hd95", "assd", "pred_boundary", "truth_boundary")


class ExplorerDataError(ValueError):
    """The data given to ``write_explorer`` does not follow the schema of docs/explorer.md."""


# ---- encoding helpers for the data producers ---------------------------------------------------------------


# ---- validation --------------------------------------------------------------------------------------------


def _need(mapping: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(mapping, dict):
        raise ExplorerDataError(f"{where} must be an object (dict), got {type(mapping).__name__}")
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise ExplorerDataError(f"{where} has no {', '.join(map(repr, missing))} (it needs {', '.join(keys)})")


def _map_bytes(b64: Any, size: int, where: str) -> None:
    try:
        length = len(base64.b64decode(b64, validate=True))
    except (TypeError, ValueError) as err:
        raise ExplorerDataError(f"{where} is not base64 text ({err})") from None
    if length != size:
        raise ExplorerDataError(f"{where} holds {length} bytes, but image_size needs H*W = {size}")


def _check_slices(images: list) -> None:
    """A volume's slices (images with ``slice``) are consecutive entries of one test ``index``: ``slice`` from
    ``slice_range[0]`` to ``slice_range[1]`` in order, within ``0 .. slices - 1``, the same ``slices``,
    ``worst_slice`` (in the range) and ``slice_range`` in each."""
    i = 0
    while i < len(images):
        if "slice" not in images[i]:
            i += 1
            continue
        head = images[i]
        depth, worst, shown = head.get("slices"), head.get("worst_slice"), head.get("slice_range")
        if not (
            isinstance(depth, int) and isinstance(worst, int) and isinstance(shown, list) and len(shown) == 2
            and all(isinstance(z, int) for z in shown) and 0 <= shown[0] <= worst <= shown[1] < depth
        ):  # fmt: skip
            raise ExplorerDataError(
                f"images[{i}] (a slice) needs ints slices, worst_slice and slice_range [first, last] with "
                f"0 <= first <= worst_slice <= last < slices, got {depth!r}, {worst!r}, {shown!r}"
            )
        for step, z in enumerate(range(shown[0], shown[1] + 1)):
            image = images[i + step] if i + step < len(images) else {}
            got = (image.get("index"), image.get("slice"), image.get("slices"), image.get("worst_slice"))
            if got != (head["index"], z, depth, worst) or image.get("slice_range") != shown:
                raise ExplorerDataError(
                    f"images[{i + step}] should be slice {z} (of {shown[0]}–{shown[1]}) of test volume {head['index']},"
                    " "
                    f"got (index, slice, slices, worst_slice) = {got}"
                )
        i += shown[1] - shown[0] + 1


def validate(data: dict) -> None:
    """Raise ``ExplorerDataError`` naming the first thing in ``data`` that the page could not draw."""
    if not isinstance(data, dict):
        raise ExplorerDataError(f"explorer data must be a dict, got {type(data).__name__}")
    missing = [key for key in TOP_LEVEL if key not in data]
    if missing:
        raise ExplorerDataError(
            f"explorer data has no {', '.join(map(repr, missing))} key; the top-level keys are {', '.join(TOP_LEVEL)}"
            " (fields and units may be null)"
        )
    for key, kind in TOP_LEVEL.items():
        if not isinstance(data[key], kind):
            raise ExplorerDataError(f"explorer data {key!r} has type {type(data[key]).__name__}, which is not allowed")
    size = data["image_size"]
    if len(size) != 2 or not all(isinstance(side, int) and side > 0 for side in size):
        raise ExplorerDataError(f"explorer data 'image_size' must be [H, W] with positive ints, got {size!r}")
    pixels = size[0] * size[1]
    images, models = data["images"], data["models"]
    if not images or not models:
        raise ExplorerDataError(
            f"explorer data has {len(images)} images and {len(models)} models; it needs one of each"
        )
    for i, image in enumerate(images):
        _need(image, IMAGE_KEYS, f"images[{i}]")
        _map_bytes(image["truth"], pixels, f"images[{i}].truth")
    _check_slices(images)
    for m, model in enumerate(models):
        where = f"models[{m}]"
        _need(model, MODEL_KEYS, where)
        where = f"models[{m}] ({model['id']!r})"
        if len(model["predictions"]) != len(images):
            raise ExplorerDataError(
                f"{where} has {len(model['predictions'])} predictions, one per image needs {len(images)}"
            )
        for i, prediction in enumerate(model["predictions"]):
            _need(prediction, PREDICTION_KEYS, f"{where}.predictions[{i}]")
            _map_bytes(prediction["labels"], pixels, f"{where}.predictions[{i}].labels")
        for key in model["probe_keys"]:
            if key not in data["key_levels"]:
                raise ExplorerDataError(f"{where} probe key {key!r} has no entry in key_levels")
            maps = model["probes"].get(key)
            if maps is None or len(maps) != len(images):
                count = "none" if maps is None else len(maps)
                raise ExplorerDataError(f"{where}.probes[{key!r}] has {count} maps, one per image needs {len(images)}")
            for i, b64 in enumerate(maps):
                _map_bytes(b64, pixels, f"{where}.probes[{key!r}][{i}]")
    for level, maps in data["floors"].items():
        for i, b64 in enumerate(maps):
            _map_bytes(b64, pixels, f"floors[{level!r}][{i}]")
    learner = data.get("learner")
    if learner is not None:
        _need(learner, ("heading", "title", "columns", "rows", "paragraphs"), "learner")
        for i, row in enumerate(learner["rows"]):
            if len(row) != len(learner["columns"]):
                raise ExplorerDataError(f"learner.rows[{i}] has {len(row)} cells for {len(learner['columns'])} columns")
    for name in ("fields", "units"):
        if data[name] is not None:
            _need(data[name], ("model", "keys"), name)
            if not isinstance(data[name]["keys"], dict):
                raise ExplorerDataError(f"{name}.keys must map feature keys to their data")


# ---- the page ----------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """Plain JSON types; numpy and torch values become lists and numbers, non-finite floats the strings JS reads."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "detach") or isinstance(value, (np.ndarray, np.generic)):
        return _jsonable(as_numpy(value).tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")  # JSON has no inf/nan
    return value


def script_json(data: dict) -> str:
    """JSON that is safe inside a <script> element: no '<', '>' or '&', so no text in it can close the script."""
    text = json.dumps(_jsonable(data), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def explorer_html(data: dict) -> str:
    """The whole page as a string: the template with the style, the data and the script inlined."""
    validate(data)
    parts = {"title": html.escape(data["title"]), "css": _asset("explorer.css"), "js": _asset("explorer.js")}
    if "</style" in parts["css"].lower() or "</script" in parts["js"].lower():
        raise RuntimeError("explorer.css or explorer.js contains a closing tag and cannot be inlined")
    parts["data"] = script_json(data)
    # one pass, so that text inside the data or the script is never taken for a placeholder
    return re.sub(r"\{\{(title|css|data|js)\}\}", lambda match: parts[match.group(1)], _asset("explorer.html"))


def write_explorer(data: dict, path: Path) -> Path:
    """Write the explorer page for ``data`` (schema: docs/explorer.md) to ``path`` atomically; returns ``path``."""
    page = explorer_html(data)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    return path
