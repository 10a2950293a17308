"""Seeds derived from (run seed, epoch, item) so that data order and augmentations are a
pure function of position: a resumed run draws exactly what an uninterrupted one would."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Iterator, Sized
from itertools import islice
from typing import Any

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class EpochSampler(torch.utils.data.Sampler):
    """Yields (epoch, index) pairs of a seeded per-epoch permutation, from position `start`."""

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0, limit: int | None = None) -> None:
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start
        self.limit = n if limit is None else limit

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        order = torch.randperm(self.n, generator=g)[self.start:self.limit].tolist()
        return ((self.epoch, i) for i in order)

    def __len__(self) -> int:
        return max(0, self.limit - self.start)


class RunSampler(torch.utils.data.Sampler):
    """The (epoch, index) pairs of a whole run, from item `start` to item `stop` (counted from
    the run's start): each epoch is the first `per_epoch` items of its `EpochSampler`
    permutation. One sampler for the whole fit lets one DataLoader, and its workers and
    prefetched batches, carry on across epoch boundaries; what each position draws is still
    a function of (seed, epoch, index) only, so a resumed run draws what an uninterrupted one
    would, whatever the number of workers."""

    def __init__(self, n: int, seed: int, per_epoch: int, start: int, stop: int) -> None:
        if not 0 < per_epoch <= n:
            raise ValueError(f"per_epoch must be in 1..{n}, got {per_epoch}")
        self.n, self.seed, self.per_epoch, self.start, self.stop = n, seed, per_epoch, start, stop

    def __iter__(self) -> Iterator[tuple[int, int]]:
        pos = self.start
        while pos < self.stop:
            epoch, offset = divmod(pos, self.per_epoch)
            end = min(self.per_epoch, offset + self.stop - pos)
            yield from EpochSampler(self.n, self.seed, epoch, offset, limit=end)
            pos += end - offset

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class RankSlices(torch.utils.data.Sampler):
    """Rank `rank`'s share of `order` under data-parallel training: of each global batch of
    `batch_size` consecutive items, the contiguous slice `[rank * b, (rank + 1) * b)` with
    b = batch_size / world. The ranks' slices, in rank order, are the global batch a single
    process would take, so what a step trains on is still a function of (seed, epoch, index)
    and the keys gathered in rank order enqueue as one process would enqueue them."""

    def __init__(self, order: Iterable[tuple[int, int]], batch_size: int, rank: int, world: int) -> None:
        if world < 1 or not 0 <= rank < world or batch_size % world:
            raise ValueError(f"batch_size {batch_size} must split evenly over {world} ranks (rank {rank})")
        self.order, self.batch_size, self.rank, self.world = order, batch_size, rank, world
        self.per_rank = batch_size // world

    def __iter__(self) -> Iterator[tuple[int, int]]:
        items = iter(self.order)
        lo = self.rank * self.per_rank
        while len(batch := list(islice(items, self.batch_size))) == self.batch_size:
            yield from batch[lo:lo + self.per_rank]

    def __len__(self) -> int:
        assert isinstance(self.order, Sized)
        return len(self.order) // self.batch_size * self.per_rank


class SeededItems(torch.utils.data.Dataset):
    """Runs each item's random augmentations under a seed fixed by (seed, epoch, index)."""

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        assert isinstance(self.dataset, Sized)
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only (all fork_rng restores); torch.manual_seed would also
            # queue CUDA seeding, ~0.5 ms of stack capture per item on torch >= 2.10
            torch.default_generator.manual_seed(derive_seed(self.seed, epoch, index))
            return self.dataset[index]
