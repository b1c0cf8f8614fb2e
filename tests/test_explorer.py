"""The explorer page: write_explorer's checks and escaping, and the page itself driven in Debian's chromium.

The synthetic data (32x32, 3 images, 2 depth-2 models, fields with rows/cols computed here, 2 keys x 2 channels x 9
patches) has known numbers, so every assertion compares what the page shows with what the test stored. The browser
tests skip, saying why, when playwright is not installed or /usr/bin/chromium is missing (.ci/run installs it).
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from unetlab.report.explorer import ExplorerDataError, encode_labels, encode_png, write_explorer
from unetlab.report.explorer_data import add_image_indices

CHROMIUM = Path("/usr/bin/chromium")
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None
if sync_playwright is None:
    BROWSER_MISSING = "playwright is not installed (pip install playwright, or the test extra)"
elif not CHROMIUM.exists():
    BROWSER_MISSING = f"{CHROMIUM} is missing (apt-get install -y chromium; .ci/run does this as root)"
else:
    BROWSER_MISSING = None
needs_browser = pytest.mark.skipif(BROWSER_MISSING is not None, reason=f"browser tests: {BROWSER_MISSING}")

H = W = 32
KEYS = ["enc0", "enc1", "enc2", "dec1", "dec0"]
LEVELS = {"enc0": 0, "enc1": 1, "enc2": 2, "dec1": 1, "dec0": 0}
# (path name, size, jump, start) per key: square fields, unit u of a path centred on start + u * jump
PATHS = {
    "enc0": [("input", 5, 1, 0.0)],
    "enc1": [("input", 14, 2, 0.5)],
    "enc2": [("input", 32, 4, 1.5)],
    "dec1": [("skip 1", 14, 2, 0.5), ("bottleneck", 40, 2, 1.5)],
    "dec0": [("skip 0", 5, 1, 0.0), ("bottleneck", 48, 1, 0.5)],  # 48 px: larger than the 32 px image
}
UNIT_KEYS = ["enc1", "enc2"]
CHANNELS = [3, 7]


ERF_PER_SIDE = 4
NO_ERF = "enc2"
LEARNER = {
    "heading": "Why deep units see more and place worse",
    "title": "Field and grid of every feature key of the depth-2 all-skip model",
    "columns": ["key", "level", "layers", "jump (px)", "field (px)"],
    "rows": [
        [key, str(LEVELS[key]), f"layers of {key}", str(2 ** LEVELS[key]), str(max(p[1] for p in PATHS[key]))]
        for key in KEYS
    ],  # fmt: skip
    "paragraphs": [{"lead": f"Lead {i}.", "text": f"Paragraph {i} of the synthetic learner text."} for i in range(3)],
}


def erf_units(key: str) -> list[list[int]]:
    """The units of ``key`` with an ERF map: a 4 x 4 grid spread over the map, none for ``NO_ERF``."""
    side = H // 2 ** LEVELS[key]
    if key == NO_ERF:
        return []
    spread = sorted({int((i + 0.5) * side / ERF_PER_SIDE) for i in range(ERF_PER_SIDE)})
    return [[u, v] for u in spread for v in spread]


def shown_unit(key: str, y: int, x: int) -> tuple[int, int]:
    """The unit the fields view shows for a click on pixel (y, x): the clicked pixel's unit, or where the key has ERF
    maps the nearest unit with one (Euclidean, the first on ties)."""
    level = LEVELS[key]
    u, v = y // 2**level, x // 2**level
    units = erf_units(key)
    if not units:
        return u, v
    best = min(units, key=lambda unit: (unit[0] - u) ** 2 + (unit[1] - v) ** 2)
    return best[0], best[1]


def data_set_index(image: int) -> int:
    """The data-set index of source image ``image`` of the top-9 patches (not its position in units.images)."""
    return 100 + 13 * image


def hd95_of(model: int, image: int) -> float:
    return 1.111 + 7.3 * model + 2.07 * image


def assd_of(model: int, image: int) -> float:
    return 0.414 + 3.1 * model + 0.73 * image


def activation_of(key: int, channel: int, rank: int) -> float:
    return 9.004 - 0.61 * rank + 1.3 * channel + 0.17 * key


# ---- synthetic data ------------------------------------------------------------------------------------------


def shape_labels(image: int, shift: int = 0) -> np.ndarray:
    """Image 0: a circle; 1: a square; 2: both (class 1 circle, class 2 square), the last row ignored (255)."""
    yy, xx = np.mgrid[:H, :W]
    labels = np.zeros((H, W), np.uint8)
    if image in (0, 2):
        cy, cx, r = (16, 16, 9) if image == 0 else (10, 11, 6)
        labels[(yy - cy - shift) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    if image in (1, 2):
        y0, x0, side = (8, 6, 14) if image == 1 else (17, 17, 11)
        labels[y0 + shift : y0 + shift + side, x0 : x0 + side] = 2
    if image == 2:
        labels[-1] = 255
    return labels


def boundary(labels: np.ndarray) -> np.ndarray:
    fg = (labels != 0) & (labels != 255)
    return fg & ~ndimage.binary_erosion(fg, border_value=0)


def boundary_points(own: np.ndarray, other: np.ndarray) -> list[list[float]]:
    distance = ndimage.distance_transform_edt(~other)
    return [[int(y), int(x), round(float(distance[y, x]), 2)] for y, x in zip(*np.nonzero(own))]


def coarse(labels: np.ndarray, level: int) -> np.ndarray:
    """The level's floor: the label of each 2**level block's top-left pixel, repeated over the block."""
    step = 2**level
    return np.repeat(np.repeat(labels[::step, ::step], step, axis=0), step, axis=1)


def picture(labels: np.ndarray, image: int) -> np.ndarray:
    rng = np.random.default_rng(image)
    grey = np.where(labels == 1, 200, np.where(labels == 2, 120, 40)) + rng.integers(0, 30, labels.shape)
    return np.repeat(grey.clip(0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def field_rows(size: int, jump: int, start: float, level: int) -> list[list[int]]:
    rows = []
    for u in range(H // 2**level):
        lo = math.floor(start + u * jump - (size - 1) / 2)
        rows.append([lo, lo + size - 1])
    return rows


def unit_centre(u: int, level: int) -> float:
    """Pixel coordinate of the centre of unit ``u``'s cell at ``level`` (as ``erf.py`` centres a unit)."""
    return (u + 0.5) * 2**level - 0.5


def heat_map(cy: float, cx: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (255 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))).astype(np.uint8)


def make_data(fields: bool = True, units: bool = True, title: str = "Synthetic explorer") -> dict:
    truths = [shape_labels(i) for i in range(3)]
    pngs = [encode_png(picture(t, i)) for i, t in enumerate(truths)]
    data = {
        "title": title,
        "image_size": [H, W],
        "classes": ["background", "circle", "square"],
        "images": [
            {"index": 10 + 7 * i, "why": f"synthetic image {i}", "png": pngs[i], "truth": encode_labels(t)}
            for i, t in enumerate(truths)
        ],
        "models": [],
        "key_levels": LEVELS,
        "floors": {str(level): [encode_labels(coarse(t, level)) for t in truths] for level in (0, 1, 2)},
        "fields": None,
        "units": None,
    }
    for m, (skips, label) in enumerate([([0, 1], "depth 2, all skips"), ([], "depth 2, no skips")]):
        predictions = []
        for i, truth in enumerate(truths):
            pred = shape_labels(i, shift=4 * m)
            predictions.append(
                {
                    "labels": encode_labels(pred),
                    "hd95": hd95_of(m, i),
                    "assd": assd_of(m, i),
                    "pred_boundary": boundary_points(boundary(pred), boundary(truth)),
                    "truth_boundary": boundary_points(boundary(truth), boundary(pred)),
                }
            )
        probe_level = {k: (LEVELS[k] if skips or k.startswith("enc") else 2) for k in KEYS}
        data["models"].append(
            {
                "id": "d2-s" + (",".join(map(str, skips)) or "none"),
                "label": label,
                "depth": 2,
                "skips": skips,
                "run": f"run-{m}",
                "predictions": predictions,
                "probe_keys": list(KEYS),
                "probes": {k: [encode_labels(coarse(t, probe_level[k])) for t in truths] for k in KEYS},
            }
        )
    if fields:
        data["fields"] = {"model": "d2-s0,1", "keys": {}}
        for key, paths in PATHS.items():
            level = LEVELS[key]
            units_with_erf = erf_units(key)
            data["fields"]["keys"][key] = {
                "level": level,
                "size": max(size for _, size, _, _ in paths),
                "jump": 2**level,
                "paths": [
                    {
                        "name": name,
                        "rows": field_rows(size, jump, start, level),
                        "cols": field_rows(size, jump, start, level),
                    }
                    for name, size, jump, start in paths
                ],
                "erf": {
                    "units": units_with_erf,
                    "maps": [
                        encode_labels(heat_map(unit_centre(u, level), unit_centre(v, level), 2 + 2 * level))
                        for u, v in units_with_erf
                    ],
                },
            }
            if not units_with_erf:
                del data["fields"]["keys"][key]["erf"]  # a key without effective-field maps
    if fields:
        data["learner"] = LEARNER
    if units:
        data["units"] = {"model": "d2-s0,1", "images": pngs, "keys": {}}
        for k, key in enumerate(UNIT_KEYS):
            name, size, jump, start = PATHS[key][0]
            rows = field_rows(size, jump, start, LEVELS[key])
            channels = []
            for channel in CHANNELS:
                patches = []
                for rank in range(9):
                    image = (rank + channel) % 3
                    u, v = (rank * 3) % len(rows), (rank * 5 + channel) % len(rows)
                    box = [rows[u][0], rows[u][1] + 1, rows[v][0], rows[v][1] + 1]  # half-open, unclipped
                    padded = np.pad(
                        picture(truths[image], image), ((size, size), (size, size), (0, 0)), constant_values=90
                    )
                    crop = padded[box[0] + size : box[1] + size, box[2] + size : box[3] + size]
                    patches.append(
                        {
                            "image": image,
                            "index": data_set_index(image),
                            "box": box,
                            "unit": [u, v],
                            "activation": activation_of(k, channel, rank),
                            "crop": encode_png(crop),
                        }
                    )
                channels.append({"channel": channel, "patches": patches})
            data["units"]["keys"][key] = {"channels": channels}
    return data


# ---- write_explorer without a browser ------------------------------------------------------------------------


def embedded(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def test_encoders_round_trip():
    labels = np.arange(H * W, dtype=np.int64).reshape(H, W) % 7
    labels[0, 0] = 255
    raw = base64.b64decode(encode_labels(labels))
    assert np.array_equal(np.frombuffer(raw, np.uint8).reshape(H, W), labels)
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(encode_png(rgb)))).convert("RGB"))
    assert np.array_equal(back, rgb)
    with pytest.raises(ValueError, match="0..255"):
        encode_labels(np.full((2, 2), 256))
    with pytest.raises(ValueError, match="H x W x 3"):
        encode_png(np.zeros((4, 4, 2), np.uint8))


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda d: d.pop("models"), r"no 'models' key"),
        (lambda d: d.pop("fields"), r"no 'fields' key.*may be null"),
        (lambda d: d["models"][1]["predictions"].pop(), r"models\[1\] \('d2-snone'\) has 2 predictions.*needs 3"),
        (lambda d: d["images"][0].pop("truth"), r"images\[0\] has no 'truth'"),
        (
            lambda d: d["floors"]["1"].__setitem__(2, encode_labels(np.zeros((4, 4), np.uint8))),
            r"floors\['1'\]\[2\] holds 16 bytes, but image_size needs H\*W = 1024",
        ),
        (lambda d: d["models"][0]["probe_keys"].append("dec7"), r"probe key 'dec7' has no entry in key_levels"),
        (lambda d: as_volume(d)["images"][2].__setitem__("slice", 1), r"images\[2\] should be slice 7 \(of 5–7\)"),
        (lambda d: as_volume(d)["images"][0].__setitem__("worst_slice", 8), r"first <= worst_slice <= last < slices"),
    ],
)
def test_bad_data_is_refused_with_what_is_wrong(tmp_path, break_it, message):
    data = make_data(fields=False, units=False)
    break_it(data)
    with pytest.raises(ExplorerDataError, match=message):
        write_explorer(data, tmp_path / "explorer.html")
    assert not (tmp_path / "explorer.html").exists()


def test_script_closing_text_in_data_cannot_close_the_script(tmp_path):
    data = make_data(fields=False, units=False)
    data["models"][0]["label"] = "</script><script>window.pwned = 1</script> & <!--"
    path = write_explorer(data, tmp_path / "out" / "explorer.html")
    page = path.read_text(encoding="utf-8")
    assert page.lower().count("</script") == 2  # the data's and the page script's own
    assert embedded(page)["models"][0]["label"] == data["models"][0]["label"]
    assert not list(path.parent.glob(".*.tmp"))  # written through a temp file and a rename


def test_patches_of_an_older_explore_json_get_their_indices_from_fields_json(tmp_path):
    explore = {"units": {"keys": {"enc1": {"channels": [{"patches": [{"image": 0}, {"image": 1}]}]}}}}
    (tmp_path / "fields.json").write_text(json.dumps({"top_units": {"enc1": {"image_index": [[89, 71]]}}}))
    add_image_indices(explore, tmp_path / "fields.json")
    assert [patch["index"] for patch in explore["units"]["keys"]["enc1"]["channels"][0]["patches"]] == [89, 71]


def test_a_learner_row_must_fit_the_columns(tmp_path):
    data = make_data(units=False)
    data["learner"] = {**LEARNER, "rows": [["enc0", "0"]]}
    with pytest.raises(ExplorerDataError, match=r"learner.rows\[0\] has 2 cells for 5 columns"):
        write_explorer(data, tmp_path / "explorer.html")


def test_non_finite_numbers_and_numpy_values_are_written(tmp_path):
    data = make_data(fields=False, units=False)
    data["models"][0]["predictions"][0]["hd95"] = float("inf")
    data["models"][0]["predictions"][0]["assd"] = np.float32(0.5)
    stored = embedded(write_explorer(data, tmp_path / "explorer.html").read_text(encoding="utf-8"))
    assert stored["models"][0]["predictions"][0]["hd95"] == "Infinity"
    assert stored["models"][0]["predictions"][0]["assd"] == 0.5


# ---- the page in a browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if BROWSER_MISSING:
        pytest.skip(f"browser tests: {BROWSER_MISSING}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    return write_explorer(make_data(), tmp_path_factory.mktemp("explorer") / "explorer.html")


class Opened:
    """A page opened from file:// that records every non-file request and every console or page error."""

    def __init__(self, browser, path: Path):
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.route("**/*", self._route)
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        self.page.on("pageerror", lambda err: self.errors.append(str(err)))
        self.page.goto(path.as_uri())
        self.page.wait_for_function("window.explorer && window.explorer.ready", timeout=5000)

    def _route(self, route):
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            self.requests.append(url)
            route.abort()

    def text(self, view: str, field: str) -> str:
        return self.page.locator(f'[data-view="{view}"] [data-field="{field}"]').first.inner_text()

    def select(self, view: str, control: str, value: str) -> None:
        self.page.select_option(f'[data-view="{view}"] select[data-control="{control}"]', value)

    def click_pixel(self, y: int, x: int) -> None:
        canvas = self.page.locator('[data-view="fields"] canvas.main')
        box = canvas.bounding_box()
        canvas.click(position={"x": (x + 0.5) * box["width"] / W, "y": (y + 0.5) * box["height"] / H})

    def close(self) -> None:
        self.page.close()
        assert self.requests == [], f"the page asked the network for {self.requests}"
        assert self.errors == [], f"console errors: {self.errors}"


@pytest.fixture(scope="module")
def shared_page(browser, page_file):
    page = Opened(browser, page_file)
    yield page
    page.close()


@pytest.fixture
def opened(shared_page):
    """The module's one page (opening a page costs ~0.3 s); each test sets the controls it reads."""
    yield shared_page
    assert shared_page.requests == [], f"the page asked the network for {shared_page.requests}"
    assert shared_page.errors == [], f"console errors: {shared_page.errors}"


@needs_browser
def test_image_and_model_choices_show_the_stored_numbers_in_every_view(opened):
    data = make_data(fields=False, units=False)
    assert opened.text("predictions", "hd95") == f"{hd95_of(0, 0):.2f} px"
    for view, image, model in [("predictions", 2, 0), ("layers", 1, 1), ("predictions", 0, 1), ("layers", 2, 0)]:
        opened.select(view, "image", str(image))
        opened.select(view, "model", str(model))
        assert opened.text("predictions", "hd95") == f"{hd95_of(model, image):.2f} px"
        assert opened.text("predictions", "assd") == f"{assd_of(model, image):.2f} px"
        assert opened.text("predictions", "why") == data["images"][image]["why"]
        assert opened.text("predictions", "model-label") == data["models"][model]["label"]
        for other in ("predictions", "layers", "fields"):  # one shared state
            control = opened.page.locator(f'[data-view="{other}"] select[data-control="image"]')
            assert control.input_value() == str(image)
        assert opened.page.locator('[data-view="layers"] .layer').count() == len(KEYS)
    opened.page.click('[data-view="predictions"] button[data-control="model"][data-value="0"]')
    assert opened.text("predictions", "hd95") == f"{hd95_of(0, 2):.2f} px"


def expected_box(key: str, u: int, v: int) -> tuple[str, str]:
    level = LEVELS[key]
    rows = [field_rows(size, jump, start, level)[u] for _, size, jump, start in PATHS[key]]
    cols = [field_rows(size, jump, start, level)[v] for _, size, jump, start in PATHS[key]]
    y0, y1 = max(0, min(r[0] for r in rows)), min(H - 1, max(r[1] for r in rows))
    x0, x1 = max(0, min(c[0] for c in cols)), min(W - 1, max(c[1] for c in cols))
    return f"{y0}–{y1}, {x0}–{x1}", f"{y1 - y0 + 1} x {x1 - x0 + 1} px"


@needs_browser
@pytest.mark.parametrize(
    ("key", "y", "x"), [("enc1", 10, 3), ("enc0", 20, 30), ("dec1", 31, 0), ("dec0", 5, 20), ("enc2", 13, 27)]
)
def test_clicking_a_pixel_shows_the_units_field(opened, key, y, x):
    opened.select("fields", "key", key)
    opened.click_pixel(y, x)
    u, v = shown_unit(key, y, x)
    assert opened.text("fields", "pixel") == f"({y}, {x})"
    assert opened.text("fields", "unit") == f"({u}, {v})"
    box, size = expected_box(key, u, v)
    assert (opened.text("fields", "box"), opened.text("fields", "box-size")) == (box, size)
    legend = opened.page.locator('[data-view="fields"] .legend').inner_text()
    assert all(name in legend for name, *_ in PATHS[key])
    if key == NO_ERF:  # no heat map: the clicked pixel's own unit
        assert (u, v) == (y // 2 ** LEVELS[key], x // 2 ** LEVELS[key])
        assert opened.page.locator('[data-view="fields"] [data-field="erf-unit"]').count() == 0


@needs_browser
def test_the_heat_map_belongs_to_the_boxed_unit(browser, page_file):
    """On opening (pixel (16, 16), whose enc0 unit has no map) and after clicks, the heat map drawn is that of the unit
    whose boxes and numbers are shown, and the unit is the one nearest the clicked pixel."""
    page = Opened(browser, page_file)
    assert page.text("fields", "pixel") == f"({H // 2}, {W // 2})"
    assert (H // 2, W // 2) not in [tuple(unit) for unit in erf_units("enc0")]
    for key, y, x in [("enc0", H // 2, W // 2), ("enc0", 3, 29), ("enc1", 17, 6), ("dec1", 30, 30), ("dec0", 0, 31)]:
        if (key, y, x) != ("enc0", H // 2, W // 2):
            page.select("fields", "key", key)
            page.click_pixel(y, x)
        u, v = shown_unit(key, y, x)
        assert page.text("fields", "erf-unit") == page.text("fields", "unit") == f"({u}, {v})", (key, y, x)
        assert page.text("fields", "box") == expected_box(key, u, v)[0]
        drawn = page.page.evaluate(HEAT_PEAK, W)  # the brightest heat-map pixel on the main canvas, in image pixels
        level = LEVELS[key]
        assert (u * 2**level <= drawn[0] < (u + 1) * 2**level) and (v * 2**level <= drawn[1] < (v + 1) * 2**level)
    page.close()


# The heat maps are Gaussians peaking at their unit's centre over a grey image: the most yellow pixel of the main
# canvas (red and green high, blue low; the boxes are blue, green, red, black or white) is the peak of the drawn map.
HEAT_PEAK = """(width) => {
    const canvas = document.querySelector('[data-view="fields"] canvas.main');
    const scale = canvas.width / width;
    const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let best = -1, at = [0, 0];
    for (let y = 0; y < canvas.height; y++) {
        for (let x = 0; x < canvas.width; x++) {
            const i = 4 * (y * canvas.width + x);
            const score = px[i] + px[i + 1] - 2 * px[i + 2];
            if (score > best) { best = score; at = [Math.floor(y / scale), Math.floor(x / scale)]; }
        }
    }
    return at;
}"""


@needs_browser
def test_dec0_field_is_larger_than_the_image_and_clipped(opened):
    opened.select("fields", "key", "dec0")
    opened.click_pixel(16, 16)
    assert opened.text("fields", "box-size") == f"{H} x {W} px"
    assert opened.text("fields", "box-unclipped").endswith("(48 x 48 px)")


@needs_browser
def test_a_channel_shows_its_nine_patches_with_their_activations(opened):
    for k, key in enumerate(UNIT_KEYS):
        opened.select("units", "key", key)
        for channel in CHANNELS:
            opened.select("units", "channel", str(channel))
            shown = opened.page.locator('[data-view="units"] [data-field="activation"]').all_inner_texts()
            assert shown == [f"{activation_of(k, channel, rank):.2f}" for rank in range(9)]
    assert opened.page.locator('[data-view="units"] canvas').count() == 18  # each patch and where it lies


@needs_browser
def test_top9_patches_are_labelled_with_their_test_image_indices(opened):
    data = make_data()
    for key in UNIT_KEYS:
        opened.select("units", "key", key)
        for channel in CHANNELS:
            opened.select("units", "channel", str(channel))
            shown = opened.page.locator('[data-view="units"] [data-field="patch-image"]').all_inner_texts()
            patches = data["units"]["keys"][key]["channels"][CHANNELS.index(channel)]["patches"]
            assert shown == [f"test image {data_set_index(patch['image'])}" for patch in patches]
            text = opened.text("units", "top9-text")
            side = max(patch["box"][1] - patch["box"][0] for patch in patches)
            assert "nine test images where channel" in text and "Zeiler and Fergus 2014" in text
            assert f"field ({side} px at {key})" in text


@needs_browser
def test_the_field_table_and_paragraphs_sit_beside_the_fields_view(opened):
    opened.select("fields", "key", "dec1")
    table = opened.page.locator('[data-view="fields"] [data-field="learner-table"]')
    assert table.locator("tbody tr").count() == len(LEARNER["rows"])
    assert table.locator("tr.chosen td").all_inner_texts() == LEARNER["rows"][KEYS.index("dec1")]
    text = opened.text("fields", "learner-text")
    assert all(f"{p['lead']} {p['text']}" in text for p in LEARNER["paragraphs"])
    table.locator('tr[data-key="enc1"]').click()  # a row chooses its key
    assert opened.page.locator('[data-view="fields"] select[data-control="key"]').input_value() == "enc1"
    assert table.locator("tr.chosen td").first.inner_text() == "enc1"

    measure = """([selector, value]) => {
        const control = document.querySelector(selector);
        const start = performance.now();
        if (control.tagName === "SELECT") {
            control.value = value;
            control.dispatchEvent(new Event("change", {bubbles: true}));
        } else {
            const r = control.getBoundingClientRect();
            control.dispatchEvent(new MouseEvent("click", {bubbles: true, clientX: r.left + r.width * value,
                                                          clientY: r.top + r.height * value}));
        }
        return [performance.now() - start, window.explorer.lastRenderMs, window.explorer.renders];
    }"""
    cases = [
        ('[data-view="predictions"] select[data-control="image"]', "1"),
        ('[data-view="predictions"] select[data-control="model"]', "1"),
        ('[data-view="layers"] select[data-control="image"]', "2"),
        ('[data-view="layers"] select[data-control="model"]', "0"),
        ('[data-view="predictions"] button[data-control="model"][data-value="1"]', 0.5),
        ('[data-view="layers"] .layer[data-key="enc2"]', 0.5),
        ('[data-view="fields"] select[data-control="image"]', "0"),
        ('[data-view="fields"] select[data-control="key"]', "dec0"),
        ('[data-view="fields"] canvas.main', 0.3),
        ('[data-view="units"] select[data-control="key"]', "enc2"),
        ('[data-view="units"] select[data-control="channel"]', "7"),
    ]
    renders = opened.page.evaluate("window.explorer.renders")
    times = {}
    for selector, value in cases:
        measured, reported, count = opened.page.evaluate(measure, [selector, value])
        assert count == renders + 1, f"{selector} did not redraw the page"
        renders = count
        times[selector] = measured
        assert measured < 100 and reported < 100, f"{selector}: {measured:.1f} ms (page says {reported:.1f} ms)"
    print("render ms:", {k: round(v, 2) for k, v in times.items()})


@needs_browser
def test_screenshots_of_every_view(opened, tmp_path_factory):
    out = tmp_path_factory.mktemp("explorer-screens")
    opened.select("fields", "key", "dec1")
    opened.click_pixel(12, 20)
    for view in ("predictions", "layers", "fields", "units"):
        path = out / f"{view}.png"
        opened.page.locator(f'[data-view="{view}"]').screenshot(path=str(path))
        assert Image.open(path).size[0] > 300
    opened.page.screenshot(path=str(out / "page.png"), full_page=True)
    print(f"screenshots in {out}")


def as_volume(data: dict, worst: int = 1) -> dict:
    """``data`` with its images made slices 5, 6, 7 (of 0-8) of one test volume (index 42), the worst 5 + worst."""
    for z, image in enumerate(data["images"]):
        image.update({"index": 42, "slice": 5 + z, "slices": 9, "worst_slice": 5 + worst, "slice_range": [5, 7]})
    return data


@needs_browser
def test_a_volume_opens_at_its_worst_slice_and_the_slider_moves_through_z(browser, tmp_path):
    data = as_volume(make_data(fields=False, units=False))
    opened = Opened(browser, write_explorer(data, tmp_path / "explorer.html"))
    slider = opened.page.locator('[data-view="predictions"] input[data-control="slice"]')
    assert slider.is_visible() and slider.input_value() == "6"
    assert (slider.get_attribute("min"), slider.get_attribute("max")) == ("5", "7")
    assert opened.text("predictions", "why") == data["images"][1]["why"]
    assert opened.text("predictions", "hd95") == f"{hd95_of(0, 1):.2f} px"
    assert opened.text("predictions", "slice") == "6 of 0–8 (errs most)"
    options = opened.page.locator('[data-view="predictions"] select[data-control="image"] option')
    assert options.all_inner_texts() == ["1 of 1: test volume 42"]
    assert (
        opened.page.locator('[data-view="predictions"] label:has(select[data-control="image"])')
        .inner_text()
        .startswith("test volume")
    )
    assert "1 test volume, 3 of 9 slices each" in opened.page.inner_text("#status")
    agreements = opened.page.locator('[data-view="layers"] [data-field="probe-right"]')
    before = agreements.all_inner_texts()
    opened.page.locator('[data-view="layers"] input[data-control="slice"]').fill("7")  # sliders share the state
    assert slider.input_value() == "7" and opened.text("predictions", "slice") == "7 of 0–8"
    assert opened.text("predictions", "why") == data["images"][2]["why"]
    assert opened.text("predictions", "hd95") == f"{hd95_of(0, 2):.2f} px"
    assert agreements.all_inner_texts() != before  # the probe maps of slice 2, not slice 1
    opened.select("predictions", "image", "1")  # choosing the volume again opens its worst slice
    assert slider.input_value() == "6"
    opened.close()
    flat = Opened(browser, write_explorer(make_data(fields=False, units=False), tmp_path / "images.html"))
    assert not flat.page.locator('[data-view="predictions"] input[data-control="slice"]').is_visible()
    flat.close()


@needs_browser
def test_missing_viz_data_and_odd_text_are_shown_plainly(browser, tmp_path):
    data = make_data(fields=False, units=False, title="<b>title</b> & </script>")
    data["models"][0]["label"] = "</script><script>window.pwned = 1</script>"
    data["models"][0]["predictions"][0]["hd95"] = float("inf")
    opened = Opened(browser, write_explorer(data, tmp_path / "explorer.html"))
    for view in ("fields", "units"):
        message = opened.page.locator(f'[data-view="{view}"] [data-field="empty"]')
        assert message.is_visible() and "no viz data for this grid" in message.inner_text().lower()
    assert opened.text("predictions", "model-label") == data["models"][0]["label"]
    assert opened.text("predictions", "hd95") == "∞ px"
    assert opened.page.inner_text("h1") == data["title"]
    assert opened.page.evaluate("window.pwned") is None
    opened.close()
