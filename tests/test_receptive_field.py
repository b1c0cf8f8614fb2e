"""The theoretical receptive field equals the field measured by perturbing the input.

Measurement: a float64 U-Net with every weight, bias and BatchNorm scale positive (running statistics random, eval
mode) fed a positive image never has a ReLU that cuts a path, and a huge perturbation of an input row (1e100) wins
every max-pool window it reaches, so the rows whose perturbation changes a unit are exactly the rows its field
covers. (Gradients would miss max-pool inputs that are not the max, and ReLU zeros would hide paths.) Perturbing
whole rows measures the field along the rows; the transposed image measures it along the columns.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetlab.models.unet import UNet
from unetlab.receptive_field import RF, centre, field_functions, path_fields, receptive_fields, unit_field

PERTURBATION = 1e100


def positive_net(depth: int, skips, base_channels: int = 2, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    net = UNet(in_channels=1, num_classes=2, depth=depth, base_channels=base_channels, skips=skips).double()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                module.weight.uniform_(0.5, 1.0)
                if module.bias is not None:
                    module.bias.uniform_(0.1, 0.2)
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(0.1, 0.2)
                module.running_mean.uniform_(-0.2, 0.0)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()


def measured_row_fields(net: UNet, height: int, width: int) -> dict[str, list[tuple[int, int]]]:
    """For every key, every unit row u at the middle unit column: (first, last) input row that changes it."""
    image = torch.rand(1, 1, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    batch = image.repeat(height + 1, 1, 1, 1)
    for row in range(height):
        batch[row + 1, 0, row, :] += PERTURBATION
    with torch.no_grad():
        features = net.features(batch)
    fields = {}
    for key, feature in features.items():
        column = feature[:, :, :, feature.shape[-1] // 2]  # (height + 1, C, h)
        changed = ((column[1:] - column[:1]).abs() > 1e-3 * column[:1].abs()).any(dim=1)  # (height, h): row, unit
        spans = []
        for unit in range(changed.shape[1]):
            rows = torch.nonzero(changed[:, unit]).flatten().tolist()
            assert rows == list(range(rows[0], rows[-1] + 1)), f"{key} unit {unit}: field has holes {rows}"
            spans.append((rows[0], rows[-1]))
        fields[key] = spans
    return fields


CASES = [(1, "all"), (1, "none"), (2, "all"), (2, [1]), (3, "all"), (3, "none"), (3, [0]), (3, [1, 2])]


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("depth,skips", CASES)
def test_field_matches_perturbation(depth, skips, axis):
    net = positive_net(depth, skips)
    long_side, short_side = 128, 2 * 2**depth
    if axis == 0:
        measured = measured_row_fields(net, long_side, short_side)
    else:  # measure columns: transpose the problem by feeding a wide image and reading rows of the transposed maps
        net_t = _TransposedView(net)
        measured = measured_row_fields(net_t, long_side, short_side)
    fields = receptive_fields(net)
    assert list(fields) == net.feature_keys
    for key, spans in measured.items():
        interior_sizes = set()
        for unit, (first, last) in enumerate(spans):
            y0, y1, x0, x1 = unit_field(net, key, unit, 0) if axis == 0 else unit_field(net, key, 0, unit)
            lo, hi = (y0, y1) if axis == 0 else (x0, x1)
            assert (first, last) == (max(lo, 0), min(hi, long_side) - 1), f"{key} unit {unit}"
            if lo >= 0 and hi <= long_side:
                interior_sizes.add(last - first + 1)
        assert interior_sizes, f"{key}: no unit has its whole field inside the {long_side}px test image"
        assert max(interior_sizes) == fields[key].size, key


class _TransposedView(nn.Module):
    """Runs ``net`` on the transposed image and transposes every feature back, so rows measure columns."""

    def __init__(self, net: UNet):
        super().__init__()
        self.net = net

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {key: value.transpose(-1, -2) for key, value in self.net.features(x.transpose(-1, -2)).items()}


def test_field_is_computed_from_the_layers():
    """A dilated first conv and a 4x4 pool change the field; the walk over the modules picks both up."""
    net = positive_net(2, "all")
    with torch.no_grad():
        net.encoder[0].layers[0] = nn.Conv2d(1, 2, kernel_size=3, padding=2, dilation=2, bias=False).double()
        net.encoder[0].layers[0].weight.uniform_(0.5, 1.0)
    before = receptive_fields(positive_net(2, "all"))
    after = receptive_fields(net)
    assert after["enc0"].size == before["enc0"].size + 2
    measured = measured_row_fields(net, 128, 8)
    for key, spans in measured.items():
        for unit, (first, last) in enumerate(spans):
            y0, y1, _, _ = unit_field(net, key, unit, 0)
            assert (first, last) == (max(y0, 0), min(y1, 128) - 1), f"{key} unit {unit}"


def test_known_values_depth3():
    net = UNet(depth=3, base_channels=2)
    fields = receptive_fields(net)
    assert fields["enc0"] == RF(5, 1, 0.0)
    assert fields["enc1"] == RF(14, 2, 0.5)
    assert fields["enc3"].jump == 8 and fields["dec0"].jump == 1
    assert fields["dec0"].size == 100  # SPEC: 92 or 100 px by position at dec0 of a depth-3 net; the largest
    sizes = [y1 - y0 for y0, y1, _, _ in (unit_field(net, "dec0", unit, 0) for unit in range(8))]
    assert sizes == [92, 92, 100, 100, 100, 100, 92, 92]  # one period of positions (docs/receptive-fields.md)


@pytest.mark.parametrize("depth,skips", [(2, "all"), (3, [1]), (4, "none"), (4, "all")])
def test_start_jump_and_period(depth, skips):
    net = UNet(depth=depth, base_channels=2, skips=skips)
    for key, rf in receptive_fields(net).items():
        assert centre(unit_field(net, key, 0, 0)) == (rf.start, rf.start)
        period = 2**depth
        for unit in range(period):
            y0, y1, x0, x1 = unit_field(net, key, unit, unit)
            assert (y0, y1) == (x0, x1)
            assert y1 - y0 <= rf.size
            shifted = unit_field(net, key, unit + period, unit)
            assert shifted == (y0 + period * rf.jump, y1 + period * rf.jump, x0, x1)
        if key.startswith("enc"):  # one path, no up-sampling: the field does not depend on the position
            assert centre(unit_field(net, key, 3, 5)) == (rf.start + 3 * rf.jump, rf.start + 5 * rf.jump)


@pytest.mark.parametrize("depth", [4, 5, 6])
@pytest.mark.parametrize("skips", ["all", "none", [0]])
def test_sizes_grow_with_depth(depth, skips):
    fields = receptive_fields(UNet(depth=depth, base_channels=2, skips=skips))
    sizes = [rf.size for rf in fields.values()]
    assert sizes == sorted(sizes)
    encoder = [fields[f"enc{level}"].size for level in range(depth + 1)]
    assert all(a < b for a, b in zip(encoder, encoder[1:], strict=False))
    assert [fields[f"enc{level}"].jump for level in range(depth + 1)] == [2**level for level in range(depth + 1)]
    assert all(fields[f"dec{level}"].jump == 2**level for level in range(depth))


def test_errors():
    net = UNet(depth=2, base_channels=2)
    with pytest.raises(KeyError, match="enc0, enc1, enc2, dec1, dec0, logits"):
        unit_field(net, "enc5", 0, 0)
    net.encoder[1].down = nn.Upsample(scale_factor=2)
    with pytest.raises(TypeError, match="Upsample"):  # receptive_fields would measure it instead (measured_field)
        field_functions(net, 0)


@pytest.mark.parametrize(("depth", "skips"), [(2, "all"), (3, [0, 2]), (3, "none")])
def test_the_hull_of_the_path_fields_is_the_unit_field(depth, skips):
    """Per path fields (the explorer draws them): their hull is unit_field's exact box for every unit; a decoder key
    has the bottleneck path and one path per kept skip at or above its level, an encoder key the input alone."""
    net = UNet(in_channels=1, num_classes=2, depth=depth, base_channels=2, skips=skips)
    size = (32, 32)
    for key in net.feature_keys:
        paths = path_fields(net, key, size)
        level = 0 if key == "logits" else int(key[3:])
        if key.startswith("enc"):
            assert list(paths) == ["input"]
        else:
            assert set(paths) == {"bottleneck"} | {f"skip {s}" for s in net.skip_levels if s >= level}
        for u in range(0, size[0] >> level, 3):
            for v in range(0, size[1] >> level, 5):
                y0 = min(rows[u][0] for rows, _ in paths.values())
                y1 = max(rows[u][1] for rows, _ in paths.values()) + 1
                x0 = min(cols[v][0] for _, cols in paths.values())
                x1 = max(cols[v][1] for _, cols in paths.values()) + 1
                assert (y0, y1, x0, x1) == unit_field(net, key, u, v), (key, u, v)
