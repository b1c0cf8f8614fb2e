"""Shared test helpers: compose the train config, run a CLI in a subprocess."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONFIG_DIR = str(files("unetlab.conf"))
TINY = ["experiment=tiny", "logger=csv", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"]


def compose_train(run_dir: Path, *overrides: str) -> DictConfig:
    """The train config as the CLI would build it, with the tiny experiment and the run dir set."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[*TINY, f"paths.output_dir={run_dir}", *overrides])


def run_cli(*args: str, cwd: Path, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """Run a unetlab console script (``unetlab-train ...``) from ``cwd``; output is captured."""
    script = Path(sys.executable).parent / args[0]
    env = {**os.environ, "WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run([str(script), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


BLOCK, HEADER = 32768, 7  # the .wandb file: LevelDB log blocks, each record behind a 7-byte header


def wandb_records(path: Path) -> Iterator:
    """The protobuf records (``wandb_internal_pb2.Record``) of an offline run's ``run-*.wandb`` file, as far as it is
    written."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    position, pieces = HEADER, []  # the file's own header takes the place of the first record header
    while position + HEADER <= len(data):
        left = BLOCK - position % BLOCK
        _, length, kind = struct.unpack("<IHB", data[position : position + HEADER]) if left >= HEADER else (0, 0, 0)
        if kind == 0:  # block padding
            position += left
            continue
        pieces.append(data[position + HEADER : position + HEADER + length])
        position += HEADER + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(pieces))
            pieces = []
            yield record


def finished_records(path: Path, timeout: float = 30) -> list:
    """All records of the run, once its last one (``exit``) is on disk: ``wandb.finish()`` returns before wandb's
    service has written the file (read at once, it may hold 7 bytes, or its first 32 KiB block)."""
    from google.protobuf.message import DecodeError

    deadline = time.monotonic() + timeout
    while True:
        try:
            records = list(wandb_records(path))
        except DecodeError:  # a record cut where the file ends
            records = []
        if any(record.WhichOneof("record_type") == "exit" for record in records):
            return records
        assert time.monotonic() < deadline, f"{path} holds no exit record after {timeout} s"
        time.sleep(0.05)
