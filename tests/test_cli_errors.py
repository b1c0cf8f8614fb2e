"""User mistakes in the CLIs end in one line ``unetlab-X: error: ...`` on stderr, exit status 1, no traceback.

Every command here fails before training, so none of them is slow; the run directory that unetlab-eval and
unetlab-viz read is written by hand (the composed config and an untrained network in a Lightning-style checkpoint).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import TINY, compose_train, run_cli
from unetlab.models.unet import UNet
from unetlab.runs.checkpoint import load_state_dict

OUTPUT_DIR_HINT = "set hydra.run.dir (hydra.sweep.dir with -m) to a writable directory"
CORRUPT = "is unreadable or corrupt (truncated, or not written by unetlab-train): "


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one line a failed command printed on stderr (after checking that it failed without a traceback)."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run dir as unetlab-train leaves it: ``.hydra/config.yaml`` and ``checkpoints/ok.ckpt`` (the layout of a
    Lightning checkpoint: the network's weights under ``state_dict`` with the prefix ``net.``), plus broken copies."""
    run = tmp_path_factory.mktemp("cli_errors") / "run"
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(compose_train(run), run / ".hydra" / "config.yaml")
    checkpoints = run / "checkpoints"
    checkpoints.mkdir()
    net = UNet(3, 2, depth=2, base_channels=4)
    torch.save(
        {"epoch": 0, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, checkpoints / "ok.ckpt"
    )
    data = (checkpoints / "ok.ckpt").read_bytes()
    (checkpoints / "half.ckpt").write_bytes(data[: len(data) // 2])
    (checkpoints / "quarter.ckpt").write_bytes(data[: len(data) // 4])
    (checkpoints / "garbage.ckpt").write_bytes(bytes(range(256)) * 8)
    return run


def test_truncated_and_garbage_checkpoints_are_named(run_dir):
    # torch.load raises a different exception type depending on where the file is cut or what it holds
    # (RuntimeError, OSError, EOFError, UnpicklingError, ...); each must come out as a ValueError naming the file.
    ok = run_dir / "checkpoints" / "ok.ckpt"
    assert {"encoder.0.layers.0.weight", "head.weight"} <= set(load_state_dict(ok))
    data = ok.read_bytes()
    cut = run_dir / "checkpoints" / "cut.ckpt"
    broken = [data[:size] for size in [0, 1, 3, 10, 100, *range(500, len(data), len(data) // 40)]]
    broken += [b"hello\n", bytes(range(256)) * 8, b"PK\x03\x04" + bytes(1000), b"\x80\x02K\x05."]  # ... a pickled 5
    for content in broken:
        cut.write_bytes(content)
        with pytest.raises(ValueError, match=re.escape(f"checkpoint {cut} ")):
            load_state_dict(cut)


@pytest.mark.parametrize("prog", ["unetlab-eval", "unetlab-viz"])
def test_missing_ckpt(tmp_path, prog):
    line = error_line(run_cli(prog, cwd=tmp_path, check=False))
    assert line == f"{prog}: error: ckpt is missing; use {prog} ckpt=<run_dir>/checkpoints/<name>.ckpt"


@pytest.mark.parametrize(
    ("prog", "name"),
    [("unetlab-eval", "garbage"), ("unetlab-viz", "garbage"), ("unetlab-eval", "half"), ("unetlab-viz", "quarter")],
)
def test_corrupt_checkpoint(tmp_path, run_dir, prog, name):
    ckpt = run_dir / "checkpoints" / f"{name}.ckpt"
    line = error_line(run_cli(prog, f"ckpt={ckpt}", cwd=tmp_path, check=False))
    assert line.startswith(f"{prog}: error: checkpoint {ckpt} {CORRUPT}")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["model.skips=[0,x]"],
            "model.skips=[0, 'x'] is not understood: levels must be integers 0..1; "
            "use 'all', 'none' or a list of levels like [0, 2]",
        ),
        (
            ["model.depth=4", "data.image_size=8"],
            "data.image_size=8 is smaller than 2**model.depth = 16 (model.depth=4): the deepest level would be under "
            "one pixel; use data.image_size=16 (or a multiple) or a lower model.depth",
        ),
        (["trainer.max_epochs=abc"], "trainer.max_epochs='abc' is not allowed; use an integer"),
        (
            ["model.nope=1"],
            "Could not override 'model.nope'; Key 'nope' is not in struct (key model.nope); "
            "To append to your config use +model.nope=1",
        ),
        (
            ["model.skips=[0"],
            "model.skips=[0: no viable alternative at input '[0'; "
            "See https://hydra.cc/docs/1.2/advanced/override_grammar/basic for details",
        ),
    ],
)
def test_bad_train_config(tmp_path, overrides, message):
    proc = run_cli("unetlab-train", *TINY, *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, check=False)
    assert error_line(proc) == f"unetlab-train: error: {message}"


def test_unknown_config_group_option(tmp_path):
    proc = run_cli("unetlab-train", *TINY, "data=nope", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, check=False)
    line = error_line(proc)
    assert line.startswith(
        "unetlab-train: error: In 'train': Could not find 'data/nope'; Available options in 'data': "
    )
    assert "shapes" in line


def test_missing_data_root(tmp_path):
    root = tmp_path / "nowhere"
    proc = run_cli(
        "unetlab-train", *TINY, "data=folder", f"data.root={root}", f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert error_line(proc).startswith(f"unetlab-train: error: data.root={root} does not exist")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "eval.ablate_modes=[blur]",
            "eval.ablate_modes: unknown skip ablation mode 'blur'; "
            "allowed: zero, mean, lowpass:k with an integer k >= 1",
        ),
        (
            "eval.probe_steps=abc",
            "Error merging override eval.probe_steps=abc; Value 'abc' of type 'str' could not be converted to Integer "
            "(key eval.probe_steps)",
        ),
        ("eval.device=gpu", "eval.device='gpu' is not a torch device; use cpu or cuda (cuda:N for GPU N)"),
    ],
)
def test_bad_eval_option(tmp_path, run_dir, option, message):
    proc = run_cli("unetlab-eval", f"ckpt={run_dir / 'checkpoints' / 'ok.ckpt'}", option, cwd=tmp_path, check=False)
    assert error_line(proc) == f"unetlab-eval: error: {message}"


def test_report_folder_that_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere"
    line = error_line(run_cli("unetlab-report", str(missing), cwd=tmp_path, check=False))
    assert line == (
        f"unetlab-report: error: report.dirs: {missing} does not exist (give folders that hold runs with results.csv)"
    )


@pytest.mark.parametrize(
    ("args", "where", "reason"),
    [
        (["unetlab-train", *TINY, "hydra.run.dir={taken}"], "{taken}", "File exists"),
        (["unetlab-train", *TINY, "hydra.run.dir={taken}/run"], "{taken}/run", "Not a directory"),
        (["unetlab-train", "-m", *TINY, "hydra.sweep.dir={taken}/sweep"], "{taken}/sweep", "Not a directory"),
        (["unetlab-eval", "ckpt={ckpt}", "hydra.run.dir={taken}/run"], "{taken}/run", "Not a directory"),
        (["unetlab-report", "{tmp}", "hydra.run.dir={taken}/run"], "{taken}/run", "Not a directory"),
    ],
)
def test_output_dir_that_cannot_be_created(tmp_path, run_dir, args, where, reason):
    taken = tmp_path / "taken"
    taken.write_text("a file where the output directory should go")
    paths = {"taken": taken, "tmp": tmp_path, "ckpt": run_dir / "checkpoints" / "ok.ckpt"}
    line = error_line(run_cli(*[a.format(**paths) for a in args], cwd=tmp_path, check=False))
    where = where.format(**paths)
    assert (
        line == f"{args[0]}: error: cannot create or write the output directory {where} ({reason}); {OUTPUT_DIR_HINT}"
    )


def test_ablate_output_dir_names_out_dir(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("")
    line = error_line(run_cli("unetlab-ablate", f"out_dir={taken}/x", cwd=tmp_path, check=False))
    assert line == (
        f"unetlab-ablate: error: cannot create or write the output directory {taken}/x (Not a directory); "
        "set out_dir to a writable directory"
    )


def test_hydra_full_error_does_not_matter(tmp_path):
    # run_cli sets HYDRA_FULL_ERROR=0; with 1, Hydra re-raises instead of printing, and the line must be the same.
    taken = tmp_path / "taken"
    taken.write_text("")
    script = Path(sys.executable).parent / "unetlab-train"
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [str(script), *TINY, f"hydra.run.dir={taken}/run"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert error_line(proc) == (
        f"unetlab-train: error: cannot create or write the output directory {taken}/run (Not a directory); "
        f"{OUTPUT_DIR_HINT}"
    )
