"""Atomic file writes: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def replace_atomically(path: Path, write) -> None:
    """Call ``write(tmp)`` on a temp file beside ``path``, flush it to disk, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` via a temp file and a rename."""
    replace_atomically(Path(path), lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True)))


def write_npz(path: Path, arrays: dict) -> None:
    """``np.savez_compressed`` of ``arrays`` to ``path`` via a temp file and a rename."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)

    replace_atomically(Path(path), write)
