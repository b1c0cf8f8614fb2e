"""Bootstrap intervals: seeded, paired across sources, percentile intervals that cover the mean."""

import torch

from unetlab.evaluation.bootstrap import bootstrap_means, mean_interval, percentile_interval, resample_indices


def test_resamples_are_a_function_of_n_and_seed():
    assert torch.equal(resample_indices(10, 50, seed=3), resample_indices(10, 50, seed=3))
    assert not torch.equal(resample_indices(10, 50, seed=3), resample_indices(10, 50, seed=4))
    indices = resample_indices(7, 200)
    assert indices.shape == (200, 7) and indices.min() >= 0 and indices.max() <= 6


def test_interval_matches_the_normal_approximation_of_a_mean():
    values = torch.randn(400, generator=torch.Generator().manual_seed(0)).double() * 2 + 5
    low, high = mean_interval(values, resample_indices(400, 4000))
    half_width = 1.96 * values.std() / 400**0.5
    assert low < values.mean() < high
    assert abs((high - low) / 2 - half_width) < 0.1 * half_width


def test_paired_resamples_give_the_interval_of_a_difference():
    a = torch.arange(50.0)
    b = a + 1.0  # always one more: the paired difference has no spread at all
    indices = resample_indices(50, 500)
    assert mean_interval(b - a, indices) == (1.0, 1.0)
    low_a, high_a = mean_interval(a, indices)
    assert high_a - low_a > 5  # while each mean on its own varies a lot


def test_percentiles_interpolate_linearly_and_skip_nan():
    samples = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, float("nan")])
    assert percentile_interval(samples, level=0.5) == (1.0, 3.0)
    low, high = percentile_interval(torch.tensor([float("nan")]))
    assert low != low and high != high  # NaN: no samples
    means = bootstrap_means(torch.tensor([[1.0, 10.0], [3.0, 30.0]]), torch.tensor([[0, 0], [0, 1]]))
    assert torch.equal(means, torch.tensor([[1.0, 10.0], [2.0, 20.0]]))
