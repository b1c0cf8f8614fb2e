"""``Phases``: a line per finished phase of a job on a trained run (evaluation, drawing), so that no stretch of it
goes silent."""

from __future__ import annotations

import logging
import sys
import time


class Phases:
    """Prints ``[unetlab] <run> <job>: <what> (<seconds> s)`` as each phase ends, unless ``quiet`` (a progress bar
    shows it), and logs it to the ``unetlab`` logger (``train.log`` in a grid job) either way."""

    def __init__(self, run: str, job: str, quiet: bool = False):
        self.run, self.job, self.quiet, self.start = run, job, quiet, time.perf_counter()

    def done(self, what: str) -> None:
        now = time.perf_counter()
        line = f"[unetlab] {self.run} {self.job}: {what} ({now - self.start:.1f} s)"
        logger = logging.getLogger("unetlab")
        if not self.quiet and not reaches_console(logger):
            print(line, flush=True)
        logger.info(line)
        self.start = now


def reaches_console(logger: logging.Logger) -> bool:
    """Whether an INFO line of ``logger`` is printed to the console already (Hydra's ``stdout`` job logging)."""
    if not logger.isEnabledFor(logging.INFO):
        return False
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            stream = getattr(handler, "stream", None)
            if stream in (sys.stdout, sys.stderr) and handler.level <= logging.INFO:
                return True
        current = current.parent if current.propagate else None
    return False
