"""Weights trained elsewhere as a run that ``unetlab-eval`` and ``unetlab-viz`` measure like their own
(``unetlab-eval model=NAME <architecture keys> weights=PATH``).

``import_run`` builds the configured model (``model.*``, its channels from the data as training would), loads a plain
state dict into the library network (a ``.pt``/``.pth`` of ``state_dict()``, a Lightning checkpoint's ``state_dict``
or an nnU-Net checkpoint's ``network_weights``), and writes a run directory in unetlab's layout: ``.hydra/config.yaml``
(the composed config, so the run is reproduced from it) and ``checkpoints/imported.ckpt``. Weights from elsewhere are
untrusted: they load with ``torch.load(weights_only=True)``; a file that needs arbitrary pickled objects is refused
unless ``allow_pickle`` is set on purpose (unpickling runs whatever code the file names).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from unetlab.runs.checkpoint import model_channels
from unetlab.runs.run_dir import claim_config, hold_run_dir

# Where a state dict sits inside a checkpoint of another tool: Lightning, nnU-Net v2; else the file is one.
STATE_KEYS = ("state_dict", "network_weights", "model_state_dict")
# Prefixes that wrappers put before a network's own keys: DDP, Lightning modules, torch.compile.
PREFIXES = ("", "module.", "net.", "model.", "network.", "_orig_mod.")


def read_weights(path: str | Path, allow_pickle: bool = False) -> dict[str, Tensor]:
    """The state dict in ``path``: ValueError in one line for a file that is unreadable, holds no tensors, or needs
    arbitrary pickled objects (unless ``allow_pickle``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as err:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))  # else junk, not a refused object
        if allow_pickle or refused is None:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            detail = next((line for line in lines if "error:" in line.lower()), lines[0] if lines else "")
            raise ValueError(f"weights {path} are unreadable (not a file torch.save wrote?): {detail[:200]}") from err
        raise ValueError(
            f"weights {path} need arbitrary pickled objects ({refused.group(1)}), which torch.load(weights_only=True) "
            "refuses: unpickling runs whatever code the file names; if you trust its source, set "
            "weights_allow_pickle=true"
        ) from err
    except Exception as err:  # torch.load of a foreign or truncated file raises nearly any type
        raise ValueError(f"weights {path} are unreadable: {type(err).__name__}: {str(err)[:200]}") from err
    state = loaded
    if isinstance(loaded, dict):
        state = next((loaded[key] for key in STATE_KEYS if isinstance(loaded.get(key), dict)), loaded)
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise ValueError(f"weights {path} hold no state dict (a dict of tensors, or one under {', '.join(STATE_KEYS)})")
    return tensors


def library_network(net: nn.Module) -> nn.Module:
    """The module whose ``state_dict`` a library saves: an adapter's wrapped network (``net.net``), else ``net``."""
    inner = getattr(net, "net", None)
    return inner if isinstance(inner, nn.Module) else net


def load_weights(net: nn.Module, weights: dict[str, Tensor], source: str | Path) -> None:
    """Load ``weights`` into ``net``'s library network (or ``net`` itself), after the first prefix of ``PREFIXES``
    that makes the keys match exactly; else ValueError naming the first missing and unexpected keys."""
    best: tuple[int, nn.Module, dict[str, Tensor]] | None = None
    for target in dict.fromkeys((library_network(net), net)):
        expected = set(target.state_dict())
        for prefix in PREFIXES:
            candidate = {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
            if set(candidate) == expected:
                try:
                    target.load_state_dict(candidate)
                except RuntimeError as err:  # equal keys, a tensor of another shape
                    detail = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), "")
                    raise ValueError(f"weights {source} do not fit the configured model: {detail}") from err
                return
            overlap = len(expected & set(candidate))
            if best is None or overlap > best[0]:
                best = (overlap, target, candidate)
    _, target, candidate = best
    expected = list(target.state_dict())
    missing = [k for k in expected if k not in candidate]
    unexpected = [k for k in candidate if k not in set(expected)]
    raise ValueError(
        f"weights {source} do not fit the configured model ({type(target).__name__}, {len(expected)} tensors): "
        f"missing {describe(missing)}, unexpected {describe(unexpected)}; check model.* (depth, base_channels, ...)"
    )


def describe(keys: list[str]) -> str:
    """``'a.b' and 3 more`` | ``none``."""
    if not keys:
        return "none"
    return repr(keys[0]) + (f" and {len(keys) - 1} more" if len(keys) > 1 else "")


def import_run(cfg: DictConfig, weights: str | Path, run_dir: str | Path, allow_pickle: bool = False) -> Path:
    """Write ``run_dir`` (``.hydra/config.yaml`` and ``checkpoints/imported.ckpt``) for the model of ``cfg`` (a train
    config: ``model``, ``data``, ``seed``, ...) with ``weights`` loaded; returns the checkpoint's path."""
    run_dir = Path(run_dir)
    datamodule = instantiate(cfg.data)
    datamodule.setup("test")
    net = instantiate(cfg.model, **model_channels(cfg, datamodule))
    load_weights(net, read_weights(weights, allow_pickle), weights)
    cfg = OmegaConf.merge(cfg, {"paths": {"output_dir": str(run_dir.resolve())}})
    ckpt = run_dir / "checkpoints" / "imported.ckpt"
    with hold_run_dir(run_dir):
        claim_config(cfg, run_dir)  # a second import into the same folder must describe the same model and data
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        state = {f"net.{key}": value for key, value in net.state_dict().items()}
        torch.save({"state_dict": state, "imported_from": str(Path(weights).resolve())}, ckpt)
    return ckpt
