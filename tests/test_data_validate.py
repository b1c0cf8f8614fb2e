import json
import os
import re

import numpy as np
import pytest
from PIL import Image

import unetlab.data.validate as validate
from tests.fixtures_data import write_folder, write_pets
from tests.helpers import run_cli
from unetlab.data.folder import FolderDataModule
from unetlab.data.io import DataError
from unetlab.data.pets import PetsDataModule


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "unetlab"


@pytest.fixture
def reads(monkeypatch) -> dict[str, int]:
    """Counts image header reads and mask scans done by the validation pass."""
    counts = {"images": 0, "masks": 0}

    def counting(function, key):
        def wrapper(*args, **kwargs):
            counts[key] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(validate, "image_header", counting(validate.image_header, "images"))
    monkeypatch.setattr(validate, "mask_labels", counting(validate.mask_labels, "masks"))
    return counts


def setup_folder(root) -> FolderDataModule:
    module = FolderDataModule(root=str(root), image_size=32, depth=2)
    module.setup("fit")
    return module


def test_second_run_reads_nothing_and_a_changed_file_is_read_again(tmp_path, cache_home, reads):
    root = write_folder(tmp_path / "data")  # 8 samples: 16 files
    first = setup_folder(root)
    assert reads == {"images": 8, "masks": 8}
    assert first.validation["read"] == 16 and first.validation["cached"] == 0
    cache_files = list(cache_home.glob("validate-folder-*.json"))
    assert len(cache_files) == 1 and json.loads(cache_files[0].read_text())["root"] == str(root.resolve())

    second = setup_folder(root)
    assert reads == {"images": 8, "masks": 8}  # nothing opened again
    assert second.validation["cached"] == 16 and second.validation["read"] == 0
    assert second.num_classes == first.num_classes == 3 and second.in_channels == 3

    # a mask edited after the first run is scanned again, and its new bad label is caught
    path = root / "val/masks/sample_1.png"
    mask = np.array(Image.open(path))
    mask[0, 0] = 9
    Image.fromarray(mask).save(path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    with pytest.raises(DataError, match=re.escape(f"{path}: mask holds label(s) 9 outside 0..2")):
        setup_folder(root)
    assert reads == {"images": 8, "masks": 9}


def test_errors_are_not_cached(tmp_path, cache_home):
    root = write_folder(tmp_path / "data")
    bad = root / "train/images/sample_0.png"
    bad.write_bytes(b"garbage")
    for _ in range(2):
        with pytest.raises(DataError, match=re.escape(f"{bad}: cannot read the image")):
            setup_folder(root)


def test_one_cache_file_per_root_and_kind(tmp_path, cache_home):
    setup_folder(write_folder(tmp_path / "a"))
    setup_folder(write_folder(tmp_path / "b"))
    PetsDataModule(root=str(write_pets(tmp_path / "pets")), image_size=32, depth=2).setup()
    names = sorted(path.name.split("-")[1] for path in cache_home.glob("validate-*.json"))
    assert names == ["folder", "folder", "pets"]


def test_cache_follows_xdg_cache_home_or_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert validate.cache_dir() == tmp_path / "xdg" / "unetlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert validate.cache_dir() == tmp_path / "home" / ".cache" / "unetlab"


def test_unwritable_cache_only_warns(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    module = setup_folder(write_folder(tmp_path / "data"))
    assert len(module.datasets["train"]) == 4
    assert "cannot write the data validation cache" in capsys.readouterr().err


def test_corrupt_cache_is_ignored(tmp_path, cache_home, reads):
    root = write_folder(tmp_path / "data")
    setup_folder(root)
    next(cache_home.glob("validate-folder-*.json")).write_text("{not json")
    assert setup_folder(root).validation["read"] == 16


@pytest.mark.slow
def test_cli_reports_bad_data_before_training(tmp_path):
    root = write_folder(tmp_path / "data")
    (root / "test/masks/sample_1.png").unlink()
    proc = run_cli(
        "unetlab-train", "data=folder", f"data.root={root}", "logger=none", f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"unetlab-train: error: {root / 'test/images/sample_1.png'}: missing mask" in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
