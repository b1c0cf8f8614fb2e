"""The names of the sources of ``results.csv``: every one is built, and parsed, here and nowhere else.

A source says what was scored (``docs/results-table.md``):

- ``model``: the trained model;
- ``probe/<key>``: a probe on the frozen features of ``<key>`` (``enc0`` .. ``dec0``);
- ``floor/<level>``: the resolution floor of a level;
- ``ablate/<mode>/<levels>``: the model with the skips of ``<levels>`` (``0,2``) ablated in ``<mode>`` at test time;
- ``shapley/<mode>/<level>``: the Shapley value of a skip level from those ablations;
- ``shift/<shift>``: the model on the test split under a shift (``noise:0.1``);
- ``susceptibility/<shift>/<key>``: the Hellinger distance of a key's activations, in domain vs shifted;
- ``erf/<key>``, ``erf_init/<key>``: effective receptive fields, trained and at random init;
- ``<source>/objects/<bin>`` (``objects/<bin>`` for the model): per-object rows of a source, one per size bin and
  ``all`` (every size pooled).
"""

from __future__ import annotations

from collections.abc import Sequence

from unetlab.conventions import skips_to_str

MODEL = "model"
OBJECTS = "objects"
ALL_SIZES = "all"  # the per-object bin that pools the objects of every size
ROWS_ONLY = ("susceptibility/", "erf/", "erf_init/")  # summaries of the whole split, not means of per-image values


def probe(key: str) -> str:
    """``probe/enc1``."""
    return f"probe/{key}"


def floor(level: int) -> str:
    """``floor/2``."""
    return f"floor/{level}"


def ablation(mode: str, levels: Sequence[int]) -> str:
    """``ablate/mean/0,2``: the model with the skips of ``levels`` ablated in ``mode``."""
    return f"ablate/{mode}/{skips_to_str(tuple(sorted(levels)))}"


def ablation_prefix(mode: str) -> str:
    """``ablate/mean/``: what every ablation source of ``mode`` starts with."""
    return f"ablate/{mode}/"


def shapley(mode: str, level: int) -> str:
    """``shapley/lowpass:1/0``."""
    return f"shapley/{mode}/{level}"


def shift(name: str) -> str:
    """``shift/noise:0.1``."""
    return f"shift/{name}"


def susceptibility(shift_name: str, key: str) -> str:
    """``susceptibility/noise:0.1/enc0``."""
    return f"susceptibility/{shift_name}/{key}"


def erf(key: str, trained: bool = True) -> str:
    """``erf/enc2`` (trained) or ``erf_init/enc2`` (at random init)."""
    return f"{'erf' if trained else 'erf_init'}/{key}"


def objects(source: str, bin_name: str) -> str:
    """The per-object source of ``source`` for one size bin: ``objects/4-8`` (the model), ``floor/2/objects/4-8``,
    ``probe/enc1/objects/all``."""
    return f"{OBJECTS}/{bin_name}" if source == MODEL else f"{source}/{OBJECTS}/{bin_name}"


def kind(source: str) -> str:
    """The first part of a source: ``model``, ``probe``, ``floor``, ``ablate``, ``shapley``, ``shift``,
    ``susceptibility``, ``erf``, ``erf_init``; ``objects`` for every per-object source."""
    return OBJECTS if is_objects(source) else source.split("/", 1)[0]


def is_objects(source: str) -> bool:
    """True for the per-object sources: their values are per object, not per image."""
    return source.startswith(f"{OBJECTS}/") or f"/{OBJECTS}/" in source


def objects_of(source: str) -> tuple[str, str] | None:
    """``floor/2/objects/4-8`` -> (``floor/2``, ``4-8``); ``objects/4-8`` -> (``model``, ``4-8``); None for a source
    that is not per object."""
    if source.startswith(f"{OBJECTS}/"):
        return MODEL, source.removeprefix(f"{OBJECTS}/")
    if f"/{OBJECTS}/" in source:
        base, bin_name = source.rsplit(f"/{OBJECTS}/", 1)
        return base, bin_name
    return None


def floor_level(source: str) -> int | None:
    """``floor/2`` -> 2; None for any other source (a floor's per-object sources included)."""
    parts = source.split("/")
    return int(parts[1]) if len(parts) == 2 and parts[0] == "floor" else None


def probe_key(source: str) -> str | None:
    """``probe/enc1`` -> ``enc1``; None for any other source."""
    parts = source.split("/")
    return parts[1] if len(parts) == 2 and parts[0] == "probe" else None


def mode_of(source: str) -> str | None:
    """The ablation mode of an ``ablate/...`` or ``shapley/...`` source, else None."""
    parts = source.split("/")
    return parts[1] if len(parts) == 3 and parts[0] in ("ablate", "shapley") else None


def shift_of(source: str) -> str | None:
    """``shift/noise:0.1`` -> ``noise:0.1``; None for any other source."""
    parts = source.split("/")
    return parts[1] if len(parts) == 2 and parts[0] == "shift" else None


def in_per_image(source: str) -> bool:
    """Whether ``per_image.npz`` holds a source's per-image values (per-object sources: their per-image sums): not
    for the domain susceptibility (one distance between two distributions of the whole split) and the effective
    receptive fields (one gradient map averaged over images)."""
    return not source.startswith(ROWS_ONLY)
