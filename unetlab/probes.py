"""Depth probes (SPEC section 6): a 1x1 convolution per feature key, trained on frozen features.

The probe at key ``k`` (level ``i``) maps the standardised level-``i`` features to class logits, which are
bilinearly upsampled from ``H/2**i`` to full resolution before the loss and before scoring. All probes train
together from one frozen forward pass per batch: same images, same steps, same seed for every key.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from unetlab.models.unet import UNet


def probe_keys(net: UNet) -> list[str]:
    """Every feature key with a probe: enc0..encD, dec{D-1}..dec0 (not the logits)."""
    return [key for key in net.feature_keys if key != "logits"]


def key_level(key: str) -> int:
    """``"enc2"`` / ``"dec2"`` -> 2."""
    return int(key[3:])


class LinearProbe(nn.Module):
    """Standardise channels, 1x1 conv, bilinear upsampling: (B, C, h, w) -> logits (B, K, H, W)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("std", torch.ones(1, channels, 1, 1))
        self.conv = nn.Conv2d(channels, num_classes, kernel_size=1)

    def set_statistics(self, features: Tensor) -> None:
        """Per-channel mean and std of a feature batch (B, C, h, w)."""
        self.mean.copy_(features.mean(dim=(0, 2, 3), keepdim=True))
        self.std.copy_(features.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6))

    def forward(self, features: Tensor, size: Sequence[int]) -> Tensor:
        logits = self.conv((features - self.mean) / self.std)
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def _batches(dataset: Dataset, batch_size: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, replacement=True, num_samples=10**9, generator=generator)
    yield from DataLoader(dataset, batch_size=batch_size, sampler=sampler)


def train_probes(
    net: UNet,
    dataset: Dataset,
    num_classes: int,
    steps: int = 200,
    batch_size: int = 16,
    lr: float = 0.05,
    seed: int = 0,
    ignore_index: int = 255,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> nn.ModuleDict:
    """Train one ``LinearProbe`` per probe key on ``net``'s frozen features (cross-entropy, Adam).

    Returns a ModuleDict key -> LinearProbe, in eval mode. Deterministic for a given ``seed``.
    """
    torch.manual_seed(seed)
    net = net.eval().to(device)
    keys = probe_keys(net)
    batches = _batches(dataset, batch_size, seed)
    images, _ = next(batches)
    with torch.no_grad():
        features = net.features(images.to(device))
    probes = nn.ModuleDict({key: LinearProbe(features[key].shape[1], num_classes) for key in keys}).to(device)
    for key in keys:
        probes[key].set_statistics(features[key])
    optimizer = torch.optim.Adam(probes.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    for _ in tqdm(range(steps), desc="probes", disable=not progress, leave=False):
        images, masks = next(batches)
        images, masks = images.to(device), masks.to(device)
        with torch.no_grad():
            features = net.features(images)
        loss = sum(
            F.cross_entropy(probes[key](features[key], masks.shape[-2:]), masks, ignore_index=ignore_index)
            for key in keys
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return probes.eval()
