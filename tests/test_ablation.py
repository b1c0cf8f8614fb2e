import itertools
import math
import random

import pytest
import torch

from unetlab import UNet
from unetlab.evaluation.ablations import decode_variants, shapley_values, subsets
from unetlab.models.skip_ablation import ablation_transform
from unetlab.sources import ablation as ablation_source


def test_subsets_and_sources():
    assert subsets([2, 0]) == [(), (0,), (2,), (0, 2)]
    assert len(subsets(range(4))) == 16
    assert ablation_source("mean", (2, 0)) == "ablate/mean/0,2"
    assert ablation_source("lowpass:2", ()) == "ablate/lowpass:2/none"


def permutation_shapley(players, value):
    """Brute force: average marginal contribution over every ordering of the players."""
    totals = dict.fromkeys(players, 0.0)
    orders = list(itertools.permutations(players))
    for order in orders:
        coalition = ()
        for player in order:
            grown = tuple(sorted((*coalition, player)))
            totals[player] += value(grown) - value(coalition)
            coalition = grown
    return {p: t / len(orders) for p, t in totals.items()}


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_shapley_equals_permutation_average_and_sums_to_total(n):
    rng = random.Random(n)
    players = list(range(n))
    table = {coalition: rng.uniform(-1, 1) for coalition in subsets(players)}
    phi = shapley_values(players, table.__getitem__)
    brute = permutation_shapley(players, table.__getitem__)
    for p in players:
        assert phi[p] == pytest.approx(brute[p], abs=1e-12)
    assert sum(phi.values()) == pytest.approx(table[tuple(players)] - table[()], abs=1e-12)


def test_shapley_of_additive_game_is_each_players_own_worth():
    worth = {0: 0.5, 2: -1.25, 3: 2.0}
    phi = shapley_values([0, 2, 3], lambda coalition: sum(worth[p] for p in coalition))
    assert phi == pytest.approx(worth)
    # a player that adds nothing to any coalition gets zero
    phi = shapley_values([0, 1], lambda coalition: 1.0 if 0 in coalition else 0.0)
    assert phi[1] == 0 and math.isclose(phi[0], 1.0)


@pytest.mark.parametrize("skips", ["all", [0, 2], [1]])
def test_shared_decoding_equals_decoding_each_variant(skips):
    torch.manual_seed(0)
    net = UNet(in_channels=1, num_classes=3, depth=3, base_channels=4, skips=skips).eval()
    x = torch.randn(2, 1, 32, 32)
    variants = {
        f"{mode}/{ablated}": {level: mode for level in ablated}
        for mode in ("zero", "mean", "lowpass:1")
        for ablated in subsets(net.skip_levels)
    }
    variants["mixed"] = {level: mode for level, mode in zip(net.skip_levels, ("zero", "mean", "lowpass:1"))}
    with torch.no_grad():
        encoded = net.encode(x)
        shared = decode_variants(net, encoded, variants)
        reusing = decode_variants(net, encoded, variants, intact=net.decode(encoded))
        for name, ablation in variants.items():
            assert torch.equal(shared[name], net.decode(encoded, ablation_transform(ablation))["logits"]), name
            assert torch.equal(reusing[name], shared[name]), name
    assert not torch.equal(shared["zero/()"], shared[f"zero/{net.skip_levels}"])  # ablations change the logits
    with pytest.raises(ValueError, match="cannot ablate the skip at level"):
        decode_variants(net, encoded, {"bad": {5: "zero"}})
