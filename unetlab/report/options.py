"""``ReportOptions``: the ``report.*`` keys of ``unetlab-report``, their types and defaults. Light to import (no
torch), so that ``unetlab-report --help`` is quick."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING


@dataclass
class ReportOptions:
    """What ``unetlab-report`` reads and where it writes: the ``report.*`` keys (the schema ``report_schema`` that
    ``conf/report.yaml`` extends). Hydra checks each value's type as it composes.

    ``dirs`` is ``Any`` because OmegaConf has no union of a string and a list.
    """

    dirs: Any = MISSING  # folders searched recursively for results.csv (one, or a list)
    out_dir: str | None = None  # where the report goes; None = the first of dirs
    wandb: bool = False  # also log the plots and the seed-averaged table to one wandb run (job_type=report)
    wandb_mode: str = "offline"  # offline | online | disabled
    project: str = "unetlab"
    group: str | None = None  # None = the name of the first of dirs

    def __post_init__(self):
        if isinstance(self.dirs, str):
            self.dirs = [self.dirs]
        if self.wandb_mode not in ("offline", "online", "disabled"):
            raise ValueError(f"report.wandb_mode={self.wandb_mode!r}; allowed: offline, online, disabled")
