"""Depth probes (``docs/probes-and-floors.md``): a 1x1 convolution per feature key, trained on frozen features.

The probe at key ``k`` (level ``i``) maps the standardised level-``i`` features to class logits, which are
bilinearly upsampled from ``H/2**i`` to full resolution before the loss and before scoring. All probes train
together on the same images, steps and seed. The network is frozen, so its features never change: it runs once
over a seeded pool of training images, and the probes' steps draw their batches from those cached features
(a forward pass per step would cost the whole network ``steps`` times over for the same numbers).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, default_collate
from tqdm.auto import tqdm

from unetlab.conventions import feature_keys
from unetlab.evaluation.floors import read_out
from unetlab.models.unet import UNet
from unetlab.training.task import soft_dice_loss


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

    def standardise(self, features: Tensor) -> Tensor:
        return (features - self.mean) / self.std

    def forward(self, features: Tensor, size: Sequence[int], standardised: bool = False) -> Tensor:
        logits = self.conv(features if standardised else self.standardise(features))
        return read_out(logits, tuple(size))  # bilinear, as the floors read out (the identity at level 0)


def _pool(dataset: Dataset, size: int, seed: int) -> list[int]:
    """A seeded sample of ``size`` distinct training indices (all of them if the split is smaller)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(len(dataset), generator=generator)[:size].tolist()


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
    pool: int = 64,
) -> nn.ModuleDict:
    """Train one ``LinearProbe`` per probe key on ``net``'s frozen features (cross-entropy + soft Dice as the network,
    Adam, cosine lr).

    ``pool`` training images (seeded) go through the network once; the ``steps`` steps walk through them in that
    seeded order, ``batch_size`` at a time (slices of the cache: no copies). Features are standardised once, with
    the pool's per-channel statistics.
    Returns a ModuleDict key -> LinearProbe, in eval mode. Deterministic for a given ``seed``.
    """
    torch.manual_seed(seed)
    net = net.eval().to(device)
    keys = feature_keys(net.depth, logits=False)  # every key but the logits
    indices = _pool(dataset, pool, seed)
    cached: dict[str, list[Tensor]] = {key: [] for key in keys}
    pool_masks = []
    with torch.no_grad():
        for chunk in tqdm(range(0, len(indices), batch_size), desc="probe features", disable=not progress, leave=False):
            images, masks = default_collate([dataset[i] for i in indices[chunk : chunk + batch_size]])
            features = net.features(images.to(device))
            for key in keys:
                cached[key].append(features[key].contiguous())  # (b, C_k, H/2**i, W/2**i)
            pool_masks.append(masks.to(device))
    features = {key: torch.cat(parts) for key, parts in cached.items()}  # (pool, C_k, h_k, w_k)
    masks = torch.cat(pool_masks)  # (pool, H, W)

    probes = nn.ModuleDict({key: LinearProbe(features[key].shape[1], num_classes) for key in keys}).to(device)
    for key in keys:
        probes[key].set_statistics(features[key])
        features[key] = probes[key].standardise(features[key])
    optimizer = torch.optim.Adam(probes.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    starts = list(range(0, len(masks), batch_size))
    for step in tqdm(range(steps), desc="probes", disable=not progress, leave=False):
        batch = slice(starts[step % len(starts)], starts[step % len(starts)] + batch_size)
        target = masks[batch]
        size = target.shape[-2:]
        # (P, B, K, H, W): every key's prediction of the same batch, scored in one call. The sum over keys of each
        # key's cross-entropy (a mean over the same valid pixels) + (1 - soft Dice): the networks' own loss per key.
        # Cross-entropy alone lets weak features collapse to all-background (docs/probes-and-floors.md).
        logits = torch.stack([probes[key](features[key][batch], size, standardised=True) for key in keys])
        ce = F.cross_entropy(logits.flatten(0, 1), target.repeat(len(keys), 1, 1), ignore_index=ignore_index)
        loss = len(keys) * ce + soft_dice_loss(logits, target, ignore_index).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
    return probes.eval()
