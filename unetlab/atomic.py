"""Atomic file writes: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO


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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but through a temp file in the same folder and a rename.

    Lightning's own writer renames from the system temp folder, which is a copy (not atomic) when that folder is
    on another file system: a run killed while ``last.ckpt`` is being rewritten would leave half a checkpoint.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_atomically(path, lambda tmp: torch.save(checkpoint, tmp))
