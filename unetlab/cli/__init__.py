"""Thin Hydra entry points. The YAML configs live in ``conf/`` and install as the package ``unetlab.conf``."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from importlib.resources import files

from omegaconf import DictConfig, OmegaConf

# An absolute path works for editable and regular installs alike (Hydra resolves a relative
# config_path differently under a console script; see shared/ECOSYSTEM.md B1).
CONFIG_PATH = str(files("unetlab.conf"))

# Keys of a trained run's saved config that unetlab-eval / unetlab-viz accept on their command line.
RUN_KEYS = ("data", "model", "trainer", "logger")


# hydra/launcher=<name> options that the submitit plugin provides (the `slurm` extra); `slurm` is unetlab's own
# conf/hydra/launcher/slurm.yaml, built on the plugin's `submitit_slurm`. (joblib is a dependency of unetlab itself:
# the main job uses it.)
SUBMITIT_LAUNCHERS = ("submitit_local", "submitit_slurm", "slurm")


def check_launcher(prog: str, argv: Sequence[str] | None = None) -> None:
    """Exit 2 naming the extra to install when ``hydra/launcher=X`` (in ``argv``, default ``sys.argv``) needs the
    submitit plugin and it does not import; Hydra itself would only say "Could not find 'hydra/launcher/X'"."""
    for arg in sys.argv[1:] if argv is None else argv:
        key, _, name = arg.partition("=")
        if key.lstrip("+~") != "hydra/launcher" or name not in SUBMITIT_LAUNCHERS:
            continue
        try:
            importlib.import_module("hydra_plugins.hydra_submitit_launcher")
        except ImportError:
            print(
                f"{prog}: error: hydra/launcher={name} needs the submitit launcher: pip install 'unetlab[slurm]'",
                file=sys.stderr,
            )
            sys.exit(2)


def accept_run_overrides() -> None:
    """Let ``data.root=X`` through Hydra as ``+data.root=X``: eval.yaml has no ``data`` node of its own; the
    value is applied to the checkpoint's saved config by ``run_overrides``."""
    sys.argv = [
        f"+{arg}" if arg.split("=", 1)[0].split(".", 1)[0] in RUN_KEYS and "=" in arg else arg for arg in sys.argv
    ]


def run_overrides(cfg: DictConfig) -> list[str]:
    """``data.root=X``-style dotlist of the run-config keys given on the command line."""
    out = []

    def walk(node, prefix):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}.{key}")
        else:
            out.append(f"{prefix}={node if isinstance(node, str) else json.dumps(node)}")

    for key in RUN_KEYS:
        if key in cfg:
            walk(OmegaConf.to_container(cfg[key]), key)
    return out


def _skipset(skips, depth) -> str:
    from unetlab.models.unet import parse_skips, skips_to_str

    return skips_to_str(parse_skips(skips, int(depth)))


# ${skipset:${model.skips},${model.depth}} -> "0,1,2,3" | "none": stable run-directory names for sweeps.
OmegaConf.register_new_resolver("skipset", _skipset, replace=True)
