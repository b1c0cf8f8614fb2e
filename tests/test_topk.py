"""Streaming top-k equals a full sort; crops sit on the unit's receptive field; padding outside the image; the grid
draws each patch on its field with the ground-truth boundary."""

from __future__ import annotations

import matplotlib.colors
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unetlab.explain.pictures import BOUNDARY_COLOURS, OUTSIDE_IMAGE, grid_figure, save_grid
from unetlab.explain.topk import RunningTopK, TopUnits, crop, top_patches, top_units
from unetlab.models.unet import UNet
from unetlab.receptive_field import centre, receptive_fields


def test_running_topk_equals_stable_full_sort():
    generator = torch.Generator().manual_seed(0)
    values = torch.randint(0, 20, (5, 57), generator=generator).float()  # many ties
    position = torch.randint(0, 100, (5, 57), generator=generator)
    full = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :9]
    for batch in (1, 4, 9, 57):
        keeper = RunningTopK(5, k=9)
        for start in range(0, 57, batch):
            stop = min(start + batch, 57)
            keeper.update(values[:, start:stop], torch.arange(start, stop), position[:, start:stop])
        assert torch.equal(keeper.image_index, full)
        assert torch.equal(keeper.values, values.gather(1, full))
        assert torch.equal(keeper.position, position.gather(1, full))


@pytest.mark.parametrize("key", ["enc1", "enc2", "dec0"])
def test_top_units_equal_full_sort_over_data_set(key):
    torch.manual_seed(0)
    net = UNet(depth=2, base_channels=4).double().eval()
    images = torch.rand(23, 1, 16, 16, dtype=torch.float64)
    dataset = TensorDataset(images, torch.zeros(23, 16, 16, dtype=torch.long))
    channels = [0, 2, 3]
    with torch.no_grad():
        feature = net.features(images)[key][:, channels]  # (N, C, h, w)
    best, position = feature.flatten(2).max(dim=2)  # (N, C)
    order = torch.sort(best.T, dim=1, descending=True, stable=True).indices[:, :9]
    for batch_size in (1, 5, 23):
        result = top_units(net, DataLoader(dataset, batch_size=batch_size), {key: channels})[key]
        assert torch.equal(result.image_index, order)
        assert torch.allclose(result.values.double(), best.T.gather(1, order).float().double())
        flat = position.T.gather(1, order)
        width = feature.shape[-1]
        assert torch.equal(result.unit, torch.stack([flat // width, flat % width], dim=-1))


def delta_net(depth: int = 2) -> UNet:
    """Every 3x3 conv passes its input's channel sum through its centre tap; BN is the identity; up-sampling
    copies. A unit then responds to the brightest pixel of the block it sits on (encoder) or to its own pixel
    plus its block's maximum (decoder with skips)."""
    net = UNet(depth=depth, base_channels=1, skips="all")
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
                module.weight.zero_()
                module.weight[:, :, 1, 1] = 1.0
            elif isinstance(module, nn.ConvTranspose2d):
                module.weight.fill_(1.0)
                module.bias.zero_()
    return net.eval()


@pytest.mark.parametrize("key", ["enc1", "enc2", "dec0"])
def test_crop_puts_the_exciting_pixel_in_the_middle(key):
    generator = torch.Generator().manual_seed(3)
    count, size = 12, 32
    images = torch.zeros(count, 1, size, size)
    pixels = torch.randint(0, size, (count, 2), generator=generator)
    for i, (y, x) in enumerate(pixels.tolist()):
        images[i, 0, y, x] = 1.0 + i  # distinct brightness: image i ranks by i
    dataset = TensorDataset(images, torch.zeros(count, size, size, dtype=torch.long))
    net = delta_net()
    result = top_units(net, DataLoader(dataset, batch_size=5), {key: [0]})[key]
    assert result.image_index[0].tolist() == list(range(count - 1, count - 10, -1))
    rf = receptive_fields(net)[key]
    for patch in top_patches(net, dataset, result)[0]:
        y, x = pixels[patch.image_index].tolist()
        y0, y1, x0, x1 = patch.box
        assert patch.image.shape[-2:] == (y1 - y0, x1 - x0)
        bright = torch.nonzero(torch.nan_to_num(patch.image[0]) > 0.5).tolist()
        assert bright == [[y - y0, x - x0]]  # the pixel is in the patch, where the box says
        if key.startswith("enc"):  # the unit sits on a jump x jump block of pixels centred in its field
            cy, cx = centre(patch.box)
            assert abs(y - cy) <= (rf.jump - 1) / 2 and abs(x - cx) <= (rf.jump - 1) / 2
    if key == "dec0":  # through the level-0 skip the winning unit is the bright pixel itself
        assert [tuple(unit) for unit in result.unit[0].tolist()] == [
            tuple(pixels[index].tolist()) for index in result.image_index[0].tolist()
        ]


def test_crop_pads_outside_the_image():
    image = torch.arange(1, 26, dtype=torch.float32).view(1, 5, 5)
    patch = crop(image, (-2, 3, 3, 8), float("nan"))  # rows -2..2, columns 3..7
    assert patch.shape == (1, 5, 5)
    assert torch.isnan(patch[0, :2]).all() and torch.isnan(patch[0, :, 2:]).all()
    assert torch.equal(patch[0, 2:, :2], image[0, 0:3, 3:5])
    mask = torch.ones(5, 5, dtype=torch.long)
    assert (crop(mask, (3, 8, -1, 4), -1) == -1).sum() == 5 * 5 - 2 * 4
    assert torch.isnan(crop(image, (10, 12, 10, 12), float("nan"))).all()  # wholly outside


def outline_edges(rows: range, cols: range, seen: tuple[int, int, int, int]) -> set:
    """Unit pixel edges ((x, y), (x, y)) around the rectangle ``rows`` x ``cols`` whose two pixels both lie in the
    half-open box ``seen`` (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = seen

    def visible(y: int, x: int) -> bool:
        return y0 <= y < y1 and x0 <= x < x1

    edges = set()
    for x in cols:
        for inner, outer in ((rows[0], rows[0] - 1), (rows[-1], rows[-1] + 1)):
            if visible(inner, x) and visible(outer, x):
                edges.add(((x - 0.5, (inner + outer) / 2), (x + 0.5, (inner + outer) / 2)))
    for y in rows:
        for inner, outer in ((cols[0], cols[0] - 1), (cols[-1], cols[-1] + 1)):
            if visible(y, inner) and visible(y, outer):
                edges.add((((inner + outer) / 2, y - 0.5), ((inner + outer) / 2, y + 0.5)))
    return edges


@pytest.fixture(scope="module")
def grid_case():
    """enc2 of a depth-2 U-Net (32 px fields, 4 px apart) on 32 x 32 images with an object at rows 8..19, columns
    10..23 and one in the bottom-right corner (rows 26..31, columns 28..31). Hand-picked top units, whose fields
    span 2..33 along an axis where the unit index is 4 and -14..17 where it is 0: (4, 4) sees both objects whole,
    the others parts of the first one; every field leaves the image somewhere."""
    torch.manual_seed(0)
    net = UNet(depth=2, base_channels=4).eval()
    images = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(3, 32, 32, dtype=torch.long)
    masks[:, 8:20, 10:24] = 1
    masks[:, 26:32, 28:32] = 1
    dataset = TensorDataset(images, masks)
    top = TopUnits(
        key="enc2",
        channels=[0, 3],
        values=torch.tensor([[5.0, 4.0], [3.0, 2.0]]),
        image_index=torch.tensor([[0, 1], [2, 0]]),
        unit=torch.tensor([[[4, 4], [4, 0]], [[0, 4], [0, 0]]]),
    )
    return net, dataset, top


def test_grid_figure_draws_each_patch_on_its_field(grid_case):
    net, dataset, top = grid_case
    rf = receptive_fields(net)["enc2"]
    rows = top_patches(net, dataset, top)
    figure = grid_figure(top, rows, rf, num_classes=2)
    assert len(figure.axes) == 2 * 2  # channels x k
    finite = torch.cat([patch.image[torch.isfinite(patch.image)] for patches in rows for patch in patches])
    low, high = float(finite.min()), float(finite.max())
    for index, ax in enumerate(figure.axes):
        r, c = divmod(index, 2)
        patch = rows[r][c]
        y0, y1, x0, x1 = patch.box
        (image,) = ax.get_images()
        pixels = np.asarray(image.get_array())
        assert pixels.shape == (rf.size, rf.size, 3)  # the whole field, one px per input px
        assert tuple(image.get_extent()) == (x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5)
        # Pixels outside the image in the padding colour, the others the image's grey on one scale for all patches.
        outside = torch.isnan(patch.image[0]).numpy()
        assert outside.any() and not outside.all()
        np.testing.assert_allclose(
            pixels[outside], np.tile(matplotlib.colors.to_rgb(OUTSIDE_IMAGE), (outside.sum(), 1))
        )
        grey = ((patch.image[0].numpy() - low) / (high - low))[~outside]
        np.testing.assert_allclose(pixels[~outside], np.stack([grey] * 3, axis=-1), rtol=1e-6)
        # Every panel spans the key's largest field, centred on the patch.
        cy, cx = centre(patch.box)
        assert ax.get_xlim() == (cx - rf.size / 2, cx + rf.size / 2)
        assert ax.get_ylim() == (cy + rf.size / 2, cy - rf.size / 2)
        assert ax.get_title() == f"{float(top.values[r, c]):.3g} (img {int(top.image_index[r, c])})"
        assert ax.get_ylabel() == (f"channel {top.channels[r]}" if c == 0 else "")
        # The objects' outlines, only where both pixels of an edge are in the patch and the image: the image border
        # is not an object boundary.
        (boundary,) = ax.collections
        drawn = {tuple(map(tuple, segment.tolist())) for segment in boundary.get_segments()}
        seen = (max(y0, 0), min(y1, 32), max(x0, 0), min(x1, 32))
        assert drawn == outline_edges(range(8, 20), range(10, 24), seen) | outline_edges(
            range(26, 32), range(28, 32), seen
        )
        assert (
            len(drawn)
            == {
                (2, 34, 2, 34): 2 * 14 + 2 * 12 + 4 + 6,  # the first outline, the corner object's top and left
                (2, 34, -14, 18): 8 + 8 + 12,  # the first object's top, bottom and left, cut at column 17
                (-14, 18, 2, 34): 14 + 10 + 10,  # the first object's top, left and right, cut at row 17
                (-14, 18, -14, 18): 8 + 10,  # the first object's top and left
            }[patch.box]
        )
        np.testing.assert_allclose(boundary.get_colors(), [matplotlib.colors.to_rgba(BOUNDARY_COLOURS[0])])
    (suptitle,) = figure.texts
    assert suptitle.get_text().startswith(
        "enc2: top-2 patches per channel, each the unit's receptive field (32 px side, units 4 px apart)"
    )


def test_save_grid_writes_the_top_units_grid(grid_case, tmp_path):
    net, dataset, _ = grid_case
    result = top_units(net, DataLoader(dataset, batch_size=2), {"enc2": [0, 1, 2]}, k=3)["enc2"]
    path = save_grid(net, dataset, result, tmp_path / "grid.png")
    assert path == tmp_path / "grid.png"
    figure = grid_figure(result, top_patches(net, dataset, result), receptive_fields(net)["enc2"], num_classes=2)
    assert len(figure.axes) == 3 * 3
    assert Image.open(path).size == tuple(round(inches * 100) for inches in figure.get_size_inches())


def test_channel_errors():
    net = UNet(depth=2, base_channels=4)
    loader = DataLoader(TensorDataset(torch.rand(2, 1, 16, 16), torch.zeros(2, 16, 16)), batch_size=2)
    with pytest.raises(ValueError, match="enc0 has 4 channels"):
        top_units(net, loader, {"enc0": [0, 4]})
    with pytest.raises(ValueError, match="enc0, enc1, enc2, dec1, dec0, logits"):
        top_units(net, loader, {"enc7": [0]})
