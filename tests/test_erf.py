"""Effective receptive fields: mass radii, zero gradient outside the theoretical field, growth with depth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from unetlab.explain.erf import effective_receptive_fields, mass_radius, plot_erf_maps, plot_fields
from unetlab.models.unet import UNet


def test_mass_radius_of_known_maps():
    delta = torch.zeros(9, 9)
    delta[4, 4] = 1.0
    assert mass_radius(delta, (4.0, 4.0), 0.95) == 0.0
    square = torch.zeros(21, 21)
    square[5:16, 5:16] = 1.0  # 11 x 11 around (10, 10)
    assert mass_radius(square, (10.0, 10.0), 1.0) == 5.0
    assert mass_radius(square, (10.0, 10.0), 0.95) == 5.0  # 9 x 9 holds 81/121 < 95%
    assert mass_radius(square, (10.0, 10.0), 0.5) == 4.0  # 7 x 7 holds 49/121 < 50%, 9 x 9 holds 81/121
    block = torch.zeros(8, 8)
    block[3:5, 3:5] = 1.0  # 2 x 2 around the half-pixel centre (3.5, 3.5)
    assert mass_radius(block, (3.5, 3.5), 0.95) == 0.5
    assert math.isnan(mass_radius(torch.zeros(4, 4), (1.0, 1.0), 0.5))


@pytest.fixture(scope="module")
def random_init_erfs():
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=4).train()  # erf switches to eval mode and back
    images = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    erfs = effective_receptive_fields(net, images, batch_size=3)
    assert net.training
    return net, erfs


def test_erf_radii_against_theory(random_init_erfs):
    net, erfs = random_init_erfs
    assert list(erfs) == net.feature_keys
    for key, erf in erfs.items():
        y0, y1, x0, x1 = erf.box
        box_centre = ((y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2)
        offset = max(abs(box_centre[0] - erf.centre[0]), abs(box_centre[1] - erf.centre[1]))
        assert 0 <= erf.radius50 <= erf.radius95 <= (erf.theoretical.size - 1) / 2 + offset, key
        if erf.theoretical.size >= 14:
            assert erf.radius50 < erf.radius95, key
        # No gradient reaches outside the theoretical field.
        outside = torch.ones_like(erf.grad_map, dtype=torch.bool)
        outside[max(y0, 0) : y1, max(x0, 0) : x1] = False
        if outside.any():
            assert erf.grad_map[outside].abs().max() == 0, key
        assert erf.grad_map.sum() > 0


def test_erf_grows_with_depth_at_random_init(random_init_erfs):
    _, erfs = random_init_erfs
    radii = [erfs[f"enc{level}"].radius95 for level in range(4)]
    assert radii == sorted(radii) and radii[0] < radii[1] < radii[2] < radii[3]
    assert erfs["enc3"].radius50 > erfs["enc1"].radius50


def test_erf_errors():
    net = UNet(depth=2, base_channels=2)
    with pytest.raises(ValueError, match="enc0, enc1, enc2, dec1, dec0, logits"):
        effective_receptive_fields(net, torch.rand(1, 1, 16, 16), keys=["enc3"])
    with pytest.raises(ValueError, match="N >= 1"):
        effective_receptive_fields(net, torch.rand(0, 1, 16, 16))


def test_plots_are_written(random_init_erfs, tmp_path):
    _, erfs = random_init_erfs
    by_label = {"random init": erfs, "again": erfs}
    for path in (
        plot_fields(by_label, (64, 64), tmp_path / "fields.png", "fields"),
        plot_erf_maps(by_label, tmp_path / "maps.png", "maps"),
    ):
        pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
        assert min(pixels.shape) > 300 and pixels.std() > 10
