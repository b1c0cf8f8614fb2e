"""The resolvers of unetlab's configs, registered by every command that composes a training config, and by the SLURM
launcher in its jobs (``unetlab.runs.slurm_launcher``), where no command runs."""

from __future__ import annotations

from omegaconf import OmegaConf

from unetlab.conventions import parse_skips, skips_to_path
from unetlab.runs.slurm import resource, run_dir_stamp


def _skipset(skips, depth) -> str:
    return skips_to_path(parse_skips(skips, int(depth)))


def register_resolvers() -> None:
    """``${skipset:${model.skips},${model.depth}}`` -> ``0_1_2_3`` | ``none``: stable run-directory names for the
    grid's sweeps (``unetlab.grid.run.SWEEP_SUBDIR``); ``${run_stamp:}``, the default run directory's date and time
    (``slurm-<job id>`` in a SLURM job); ``${slurm:KEY}``, a SLURM job's resources from its config
    (``unetlab.runs.slurm.job_resources``). Registered by the commands that compose a training config."""
    OmegaConf.register_new_resolver("skipset", _skipset, replace=True)
    OmegaConf.register_new_resolver("run_stamp", run_dir_stamp, replace=True)  # conf/train.yaml's hydra.run.dir
    OmegaConf.register_new_resolver("slurm", resource, replace=True)  # conf/hydra/launcher/slurm.yaml
