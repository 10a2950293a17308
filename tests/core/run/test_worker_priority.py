"""DataLoader workers run at a lower CPU priority than the training process (ssl_core.run.trainer)."""

from __future__ import annotations

import os

import torch

from ssl_core.run.trainer import WORKER_NICENESS, lower_priority


class Niceness(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        return os.nice(0)


def test_workers_are_niced_below_the_training_process() -> None:
    loader = torch.utils.data.DataLoader(Niceness(), batch_size=1, num_workers=1,
                                         worker_init_fn=lower_priority)
    ours = os.nice(0)
    theirs = [int(b) for b in loader]
    assert theirs == [min(ours + WORKER_NICENESS, 19)] * 2
    assert os.nice(0) == ours  # the training process keeps its priority
