"""Bootstrap intervals: seeded, paired across sources, percentile intervals that cover the mean."""

import torch

from unetlab.bootstrap import (
    bootstrap_means,
    draw_weights,
    mean_interval,
    percentile_interval,
    resample_indices,
    two_level_indices,
    two_level_means,
)


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


def test_two_level_draws_are_seeded_and_start_with_the_image_draws():
    seeds, images = two_level_indices(3, 10, 200, seed=5)
    assert seeds.shape == (200, 3) and images.shape == (200, 10) and seeds.max() <= 2 and images.max() <= 9
    assert torch.equal(images, resample_indices(10, 200, seed=5))  # the image bootstrap's own draws
    again = two_level_indices(3, 10, 200, seed=5)
    assert torch.equal(seeds, again[0]) and torch.equal(images, again[1])
    assert torch.equal(
        draw_weights(torch.tensor([[0, 0, 2]]), 4), torch.tensor([[2 / 3, 0.0, 1 / 3, 0.0]], dtype=torch.float64)
    )


def test_two_level_bootstrap_of_identical_seeds_is_the_image_bootstrap():
    values = torch.randn(30, generator=torch.Generator().manual_seed(1)).double()
    seed_draws, image_draws = two_level_indices(3, 30, 1000)
    two_level = two_level_means(values.expand(3, 30), seed_draws, image_draws)
    assert torch.allclose(two_level, bootstrap_means(values, image_draws))
    one_seed = two_level_means(values[None], *two_level_indices(1, 30, 1000))
    assert torch.allclose(one_seed, bootstrap_means(values, resample_indices(30, 1000)))


def test_two_level_bootstrap_covers_the_spread_over_seeds():
    values = torch.tensor([0.0, 1.0])[:, None].expand(2, 8)  # no spread over images, all of it over seeds
    means = two_level_means(values, *two_level_indices(2, 8, 1000))
    assert set(means.tolist()) == {0.0, 0.5, 1.0}  # both seeds drawn twice, or one of each
    assert percentile_interval(means) == (0.0, 1.0)
    per_image = torch.arange(8.0)[None].expand(2, 8) + values  # image and seed spread together
    low, high = percentile_interval(two_level_means(per_image, *two_level_indices(2, 8, 1000)))
    image_low, image_high = mean_interval(per_image[0], resample_indices(8, 1000))
    assert high - low > image_high - image_low
