"""Test-time skip ablation subsets and exact Shapley attribution of skip levels (SPEC section 5).

``v(S)`` is a metric with only the kept skips in ``S`` intact, the other kept skips ablated. The Shapley value
of level ``i`` is ``sum over S not containing i of |S|! (n-|S|-1)! / n! * (v(S + {i}) - v(S))``, exact over
all ``2**n`` subsets of the ``n`` kept skips; the values sum to ``v(all) - v(none)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from math import factorial

from unetlab.models.unet import skips_to_str


def subsets(levels: Sequence[int]) -> list[tuple[int, ...]]:
    """All subsets of ``levels`` (sorted tuples), smallest first: (), (0,), (1,), (0, 1), ..."""
    levels = sorted(levels)
    return [combo for size in range(len(levels) + 1) for combo in itertools.combinations(levels, size)]


def ablation_source(mode: str, ablated: Sequence[int]) -> str:
    """Results-table source of a test-time ablation: ``ablate/mean/0,2`` (levels 0 and 2 replaced)."""
    return f"ablate/{mode}/{skips_to_str(ablated)}"


def shapley_values(players: Sequence[int], value: Callable[[tuple[int, ...]], float]) -> dict[int, float]:
    """Exact Shapley value of each player; ``value(S)`` takes the sorted tuple of players in the coalition."""
    players = sorted(players)
    n = len(players)
    cache = {coalition: value(coalition) for coalition in subsets(players)}
    result = {}
    for player in players:
        others = [p for p in players if p != player]
        total = 0.0
        for coalition in subsets(others):
            weight = factorial(len(coalition)) * factorial(n - len(coalition) - 1) / factorial(n)
            with_player = tuple(sorted((*coalition, player)))
            total += weight * (cache[with_player] - cache[coalition])
        result[player] = total
    return result
