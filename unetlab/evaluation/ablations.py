"""Test-time skip ablation subsets and exact Shapley attribution of skip levels (``docs/ablations.md``).

``v(S)`` is a metric with only the kept skips in ``S`` intact, the other kept skips ablated. The Shapley value
of level ``i`` is ``sum over S not containing i of |S|! (n-|S|-1)! / n! * (v(S + {i}) - v(S))``, exact over
all ``2**n`` subsets of the ``n`` kept skips; the values sum to ``v(all) - v(none)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from math import factorial
from typing import TypeVar

from torch import Tensor

from unetlab.models import protocol
from unetlab.models.protocol import UNetLike
from unetlab.models.skip_ablation import ablation_transform, check_ablation

V = TypeVar("V", float, Tensor)


def subsets(levels: Sequence[int]) -> list[tuple[int, ...]]:
    """All subsets of ``levels`` (sorted tuples), smallest first: (), (0,), (1,), (0, 1), ..."""
    levels = sorted(levels)
    return [combo for size in range(len(levels) + 1) for combo in itertools.combinations(levels, size)]


def shapley_values(players: Sequence[int], value: Callable[[tuple[int, ...]], V]) -> dict[int, V]:
    """Exact Shapley value of each player; ``value(S)`` takes the sorted tuple of players in the coalition and returns
    a number, or a tensor of per-image values (the Shapley value is linear in ``value``, so it applies elementwise)."""
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


def decode_variants(
    net: UNetLike,
    encoded: Sequence[Tensor],
    variants: Mapping[str, Mapping[int, str]],
    intact: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Logits of every ablation variant from one encoder pass, each decoder level computed once per distinct input.

    The decoder walks from the bottleneck (level D) up to level 0, so its state after level ``j`` depends only on
    which skips at levels ``>= j`` a variant ablates, and how. Variants that agree there share that state: for the
    ``2**K`` subsets of ``K`` kept skips, level ``j`` runs once per subset of the kept skips at ``>= j`` (level D-1
    once or twice, level 0 ``2**K`` times) instead of ``2**K`` times at every level. Same operations in the same
    order as ``protocol.decode(net, encoded, ablation_transform(ablation))``, so the logits are identical to it.

    Args:
        encoded: ``protocol.encode(net, x)``, the features of levels 0..D.
        variants: name -> ablation ({level: mode}, kept skips only; ``{}`` is the intact model).
        intact: ``protocol.decode(net, encoded)`` when the caller has it already: the unablated states are taken from it
            instead of being computed again.
    Returns: name -> logits (B, K, H, W).
    """
    for ablation in variants.values():
        check_ablation(net, ablation)

    def key(ablation: Mapping[int, str], level: int) -> tuple:
        return tuple(sorted((lv, mode) for lv, mode in ablation.items() if lv >= level))

    cache: dict[tuple[int, str], Tensor] = {}  # each ablated skip tensor once, for every variant
    transforms = {name: ablation_transform(ablation, cache) for name, ablation in variants.items()}
    states: dict[tuple, Tensor] = {(): encoded[net.depth]}  # key at the level above -> decoder state
    for level in reversed(range(net.depth)):
        next_states: dict[tuple, Tensor] = {}
        for name, ablation in variants.items():
            state_key = key(ablation, level)
            if state_key in next_states:
                continue
            if not state_key and intact is not None:
                next_states[state_key] = intact[f"dec{level}"]
            else:
                state = states[key(ablation, level + 1)]
                skip = protocol.skip_of(net, level, encoded, transforms[name])
                next_states[state_key] = net.decode_level(level, state, skip)
        states = next_states
    return {name: net.head(states[key(ablation, 0)]) for name, ablation in variants.items()}
