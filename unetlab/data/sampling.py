"""Which items each process sees: ``EpochShuffle`` for training, ``UnpaddedShards`` for evaluation under DDP.

Training order and augmentation are functions of ``(seed, epoch, index)``, so a resumed run is the same run.

PyTorch's ``RandomSampler`` and transforms that draw from the global generator depend on how many numbers the
process has drawn before; a run resumed from ``last.ckpt`` in a fresh process would then see other batches and other
flips than the run it replaces. ``EpochShuffle`` instead permutes the split with a generator seeded by
``(seed, epoch)`` and hands each item its own augmentation seed ``f(seed, epoch, index)``: the item key is the pair
``(index, item_seed)``, which the data sets read with ``split_key``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

ItemKey = int | tuple[int, int]


def split_key(key: ItemKey) -> tuple[int, torch.Generator | None]:
    """An item key -> (index, generator of its augmentation); a plain index (evaluation) has no generator,
    and then augmentation, if any, draws from torch's global generator."""
    if isinstance(key, tuple):
        index, item_seed = key
        return int(index), torch.Generator().manual_seed(int(item_seed))
    return int(key), None


def process_rank_and_count() -> tuple[int, int]:
    """(rank, world size) of this process in the DDP process group, (0, 1) without one. Read when iterating, in the
    worker: ``ddp_spawn`` pickles the loaders before the process group exists."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochShuffle(DistributedSampler):
    """Shuffled training keys ``(index, item_seed)``, a pure function of ``(seed, epoch)``.

    Lightning calls ``set_epoch`` before every epoch, also when a run resumes. Under DDP rank ``r`` of ``W`` takes
    every ``W``-th key of the padded permutation (padded with its first keys, as ``DistributedSampler`` does, so every
    rank runs the same number of steps); rank and world size are read when iterating, because ``ddp_spawn`` pickles
    the loader before the process group exists. Being a ``DistributedSampler``, Lightning leaves it in place.
    """

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:  # no super().__init__(): it wants the group now
        self.dataset = dataset
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _world(self) -> tuple[int, int]:
        return process_rank_and_count()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        size = len(self.dataset)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(size)
        rank, world = self._world()
        if world > 1:
            order = np.resize(order, -(-size // world) * world)[rank::world]  # np.resize repeats from the start
        seeds = np.random.SeedSequence([self.seed, self.epoch]).generate_state(size, dtype=np.uint64)
        for index in order:
            yield int(index), int(seeds[index] >> np.uint64(1))  # 63 bits: torch's manual_seed takes int64

    def __len__(self) -> int:
        _, world = self._world()
        return -(-len(self.dataset) // world)


class UnpaddedShards(DistributedSampler):
    """This process's share of an evaluation split, with every image in exactly one process.

    Lightning's DistributedSampler pads a split with repeated images up to a multiple of the world size, and those
    would count twice in the metrics; here the shards are uneven instead (rank ``r`` of ``W`` takes images ``r, r+W,
    ...``). Rank and world size are read when iterating, in the worker: ``ddp_spawn`` pickles the loader before the
    process group exists. Being a DistributedSampler, Lightning leaves it in place. One process: the whole split.
    """

    def __init__(self, dataset: Dataset) -> None:  # no super().__init__(): it wants the process group now
        self.dataset = dataset
        self.epoch = 0

    def _indices(self) -> range:
        rank, world = process_rank_and_count()
        return range(rank, len(self.dataset), world)

    def __iter__(self):
        return iter(self._indices())

    def __len__(self) -> int:
        return len(self._indices())


def unpadded(loader: DataLoader) -> DataLoader:
    """``loader`` (unshuffled) with ``UnpaddedShards`` as its sampler."""
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=UnpaddedShards(loader.dataset),
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        persistent_workers=loader.persistent_workers,
        collate_fn=loader.collate_fn,
    )
