"""The project's conventions in code, each defined once (``docs/conventions.md`` states them in words).

- **Level** ``i`` is the resolution ``H/2**i x W/2**i``. A depth-``D`` U-Net has encoder levels ``0..D`` (``D`` the
  bottleneck), decoder levels ``D-1..0`` and one skip per level ``0..D-1``.
- **Feature keys**: ``enc0..encD``, ``dec{D-1}..dec0``, ``logits``; ``level_of("dec2") == 2``.
- **Skip set**: the sorted levels whose skip is kept. In configs ``all | none | [0, 2]``; in tables and run names the
  canonical string ``"0,1,2,3"`` / ``"none"`` / ``"0,2"`` (never ``all``); in reports the label ``all`` / ``none`` /
  ``"0,2"``.

Pure Python (no torch): the report reads these too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# The mask label left out of the loss and every metric (padding, borders, VOC's void): one value for every data set.
IGNORE_INDEX = 255

# The splits of every data set, in this order.
SPLITS = ("train", "val", "test")

MIN_DEPTH, MAX_DEPTH = 1, 6


def check_depth(depth: int) -> int:
    """Raise a clear error unless ``depth`` is an integer in 1..6."""
    if isinstance(depth, bool) or not isinstance(depth, int) or not MIN_DEPTH <= depth <= MAX_DEPTH:
        raise ValueError(f"model.depth={depth!r} is not allowed; use an integer {MIN_DEPTH}..{MAX_DEPTH}")
    return depth


def feature_keys(depth: int, logits: bool = True) -> list[str]:
    """The feature keys of a depth-``depth`` U-Net in forward order: enc0..enc{depth}, dec{depth-1}..dec0[, logits]."""
    enc = [f"enc{level}" for level in range(depth + 1)]
    dec = [f"dec{level}" for level in reversed(range(depth))]
    return [*enc, *dec, *(["logits"] if logits else [])]


def level_of(key: str) -> int:
    """The level of a feature key: ``"enc2"`` / ``"dec2"`` -> 2 (``logits`` is level 0)."""
    if key == "logits":
        return 0
    if key[:3] not in ("enc", "dec") or not key[3:].isdecimal():
        raise ValueError(f"{key!r} is not a feature key; keys are enc<level>, dec<level> and logits")
    return int(key[3:])


def parse_skips(skips: str | Iterable[int] | None, depth: int) -> tuple[int, ...]:
    """Turn ``"all" | "none" | [0, 2] | "0,2"`` into the sorted tuple of kept skip levels."""
    if skips is None or (isinstance(skips, str) and skips.strip().lower() == "none"):
        return ()
    if isinstance(skips, str):
        text = skips.strip().lower()
        if text == "all":
            return tuple(range(depth))
        try:
            skips = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ValueError(
                f"model.skips={skips!r} is not understood; use 'all', 'none' or a list of levels like [0, 2]"
            ) from None
    entries = list(skips) if isinstance(skips, Iterable) else [skips]  # model.skips=2 is level 2 alone, as "2" is
    # int() would fail on 'x' with a bare "invalid literal", and quietly take 1.5 or True for level 1.
    whole = [e for e in entries if (isinstance(e, int) and not isinstance(e, bool)) or str(e).strip().isdecimal()]
    if len(whole) < len(entries):
        raise ValueError(
            f"model.skips={entries!r} is not understood: levels must be integers 0..{depth - 1}; "
            "use 'all', 'none' or a list of levels like [0, 2]"
        )
    levels = sorted({int(level) for level in entries})
    bad = [level for level in levels if not 0 <= level < depth]
    if bad:
        raise ValueError(
            f"model.skips={levels} names level {bad[0]}, but a depth-{depth} U-Net has skips at levels 0..{depth - 1}"
        )
    return tuple(levels)


def skips_to_str(skips: Sequence[int]) -> str:
    """Canonical skip-set string used in tables and run names: ``"0,1,2"`` or ``"none"``."""
    return ",".join(str(level) for level in sorted(skips)) if skips else "none"


def skips_to_path(skips: Sequence[int]) -> str:
    """The skip set in a run directory's name: ``"0_1_2"`` or ``"none"`` (no commas, which Hydra's command line
    would read as a list: ``ckpt=runs/d4-s0_1_2_3-seed0/...`` needs no quoting)."""
    return "_".join(str(level) for level in sorted(skips)) if skips else "none"


def str_to_skips(text: str) -> tuple[int, ...]:
    """The inverse of ``skips_to_str``: ``"0,2"`` -> (0, 2), ``"none"`` -> ()."""
    return () if text == "none" else tuple(int(level) for level in text.split(","))


def skip_label(skips: Sequence[int], depth: int) -> str:
    """The report's label: ``all`` where the set is every level ``0..depth-1``, ``none``, else ``"0,2"``."""
    return "all" if tuple(sorted(skips)) == tuple(range(depth)) else skips_to_str(skips)


def skips_override(skips: Sequence[int], depth: int) -> str:
    """The ``model.skips=`` value of a skip set on the command line: ``all``, ``none`` or ``[0,2]``."""
    label = skip_label(skips, depth)
    return label if label in ("all", "none") else f"[{label}]"
