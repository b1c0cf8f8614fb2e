"""The names of results.csv's sources (unetlab/sources.py): built and parsed in one place, and only there."""

import ast
import re
from pathlib import Path

from unetlab import sources

PACKAGE = Path(sources.__file__).parent
PREFIX = re.compile(r"^(probe|floor|ablate|shapley|shift|susceptibility|erf|erf_init)/")


def test_names_round_trip():
    assert sources.probe("enc1") == "probe/enc1" and sources.probe_key("probe/enc1") == "enc1"
    assert sources.floor(2) == "floor/2" and sources.floor_level("floor/2") == 2
    assert sources.floor_level("floor/2/objects/4-8") is None and sources.probe_key("model") is None
    assert sources.ablation("mean", (2, 0)) == "ablate/mean/0,2" and sources.ablation("lowpass:2", ()) == (
        "ablate/lowpass:2/none"
    )
    assert sources.ablation("mean", (0, 2)).startswith(sources.ablation_prefix("mean"))
    assert sources.shapley("lowpass:1", 0) == "shapley/lowpass:1/0"
    assert sources.mode_of("shapley/lowpass:1/0") == "lowpass:1" == sources.mode_of("ablate/lowpass:1/0,1")
    assert sources.shift("noise:0.1") == "shift/noise:0.1" and sources.shift_of("shift/noise:0.1") == "noise:0.1"
    assert sources.susceptibility("blur:1", "enc0") == "susceptibility/blur:1/enc0"
    assert sources.erf("enc2") == "erf/enc2" and sources.erf("enc2", trained=False) == "erf_init/enc2"
    for base in (sources.MODEL, "floor/3", "probe/dec0"):
        name = sources.objects(base, "4-8")
        assert sources.is_objects(name) and sources.objects_of(name) == (base, "4-8")
        assert sources.kind(name) == "objects" and sources.in_per_image(name)  # their per-image sums
    assert sources.objects(sources.MODEL, sources.ALL_SIZES) == "objects/all"
    assert [sources.kind(s) for s in ("model", "probe/enc0", "shapley/mean/1", "erf_init/enc1")] == [
        "model", "probe", "shapley", "erf_init"
    ]  # fmt: skip
    assert sources.in_per_image("probe/enc0") and not sources.in_per_image("susceptibility/blur:1/enc0")


def test_no_other_module_writes_a_source_name():
    """No string literal (or f-string part) outside unetlab/sources.py starts like a source name: every module builds
    them with sources.* (docstrings aside)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "sources.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
        }  # fmt: skip
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if PREFIX.match(node.value):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value!r}")
    assert not found, found
