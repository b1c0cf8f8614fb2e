"""Effective receptive fields: mass radii, zero gradient outside the theoretical field, growth with depth; the
pictures draw those numbers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image

from unetlab.erf import effective_receptive_fields, mass_radius
from unetlab.explain.pictures import erf_maps_figure, fields_figure, plot_erf_maps, plot_fields
from unetlab.models.unet import UNet
from unetlab.receptive_field import centre, receptive_fields


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
    # Not square, so that a picture mixing up y and x shows.
    images = torch.rand(4, 1, 64, 48, generator=torch.Generator().manual_seed(1))
    erfs = effective_receptive_fields(net, images, batch_size=3)
    assert net.training
    return net, erfs


def test_erf_radii_against_theory(random_init_erfs):
    net, erfs = random_init_erfs
    assert list(erfs) == net.feature_keys
    for key, erf in erfs.items():
        y0, y1, x0, x1 = erf.box
        box_centre = centre(erf.box)
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


@pytest.fixture(scope="module")
def two_labels(random_init_erfs):
    """The random-init ERFs and a copy with other radii, so that each label's lines can be told apart."""
    _, erfs = random_init_erfs
    other = {
        key: dataclasses.replace(erf, radius50=erf.radius50 + 1, radius95=erf.radius95 + 2) for key, erf in erfs.items()
    }
    return {"random init": erfs, "other": other}


def test_fields_figure_draws_theoretical_and_effective_sizes(random_init_erfs, two_labels):
    net, _ = random_init_erfs
    figure = fields_figure(two_labels, (64, 48), "fields of a depth-3 net")
    (ax,) = figure.axes
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert lines["theoretical (largest)"] == [rf.size for rf in receptive_fields(net).values()]
    for label, erfs in two_labels.items():
        assert lines[f"effective 95%, {label}"] == [2 * erf.radius95 + 1 for erf in erfs.values()]
        assert lines[f"effective 50%, {label}"] == [2 * erf.radius50 + 1 for erf in erfs.values()]
    assert lines["image side (64 px): ERFs clip here"] == [64, 64]  # the longer side
    assert len(lines) == 1 + 2 * len(two_labels) + 1
    assert [label.get_text() for label in ax.get_xticklabels()] == net.feature_keys
    assert [text.get_text() for text in ax.get_legend().get_texts()] == list(lines)
    assert ax.get_yscale() == "log"
    assert ax.get_title() == "fields of a depth-3 net"


def test_erf_maps_figure_draws_each_map_with_its_box_and_squares(random_init_erfs, two_labels):
    net, _ = random_init_erfs
    figure = erf_maps_figure(two_labels, "maps")
    *panels, colour_bar = figure.axes
    keys = net.feature_keys
    assert len(panels) == len(two_labels) * len(keys)  # one row per label, one column per key
    for index, ax in enumerate(panels):
        label, key = list(two_labels)[index // len(keys)], keys[index % len(keys)]
        erf = two_labels[label][key]
        (image,) = ax.get_images()
        np.testing.assert_allclose(image.get_array(), erf.grad_map / erf.grad_map.max())
        assert ax.get_title() == f"{key} ({erf.theoretical.size} px)\nr50 {erf.radius50:g}, r95 {erf.radius95:g} px"
        box, square95, square50 = ax.patches
        y0, y1, x0, x1 = erf.box
        assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == (x0 - 0.5, y0 - 0.5, x1 - x0, y1 - y0)
        for square, radius in ((square95, erf.radius95), (square50, erf.radius50)):
            side = 2 * radius + 1  # pixel edges: the square covers the pixels within Chebyshev radius ``radius``
            assert square.get_width() == square.get_height() == side
            assert (square.get_y() + side / 2, square.get_x() + side / 2) == erf.centre
        assert ax.get_ylabel().startswith(label) == (index % len(keys) == 0)
    assert colour_bar.get_ylabel() == "mean |∂unit/∂input| / max"
    assert "maps" in [text.get_text() for text in figure.texts]


def test_plots_are_written_at_the_figure_size(two_labels, tmp_path):
    fields_path = plot_fields(two_labels, (64, 48), tmp_path / "fields.png", "fields")
    maps_path = plot_erf_maps(two_labels, tmp_path / "maps.png", "maps")
    assert (fields_path, maps_path) == (tmp_path / "fields.png", tmp_path / "maps.png")
    for path, figure, dpi in (
        (fields_path, fields_figure(two_labels, (64, 48), "fields"), 110),
        (maps_path, erf_maps_figure(two_labels, "maps"), 100),
    ):
        assert Image.open(path).size == tuple(round(inches * dpi) for inches in figure.get_size_inches())


def test_erf_rows_measure_every_encoder_key_unclipped_trained_and_at_init():
    from unetlab.bootstrap import resample_indices
    from unetlab.erf import mass_radius
    from unetlab.evaluation.erf_rows import canvas_side, chebyshev_rings, erf_rows, mass_radii, mirror_canvas
    from unetlab.receptive_field import receptive_fields

    torch.manual_seed(0)
    maps = torch.rand(3, 21, 21)
    for middle in ((10.0, 10.0), (9.5, 10.5), (2.0, 17.0)):
        rings, ring = chebyshev_rings((21, 21), middle)
        masses = torch.zeros(3, len(rings), dtype=torch.float64).index_add_(1, ring, maps.flatten(1).double())
        for fraction in (0.5, 0.95):  # the ring sums give mass_radius of the summed map
            assert float(mass_radii(rings, masses.sum(0), fraction)) == mass_radius(maps.sum(0), middle, fraction)
    image = torch.arange(12.0).view(1, 1, 3, 4)
    canvas = mirror_canvas(image, 9)
    assert torch.equal(canvas[..., 3:6, 2:6], image)  # the image in the middle
    assert torch.equal(canvas[..., 2, 2:6], image[..., 0, :]) and torch.equal(canvas[..., 3:6, 1], image[..., :, 0])

    net, init = UNet(1, 2, depth=3, base_channels=4).eval(), UNet(1, 2, depth=3, base_channels=4).eval()
    side = canvas_side(net, 32)
    assert side % 8 == 0 and side >= receptive_fields(net)["enc3"].size + 32
    rows = erf_rows(net, init, torch.rand(4, 1, 32, 32), resample_indices(4, 50, seed=0))
    table = {(r["source"], r["metric"]): r for r in rows}
    fields = receptive_fields(net)
    for source in ("erf", "erf_init"):
        for level in range(4):
            key = f"{source}/enc{level}"
            size, theoretical = table[(key, "size95")], table[(key, "theoretical")]
            assert theoretical["value"] == fields[f"enc{level}"].size
            assert 1 <= table[(key, "size50")]["value"] <= size["value"] <= theoretical["value"] + 1
            assert size["ci_low"] <= size["value"] <= size["ci_high"] and size["unit"] == "px"
    # deeper keys see more: the ERF grows along the encoder
    sizes = [table[(f"erf/enc{level}", "size95")]["value"] for level in range(4)]
    assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0]
