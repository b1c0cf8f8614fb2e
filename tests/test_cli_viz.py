"""``unetlab-viz`` end to end: a random-weight run dir in, PNGs out (and to wandb when the run used it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from unetlab.explain.viz import run_viz
from unetlab.models.unet import UNet


def make_run(run_dir: Path, *overrides: str) -> Path:
    """A run dir as ``unetlab-train`` leaves it (saved config + Lightning-style checkpoint), with random weights."""
    with initialize_config_dir(config_dir=str(files("unetlab.conf")), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=tiny", f"paths.output_dir={run_dir}", *overrides])
    (run_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    torch.manual_seed(0)
    net = UNet(1, 2, cfg.model.depth, cfg.model.base_channels, cfg.model.skips)
    (run_dir / "checkpoints").mkdir()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    return ckpt


def check_png(path: Path, min_side: int = 200) -> None:
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert min(pixels.shape) >= min_side, path
    assert pixels.std() > 10, f"{path} is (nearly) blank"


def test_cli_writes_pngs_into_the_run_dir(tmp_path):
    ckpt = make_run(tmp_path / "run", "logger=csv")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    script = Path(sys.executable).parent / "unetlab-viz"
    args = [f"ckpt={ckpt}", "viz.keys=[enc1,dec0]", "viz.channels=3", "viz.erf_images=4", "data.test_size=10"]
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run([str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out_dir = tmp_path / "run" / "viz"
    assert str(out_dir) in proc.stdout
    phases = [line for line in proc.stdout.splitlines() if line.startswith("[unetlab] run viz: ")]
    assert len(phases) == 5 and phases[0].startswith("[unetlab] run viz: effective receptive fields of 6 keys")
    for name in ("fields.png", "erf_maps.png", "top9_enc1.png", "top9_dec0.png"):
        check_png(out_dir / name)
    summary = json.loads((out_dir / "fields.json").read_text())
    assert set(summary["fields"]) == {"enc0", "enc1", "enc2", "dec1", "dec0", "logits"}  # written with sorted keys
    assert summary["fields"]["enc2"]["size"] == 32
    top = summary["top_units"]["enc1"]
    assert top["channels"] == [0, 1, 2] and len(top["values"][0]) == 9
    assert max(max(row) for row in top["image_index"]) < 10  # data.test_size=10 reached the run's config
    explore = json.loads((out_dir / "explore.json").read_text())  # the explorer's fields and units views
    assert set(explore["fields"]) == {"enc0", "enc1", "enc2", "dec1", "dec0"}
    dec0 = explore["fields"]["dec0"]
    assert {path["name"] for path in dec0["paths"]} == {"bottleneck", "skip 0", "skip 1"}
    assert all(len(path["rows"]) == 32 for path in dec0["paths"])  # every unit row of a 32x32 level-0 map
    assert len(dec0["erf"]["units"]) == len(dec0["erf"]["maps"]) == 36
    enc1 = explore["units"]["keys"]["enc1"]["channels"]
    assert [c["channel"] for c in enc1] == [0, 1, 2] and all(len(c["patches"]) == 9 for c in enc1)
    assert [p["activation"] for p in enc1[0]["patches"]] == pytest.approx(top["values"][0], abs=1e-3)
    assert list(cwd.iterdir()) == []  # nothing left in the working directory


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("viz") / "run", "logger=csv")


def test_errors_name_the_problem(tiny_ckpt, tmp_path):
    options = {"out_dir": str(tmp_path), "erf_images": 2, "progress": False}
    with pytest.raises(ValueError, match="has the feature keys enc0, enc1, enc2, dec1, dec0, logits"):
        run_viz(tiny_ckpt, {**options, "keys": ["enc1", "bottleneck"]})
    with pytest.raises(ValueError, match="viz.channels=8, but enc0 has only 4 channels"):
        run_viz(tiny_ckpt, {**options, "keys": ["enc0"], "channels": 8})
    with pytest.raises(ValueError, match="enc1 has channels 0..7"):
        run_viz(tiny_ckpt, {**options, "keys": ["enc1"], "channels": [1, 8]})
    with pytest.raises(ValueError, match="viz.split='dev'"):
        run_viz(tiny_ckpt, {**options, "split": "dev"})


def test_logs_images_to_wandb(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    ckpt = make_run(tmp_path / "run", "logger=wandb")
    paths = run_viz(ckpt, {"keys": ["enc2"], "channels": [0, 7], "erf_images": 2, "progress": False})
    check_png(paths["top9_enc2"], min_side=150)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    logged = sorted(p.name.split("_0_")[0] for p in runs[0].glob("files/media/images/viz/*.png"))
    assert logged == ["erf_maps", "fields", "top9_enc2"]
