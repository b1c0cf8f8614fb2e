"""Streaming top-k equals a full sort; crops sit on the unit's receptive field; padding outside the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from unetlab.explain.receptive_field import centre, receptive_fields, unit_field
from unetlab.explain.topk import RunningTopK, crop, save_grid, top_patches, top_units
from unetlab.models.unet import UNet


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


def test_grid_png(tmp_path):
    torch.manual_seed(0)
    net = UNet(depth=2, base_channels=4).eval()
    images = torch.rand(12, 1, 32, 32)
    masks = torch.zeros(12, 32, 32, dtype=torch.long)
    masks[:, 8:20, 10:24] = 1
    dataset = TensorDataset(images, masks)
    result = top_units(net, DataLoader(dataset, batch_size=4), {"enc2": [0, 1, 2]})["enc2"]
    path = save_grid(net, dataset, result, tmp_path / "grid.png")
    pixels = np.asarray(Image.open(path).convert("RGB"))
    assert pixels.shape[0] > 300 and pixels.shape[1] > 800
    assert pixels.std() > 10
    green = (pixels[..., 1] > 200) & (pixels[..., 0] < 120) & (pixels[..., 2] < 120)
    assert green.sum() > 100  # the ground-truth boundary is drawn
    assert unit_field(net, "enc2", 0, 0)[1] - unit_field(net, "enc2", 0, 0)[0] == receptive_fields(net)["enc2"].size


def test_channel_errors():
    net = UNet(depth=2, base_channels=4)
    loader = DataLoader(TensorDataset(torch.rand(2, 1, 16, 16), torch.zeros(2, 16, 16)), batch_size=2)
    with pytest.raises(ValueError, match="enc0 has 4 channels"):
        top_units(net, loader, {"enc0": [0, 4]})
    with pytest.raises(ValueError, match="enc0, enc1, enc2, dec1, dec0, logits"):
        top_units(net, loader, {"enc7": [0]})
