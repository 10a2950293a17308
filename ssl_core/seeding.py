"""Seeds derived from (run seed, epoch, item) so that data order and augmentations are a
pure function of position: a resumed run draws exactly what an uninterrupted one would."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sized
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
            torch.manual_seed(derive_seed(self.seed, epoch, index))
            return self.dataset[index]
