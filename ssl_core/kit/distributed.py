"""One home for multi-process training under `torchrun` (after lightly's models/utils.py).

`torchrun --nproc-per-node N sslc run RECIPE` starts N copies of `sslc run` with RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in their environment. `session(device)`
turns that into a process group (NCCL on CUDA, gloo on CPU, rank r on cuda:LOCAL_RANK)
and tears it down at the end (a 1-process torchrun too: the same code path, e.g. to check
NCCL on a machine with one GPU). Without torchrun nothing is initialised and every helper
answers for a single process: rank 0 of a world of 1, the objective not wrapped.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ssl_core.errors import DeviceError, SslcError

T = TypeVar("T")
#: what torchrun sets for each process; env:// initialisation reads them
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes training together (1 without torchrun)."""
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    """This process's global rank (0 without torchrun)."""
    return dist.get_rank() if is_initialized() else 0


def local_rank() -> int:
    """This process's rank on its machine: the CUDA device it trains on."""
    return int(os.environ.get("LOCAL_RANK", "0")) if is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the one process that writes checkpoints, results, logs and reports."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if not is_initialized():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[local_rank()])
    else:
        dist.barrier()


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank: decisions (skip a stage, resume from step S) are taken
    once, so the ranks never disagree about what comes next."""
    if not is_initialized():
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[no-any-return]


def mean_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of `values` over the ranks: per-rank shard means of equal size
    average to the global batch's mean (the loss and metrics rank 0 logs)."""
    if not is_initialized():
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / world_size()


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` in DistributedDataParallel under torchrun, else itself.

    As in the official MoCo, the whole objective is wrapped: gradients of the parameters that
    train are averaged across ranks; parameters without gradients (a momentum key encoder)
    are left alone; buffers (batch-norm statistics, a queue) are broadcast from rank 0 before
    each forward. The caller keeps the bare module for checkpoints, so their keys carry no
    `module.` prefix."""
    if not is_initialized():
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    # DDP's default syncs buffers from rank 0 before each forward (`broadcast_buffers`, or
    # `forward_sync_buffers` in newer torch), as the official MoCo relies on
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)


def launched() -> bool:
    """Whether torchrun (it always sets TORCHELASTIC_RUN_ID) or another launcher (WORLD_SIZE
    above 1) started this process."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1") or "1") > 1


def launched_world_size() -> int:
    """The process count torchrun announced (WORLD_SIZE), readable before the process group
    forms; 1 without a launcher."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1") or "1")) if launched() else 1
    except ValueError:
        return 1


def speaks_for_machine() -> bool:
    """Whether this process reports errors found before the process group forms: every process
    on a machine reads the same recipe and folders, so local rank 0 alone says what is wrong
    (the others exit with the same code, silently)."""
    return not launched() or os.environ.get("LOCAL_RANK", "0") in ("", "0")


def _rank_device(device: torch.device) -> torch.device:
    """Under torchrun each rank trains on cuda:LOCAL_RANK."""
    if device.type != "cuda":
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    count = torch.cuda.device_count()
    if device.index is not None and device.index != local:
        raise DeviceError(f"--device {device} under torchrun: each process uses cuda:LOCAL_RANK "
                          f"(this one cuda:{local})",
                          "pass --device cuda (or auto); choose GPUs with CUDA_VISIBLE_DEVICES")
    if local >= count:
        raise DeviceError(f"LOCAL_RANK {local} has no GPU: this machine has {count}",
                          f"use torchrun --nproc-per-node {count} or fewer")
    return torch.device("cuda", local)


def init(device: torch.device) -> torch.device:
    """Join torchrun's process group (NCCL for CUDA, gloo otherwise); returns this rank's
    device. Does nothing, and returns `device`, in a single process."""
    if not launched() or is_initialized():
        return device
    missing = [v for v in TORCHRUN_VARS if v not in os.environ and v != "LOCAL_RANK"]
    if missing:
        raise SslcError(f"a launcher's environment without {', '.join(missing)}",
                        "start several processes with torchrun (e.g. torchrun --nproc-per-node 2 "
                        "$(which sslc) run RECIPE), or unset WORLD_SIZE")
    device = _rank_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # rank 0 alone probes between models (`probe_every`) while the others wait in a
    # collective: the default 10-minute timeout would end a run with a long probe
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                            timeout=datetime.timedelta(hours=6))
    return device


def teardown() -> None:
    if is_initialized():
        dist.destroy_process_group()


@contextmanager
def session(device: torch.device) -> Iterator[torch.device]:
    """`with session(device) as mine:` the process group for the block (if torchrun started
    us), and this rank's device."""
    mine = init(device)
    try:
        yield mine
    finally:
        teardown()
