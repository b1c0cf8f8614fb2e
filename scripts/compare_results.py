"""Compare two ``results.csv`` files row by row, keyed by (source, metric, class): the same-results check of a
restructure (the same checkpoint evaluated by two versions).

    python scripts/compare_results.py before/results.csv after/results.csv [--tolerance 0]

Prints the rows only one file has and every cell of value, std, n, empty_rate, ci_low, ci_high and unit that differs
by more than ``--tolerance`` (absolute; 0: the text must be identical). Exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

CELLS = ("value", "std", "n", "empty_rate", "ci_low", "ci_high", "unit")


def rows(path: Path) -> dict[tuple[str, str, str], dict]:
    with open(path, newline="") as handle:
        return {(r["source"], r["metric"], r["class"]): r for r in csv.DictReader(handle)}


def differs(a: str, b: str, tolerance: float) -> bool:
    if a == b:
        return False
    try:
        x, y = float(a), float(b)
    except ValueError:
        return True
    if math.isnan(x) and math.isnan(y):
        return False
    return not abs(x - y) <= tolerance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--tolerance", type=float, default=0.0)
    args = parser.parse_args()
    a, b = rows(args.before), rows(args.after)
    only = sorted(set(a) ^ set(b))
    cells = [(key, cell, a[key][cell], b[key][cell]) for key in sorted(set(a) & set(b)) for cell in CELLS
             if differs(a[key][cell], b[key][cell], args.tolerance)]  # fmt: skip
    print(f"{len(a)} rows before, {len(b)} after; {len(only)} rows in one file only; {len(cells)} cells differ "
          f"(tolerance {args.tolerance:g})")  # fmt: skip
    for key in only[:10]:
        print(f"  only in {'before' if key in a else 'after'}: {'/'.join(key)}")
    for key, cell, x, y in cells[:20]:
        print(f"  {key[0]} {key[1]} {key[2]} {cell}: {x} -> {y}")
    sys.exit(1 if only or cells else 0)


if __name__ == "__main__":
    main()
