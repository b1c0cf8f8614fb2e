"""A run directory belongs to one live process and to one config.

``hold_run_dir`` takes ``<run_dir>/.lock`` or refuses at once. The lock is an OS file lock (``filelock``), so it dies
with its process: a lock left by a killed run is taken over by the next command without any clean-up. Beside it,
``.lock.owner`` names the holder (pid and command line) for the message a second process gets. Re-entrant within one
process (``unetlab-train`` evaluates its own run), and taken only by the process of global rank 0: the other DDP ranks
run inside the same command.

``claim_config`` writes ``.hydra/config.yaml`` under that lock (Hydra's own writer runs before any of our code, so a
second command would overwrite a live run's config; ``conf/train.yaml`` turns it off), and refuses a command whose
config differs from the one the directory was started with: resuming a run with other settings would not be the run.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

# Set by unetlab-ablate for its sweeps: their processes (and the launcher's workers) die with their parent.
DIE_WITH_PARENT = "UNETLAB_DIE_WITH_PARENT"

# Keys that change how a run is shown or evaluated, not what it trains: a re-run may change them.
PRESENTATION_KEYS = (
    "paths", "eval", "run_group", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "callbacks.wandb_masks",  # what goes to the dashboard, not what is trained
)  # fmt: skip


class RunDirInUse(ValueError):
    """Another live process holds the run directory, or the directory belongs to another config (a ValueError: the
    command names a directory it cannot have, and the CLIs report it as a user error, in one line)."""


@contextmanager
def hold_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for the duration of the block; ``RunDirInUse`` naming the holder if another process has it."""
    if rank_zero_only.rank != 0:
        yield
        return
    run_dir = Path(run_dir).resolve()  # one lock object per directory, however the path is spelled
    run_dir.mkdir(parents=True, exist_ok=True)
    owner = run_dir / ".lock.owner"
    lock = FileLock(run_dir / ".lock", timeout=0, is_singleton=True)
    try:
        lock.acquire()
    except Timeout:
        holder = owner.read_text().strip() if owner.is_file() else "another process"
        raise RunDirInUse(f"{run_dir} is in use by {holder}; wait for it to end, or stop it") from None
    try:
        if lock.lock_counter == 1:
            owner.write_text(f"pid {os.getpid()} ({' '.join(sys.argv)})\n")
        yield
    finally:
        lock.release()


def _comparable(cfg: DictConfig) -> dict:
    data = OmegaConf.to_container(cfg, resolve=False)
    for key in PRESENTATION_KEYS:
        head, _, leaf = key.partition(".")
        node = data.get(head) if leaf else data
        if isinstance(node, dict):
            node.pop(leaf or head, None)
    return data


def _differences(saved, wanted, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(wanted, dict):
        return [d for key in sorted(set(saved) | set(wanted)) for d in
                _differences(saved.get(key), wanted.get(key), f"{prefix}{key}.")]  # fmt: skip
    return [] if saved == wanted else [f"{prefix[:-1]}={saved} (this command: {wanted})"]


def claim_config(cfg: DictConfig, run_dir: Path) -> None:
    """Save ``cfg`` as ``<run_dir>/.hydra/config.yaml``, or check that it equals the config saved there."""
    if rank_zero_only.rank != 0:
        return
    config_file = Path(run_dir) / ".hydra" / "config.yaml"
    if config_file.is_file():
        differences = _differences(_comparable(OmegaConf.load(config_file)), _comparable(cfg))
        if differences:
            raise RunDirInUse(
                f"{run_dir} holds a run with another config ({'; '.join(differences[:3])}"
                f"{'; ...' if len(differences) > 3 else ''}); re-run with the same settings to resume it, "
                "or give another hydra.run.dir"
            )
        return
    config_file.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, config_file)
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        OmegaConf.save(HydraConfig.get().overrides.task, config_file.with_name("overrides.yaml"))


def die_with_parent() -> None:
    """Get SIGKILL when the parent process dies (Linux; elsewhere nothing).

    ``unetlab-ablate`` asks this of its sweeps (here, and through ``UNETLAB_DIE_WITH_PARENT`` of every job, since
    Hydra's joblib workers would otherwise finish their job after the grid died, holding its run directory). SIGKILL
    is safe: checkpoints and result files are written atomically.
    """
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
