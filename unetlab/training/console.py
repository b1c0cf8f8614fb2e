"""What a run prints: nothing the user cannot act on, and only its own lines when it shares the console.

Dropped always: Lightning's advertisement for its cloud logger, the FutureWarning that torch 2.13 raises inside
Lightning's own pytree helper (neither says anything about the run), and Lightning's hint to prepend ``srun`` wherever
SLURM is installed (a run on a login node or a workstation is not meant for SLURM; inside a job unetlab reads SLURM's
environment itself, ``unetlab.runs.slurm``). Runs without a progress bar (``unetlab-ablate``'s
side-by-side jobs, cluster logs) also drop Lightning's INFO lines (devices, checkpoint restores): what remains is a
line per epoch (``EpochSummary``), warnings, errors.
"""

from __future__ import annotations

import logging
import warnings

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")


class _DropTip(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def quiet_console(shared: bool) -> None:
    """Silence the notices above; ``shared``: this run's console is shared with other jobs (no progress bar)."""
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTip) for f in logger.filters):
            logger.addFilter(_DropTip())
        logger.setLevel(logging.WARNING if shared else logging.INFO)
