"""Checkpoints written atomically during training (``AtomicCheckpointIO``). A run is loaded back by
``unetlab.runs.checkpoint.load_run``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from unetlab.atomic import replace_atomically


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
