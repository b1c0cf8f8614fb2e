"""Thin Hydra entry points. The YAML configs live in ``conf/`` and install as the package ``unetlab.conf``."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.resources import files

from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException, InstantiationException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from unetlab.runs.resolvers import register_resolvers  # noqa: F401 -- the commands' resolvers, used by every command

# An absolute path works for editable and regular installs alike (Hydra resolves a relative
# config_path differently under a console script; see facebookresearch/hydra#2125).
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
        if name == "slurm":
            register_slurm_launcher()


def register_slurm_launcher() -> None:
    """Make ``hydra/launcher=slurm``'s class known to Hydra. Hydra finds plugins by walking the ``hydra_plugins``
    folders on disk, which misses an editable install's (it is mapped by an import hook), so it is registered here."""
    from hydra.core.plugins import Plugins

    from hydra_plugins.unetlab_launcher import UnetlabSlurmLauncher

    Plugins.instance().register(UnetlabSlurmLauncher)


def accept_run_overrides() -> None:
    """Let ``data.root=X`` through Hydra as ``++data.root=X`` and ``model=NAME`` as ``+model=NAME``: eval.yaml and
    viz.yaml have no ``data`` or ``model`` node of their own. Hydra adds the node (a group's option first, then keys
    that override its values); ``run_keys`` hands it to ``load_config``, which merges it into the saved config."""
    sys.argv = [
        ("+" if "." not in arg.split("=", 1)[0] else "++") + arg
        if "=" in arg and run_key_root(arg) in RUN_KEYS
        else arg
        for arg in sys.argv
    ]


def run_key_overrides() -> list[str]:
    """The command line's run-key overrides (``model=NAME``, ``data.root=X``) as a train config takes them."""
    from hydra.core.hydra_config import HydraConfig

    given = [override.lstrip("+") for override in HydraConfig.get().overrides.task]
    return [override for override in given if run_key_root(override) in RUN_KEYS]


def run_key_root(override: str) -> str:
    """``data.root=X`` -> ``data``; ``model=NAME`` -> ``model``: the config node an override sets."""
    return override.split("=", 1)[0].split(".", 1)[0]


def run_keys(cfg: DictConfig) -> DictConfig:
    """The run-config keys given on the command line (``{"data": {"root": X}}``), as composed by Hydra."""
    return OmegaConf.masked_copy(cfg, [key for key in RUN_KEYS if key in cfg])


def register_schema(section: str, options: type) -> None:
    """Store ``{section: options}`` (a dataclass of the ``section.*`` keys with their types and defaults) as the
    config ``<section>_schema``, which ``conf/<section>.yaml`` lists first in its defaults. Hydra then checks each
    value's type as it composes (``eval.probe_steps=abc`` is refused, naming the key)."""
    ConfigStore.instance().store(name=f"{section}_schema", node={section: options})


def run_on_checkpoint(prog: str, section: str, cfg: DictConfig, run: Callable[..., object]) -> None:
    """The task of unetlab-eval and unetlab-viz: ``run(ckpt, cfg.<section>, overrides=run keys)`` once the checkpoint
    is given and ``<section>.device`` exists here; user errors end as one line."""
    with task_errors(prog):
        ckpt = checkpoint_arg(prog, cfg)
        check_device(f"{section}.device", cfg[section].device)
        run(ckpt, cfg[section], overrides=run_keys(cfg))


# What a user mistake raises: our config checks (ValueError), files and folders (OSError), Hydra's composition and
# instantiation errors, OmegaConf's missing, unknown or unresolvable keys. Anything else is a bug (traceback kept).
USER_ERRORS = (ValueError, OSError, HydraException, OmegaConfBaseException)


def one_line(err: BaseException) -> str:
    """The message of a user error on one line. Hydra's and OmegaConf's span several: option lists (tab-indented),
    the config search path, ``full_key: ...`` details; the option lists are kept, the search path is dropped."""
    if isinstance(err, InstantiationException) and isinstance(err.__cause__, (ValueError, OSError)):
        err = err.__cause__  # our own checks in a constructor name the key; "Error in call to target" adds nothing
    if isinstance(err, OSError) and err.filename is not None and not isinstance(err, HydraException):
        return f"{err.filename}: {err.strerror}"  # not "[Errno 2] No such file or directory: '...'"
    if isinstance(err, OmegaConfBaseException):
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        key = getattr(err, "full_key", None)
        return first if not key or key in first else f"{first} (key {key})"
    parts: list[str] = []
    for line in str(err).split("\nConfig search path:")[0].splitlines():
        if not line.strip():
            continue
        if line.startswith("\t") and parts:
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line.strip()
        elif parts and parts[-1].endswith(":"):
            parts[-1] += " " + line.strip()
        else:
            parts.append(line.strip().removesuffix("."))
    if isinstance(err.__cause__, OmegaConfBaseException):
        parts.insert(1, one_line(err.__cause__))  # e.g. "Key 'nope' is not in struct" after "Could not override"
    message = "; ".join(parts) or type(err).__name__
    if isinstance(err, OverrideParseException) and err.override:
        message = f"{err.override}: {message}"
    return message


@contextmanager
def task_errors(prog: str, extra: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Inside a Hydra task function: a user error (or one of ``extra``) ends as ``prog: error: ...`` on one line, exit
    status 1. Caught here rather than outside the app, Hydra does not first print "Error executing job with ..."."""
    try:
        yield
    except (*USER_ERRORS, *extra) as err:
        sys.exit(f"{prog}: error: {one_line(err)}")


@contextmanager
def app_errors(prog: str, output_key: str = "hydra.run.dir (hydra.sweep.dir with -m)") -> Iterator[None]:
    """Around a Hydra app in ``main()``: the user errors Hydra raises itself (unknown config option or key, bad
    override syntax, an output directory it cannot create) end as one line. Hydra names the job (and its log file)
    after the module of the app's task function.

    Without HYDRA_FULL_ERROR=1 Hydra prints such errors itself, over several lines or with a traceback, and exits;
    set, it raises them to us."""
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except OSError as err:
        if isinstance(err, HydraException) or err.filename is None:  # a missing config file: composition error
            sys.exit(f"{prog}: error: {one_line(err)}")
        # The task function turns its own OSErrors into one line, so this one is Hydra's: it creates the output
        # directory, writes .hydra/ and the log file there before the task starts.
        sys.exit(
            f"{prog}: error: cannot create or write the output directory {err.filename} ({err.strerror}); "
            f"set {output_key} to a writable directory"
        )
    except USER_ERRORS as err:
        sys.exit(f"{prog}: error: {one_line(err)}")


def run_app(prog: str, app: Callable[[], object], *before: Callable[[], object]) -> None:
    """A command's ``main()``: the ``before`` steps (rewriting the command line, registering resolvers), then the Hydra
    ``app``; user errors of either end as one line (``app_errors``)."""
    with app_errors(prog):
        for step in before:
            step()
        app()


def check_device(key: str, device: str) -> None:
    """Raise a ValueError naming ``key`` unless ``device`` is a torch device this machine has: unchecked, torch fails
    at the first tensor moved there, with a traceback."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{key}={device!r} is not a torch device; use cpu or cuda (cuda:N for GPU N)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{key}={device} but this machine has no CUDA device; use {key}=cpu")
    count = torch.cuda.device_count() if parsed.type == "cuda" else 0
    if parsed.type == "cuda" and (parsed.index or 0) >= count:
        raise ValueError(f"{key}={device} but this machine has {count} CUDA device(s); use cuda:0..cuda:{count - 1}")
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"{key}={device!r} is not allowed; use cpu or cuda (cuda:N for GPU N)")


def checkpoint_arg(prog: str, cfg: DictConfig) -> str:
    """``cfg.ckpt`` of unetlab-eval / unetlab-viz (``ckpt: ???`` in their YAML), or exit saying how to give it."""
    if OmegaConf.is_missing(cfg, "ckpt") or not cfg.ckpt:
        sys.exit(f"{prog}: error: ckpt is missing; use {prog} ckpt=<run_dir>/checkpoints/<name>.ckpt")
    return str(cfg.ckpt)
