"""Top-9 input patches per unit (Zeiler & Fergus, 2014): which image regions excite a channel most.

One streaming pass over a data set keeps, for every chosen channel of a feature key, the ``k`` highest activations
seen so far (``RunningTopK``: each batch's candidates are merged with the kept ones by a stable sort, so memory is
``O(channels * (k + batch))`` and never holds all activations). A channel's candidate in an image is its maximum over
all spatial positions in that image (one patch per image, the classic choice, so the nine patches come from nine
different images); ties go to the earlier image. Each winner is cropped from its input image by the exact receptive
field of that unit (``unit_field``), padded where the field leaves the image; ``unetlab.explain.pictures`` draws
the patches with the ground-truth boundary on top.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from unetlab.erf import eval_mode
from unetlab.models import protocol
from unetlab.models.protocol import UNetLike
from unetlab.receptive_field import unit_field


def key_channels(net: UNetLike, key: str) -> int:
    """Number of channels of feature ``key``."""
    protocol.check_key(net, key)
    return net.channels(key)


def forward_to(net: UNetLike, x: Tensor, keys: Iterable[str]) -> dict[str, Tensor]:
    """The feature maps ``keys`` of ``x``; runs only the encoder when every key is an encoder key."""
    keys = list(keys)
    if all(key.startswith("enc") for key in keys):
        last_level = max(int(key.removeprefix("enc")) for key in keys)
        features = protocol.feature_maps(protocol.encode(net, x, up_to=last_level))
    else:
        features = protocol.features(net, x)
    return {key: features[key] for key in keys}


class RunningTopK:
    """The ``k`` largest values per channel seen so far, with the image index and unit position of each.

    ``update(values, image_index, position)``: values (C, n), image_index (n,), position (C, n) flat unit index.
    Merging is a stable descending sort of kept + new candidates, so ties keep the earlier one.
    """

    def __init__(self, num_channels: int, k: int = 9):
        self.k = k
        self.values = torch.empty(num_channels, 0)
        self.image_index = torch.empty(num_channels, 0, dtype=torch.long)
        self.position = torch.empty(num_channels, 0, dtype=torch.long)

    def update(self, values: Tensor, image_index: Tensor, position: Tensor) -> None:
        values = torch.cat([self.values, values.float().cpu()], dim=1)
        image_index = torch.cat([self.image_index, image_index.cpu().expand(len(values), -1)], dim=1)
        position = torch.cat([self.position, position.cpu()], dim=1)
        order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, : self.k]
        self.values = values.gather(1, order)
        self.image_index = image_index.gather(1, order)
        self.position = position.gather(1, order)


@dataclass
class TopUnits:
    """The top-k units of some channels of one feature key over a data set.

    values (C, k); image_index (C, k) into the data set; unit (C, k, 2) as (y, x) in the feature map ((C, k, 3) as
    (z, y, x) for volumes).
    """

    key: str
    channels: list[int]
    values: Tensor
    image_index: Tensor
    unit: Tensor


def top_units(
    net: UNetLike,
    loader: Iterable[tuple[Tensor, Tensor]],
    channels: Mapping[str, Sequence[int]],
    k: int = 9,
    progress: bool = False,
) -> dict[str, TopUnits]:
    """One pass over ``loader`` (not shuffled: image i of the data set is the i-th image it yields) keeping the
    ``k`` units with the highest activation per chosen channel of each key, one candidate per image.

    ``channels`` maps a feature key to the channel indices to follow.
    """
    for key, chosen in channels.items():
        check_channels(net, key, chosen)
    keepers = {key: RunningTopK(len(chosen), k) for key, chosen in channels.items()}
    index_by_key = {key: torch.as_tensor(list(chosen), dtype=torch.long) for key, chosen in channels.items()}
    shapes: dict[str, tuple[int, ...]] = {}
    seen = 0
    device = next(net.parameters()).device
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc=f"top-{k} {', '.join(channels)}", unit="batch")
    with eval_mode(net), torch.inference_mode():
        for images, *_ in loader:
            features = forward_to(net, images.to(device), channels)
            batch_index = torch.arange(seen, seen + len(images))
            for key, feature in features.items():
                chosen = feature[:, index_by_key[key].to(feature.device)]  # (B, C, h, w) or (B, C, d, h, w)
                shapes[key] = tuple(chosen.shape[2:])
                best, position = chosen.flatten(2).max(dim=2)  # (B, C): spatial max per image and channel
                keepers[key].update(best.T, batch_index, position.T)
            seen += len(images)
    out = {}
    for key, keeper in keepers.items():
        unit = torch.stack(torch.unravel_index(keeper.position, shapes[key]), dim=-1)
        out[key] = TopUnits(key, list(channels[key]), keeper.values, keeper.image_index, unit)
    return out


def check_channels(net: UNetLike, key: str, channels: Sequence[int]) -> None:
    """Raise a clear error for channel indices the key does not have."""
    available = key_channels(net, key)
    bad = [channel for channel in channels if not 0 <= int(channel) < available]
    if bad or not channels:
        raise ValueError(
            f"{key} has {available} channels (0..{available - 1}), but channel(s) {bad or 'none'} were asked for; "
            f"use viz.channels <= {available} or a list of indices"
        )


def crop(tensor: Tensor, box: tuple[int, int, int, int], fill: float) -> Tensor:
    """``tensor[..., y0:y1, x0:x1]`` with ``fill`` where the half-open box leaves the (H, W) of ``tensor``."""
    y0, y1, x0, x1 = box
    height, width = tensor.shape[-2:]
    out = torch.full((*tensor.shape[:-2], y1 - y0, x1 - x0), fill, dtype=tensor.dtype)
    top, bottom, left, right = max(y0, 0), min(y1, height), max(x0, 0), min(x1, width)
    if top < bottom and left < right:
        out[..., top - y0 : bottom - y0, left - x0 : right - x0] = tensor[..., top:bottom, left:right]
    return out


@dataclass
class Patch:
    """A unit's receptive field cut from its image: image (C, h, w) NaN outside the image, mask (h, w) with -1
    outside, box (y0, y1, x0, x1) in image coordinates, and the activation value. Volumes: the field cut from the
    slice through its centre, ``depth`` (that slice's index)."""

    image: Tensor
    mask: Tensor
    box: tuple[int, int, int, int]
    value: float
    image_index: int
    depth: int | None = None


def top_patches(net: UNetLike, dataset, top: TopUnits) -> list[list[Patch]]:
    """Crop every top unit's receptive field from its image and mask: one list of k patches per channel."""
    rows = []
    for row in range(len(top.channels)):
        patches = []
        for col in range(top.values.shape[1]):
            index = int(top.image_index[row, col])
            image, mask = dataset[index][:2]
            *z, y, x = (int(v) for v in top.unit[row, col])
            depth = None
            if z:  # a volume: the slice through the centre of the unit's field along z (same arithmetic as y)
                z0, z1 = unit_field(net, top.key, z[0], z[0])[:2]
                depth = min(max((z0 + z1 - 1) // 2, 0), mask.shape[0] - 1)
                image, mask = image[:, depth], mask[depth]
            box = unit_field(net, top.key, y, x)
            value = float(top.values[row, col])
            patches.append(Patch(crop(image.float(), box, float("nan")), crop(mask, box, -1), box, value, index, depth))
        rows.append(patches)
    return rows
