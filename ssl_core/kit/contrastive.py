"""The contrastive toolkit: what MoCo-, SimCLR- and BYOL-style objectives share (after
lightly's models/utils.py), so no plugin writes its own copy.

Multi-process pieces answer for a single process when torch.distributed is not initialised
(or has one rank): gathers return their input, ranks are 0 of 1.

- `gather_with_grad(x)`: all ranks' rows, gradients flowing back to each rank's own rows
  (SimCLR's candidates); `concat_all_gather(x)`: the same without gradients (MoCo's keys).
- `batch_shuffle(x)` / `batch_unshuffle(y, idx)` / `shuffle_like(z, idx)`: MoCo's shuffle-BN,
  across ranks under torchrun, or within the batch in one process.
- `grouped_forward(fn, inputs, groups, module)`: `fn` on `groups` consecutive slices with
  their own BatchNorm statistics: shuffle-BN emulated in one process, each slice a rank.
- `momentum_update(online, target, m)`: target = m * target + (1 - m) * online (parameters).
- `info_nce(q, k, queue, T)`, `enqueue(queue, ptr, keys)`, `enqueue_valid(...)`: MoCo's loss
  against a queue of negatives, and the queue's ring buffer.
- `projection_head(...)`, `prediction_head(...)`: the MLP heads of MoCo v2, SimCLR, BYOL.
- `MomentumContrast`: the MoCo machinery as a base objective (query branch, momentum key
  branch, queue, shuffle-BN, InfoNCE, official checkpoint layout) for `moco-queue`-like
  objectives to build on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ssl_core.errors import ComponentError
from ssl_core.interfaces import ContrastiveObjective, Encoder, Params
from ssl_core.kit import distributed
from ssl_core.kit.memory import ensure_fits

__all__ = [
    "MomentumContrast",
    "batch_shuffle",
    "batch_unshuffle",
    "bn_groups",
    "concat_all_gather",
    "enqueue",
    "enqueue_valid",
    "gather_with_grad",
    "grouped_forward",
    "has_batch_norm",
    "info_nce",
    "momentum_update",
    "nearest_queue_sizes",
    "prediction_head",
    "projection_head",
    "shuffle_like",
]


# -- gathers ------------------------------------------------------------------------------

def gather_with_grad(x: Tensor) -> Tensor:
    """All ranks' `x` concatenated along dim 0 in rank order; the gradient of each rank's
    rows flows back to that rank (a plain `all_gather` would cut it off)."""
    if distributed.world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x))


@torch.no_grad()
def concat_all_gather(x: Tensor) -> Tensor:
    """All ranks' `x` concatenated along dim 0, rank order, without gradient (as MoCo's)."""
    if distributed.world_size() == 1:
        return x
    gathered = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, x.contiguous())
    return torch.cat(gathered, dim=0)


# -- shuffle-BN -----------------------------------------------------------------------------

@torch.no_grad()
def batch_shuffle(x: Tensor) -> tuple[Tensor, Tensor]:
    """Shuffle the global batch (rank 0's permutation, broadcast) and return this rank's
    share with the inverse permutation; in one process, the whole batch permuted."""
    if distributed.world_size() == 1:
        idx_shuffle = torch.randperm(x.shape[0], device=x.device)
        return x[idx_shuffle], torch.argsort(idx_shuffle)
    batch_this = x.shape[0]
    x_all = concat_all_gather(x)
    num_ranks = x_all.shape[0] // batch_this
    idx_shuffle = torch.randperm(x_all.shape[0], device=x.device)
    dist.broadcast(idx_shuffle, src=0)
    idx_unshuffle = torch.argsort(idx_shuffle)
    idx_this = idx_shuffle.view(num_ranks, -1)[distributed.rank()]
    return x_all[idx_this], idx_unshuffle


@torch.no_grad()
def batch_unshuffle(x: Tensor, idx_unshuffle: Tensor) -> Tensor:
    """Undo `batch_shuffle` on an output: this rank's rows back in their original order."""
    if distributed.world_size() == 1:
        return x[idx_unshuffle]
    batch_this = x.shape[0]
    x_all = concat_all_gather(x)
    num_ranks = x_all.shape[0] // batch_this
    idx_this = idx_unshuffle.view(num_ranks, -1)[distributed.rank()]
    return x_all[idx_this]


@torch.no_grad()
def shuffle_like(x: Tensor, idx_unshuffle: Tensor) -> Tensor:
    """`x` shuffled by the permutation `batch_shuffle` drew (its inverse is `idx_unshuffle`):
    what travels with the images (e.g. their boxes) follows them."""
    idx_shuffle = torch.argsort(idx_unshuffle)
    if distributed.world_size() == 1:
        return x[idx_shuffle]
    x_all = concat_all_gather(x)
    ranks = x_all.shape[0] // x.shape[0]
    return x_all[idx_shuffle.view(ranks, -1)[distributed.rank()]]


def has_batch_norm(module: nn.Module) -> bool:
    """Whether `module` normalises with batch statistics anywhere (BatchNorm, SyncBatchNorm)."""
    return any(isinstance(m, _BatchNorm) for m in module.modules())


def bn_groups(batch_size: int, requested: int | None, max_groups: int = 8,
              min_group: int = 4) -> int:
    """How many emulated ranks a one-process batch is split into: `requested` if set, else
    the most groups up to `max_groups` (official MoCo's 8 GPUs) that split the batch evenly
    with at least `min_group` images each (1: no split)."""
    if requested is not None:
        return requested
    for groups in range(max_groups, 1, -1):
        if batch_size % groups == 0 and batch_size // groups >= min_group:
            return groups
    return 1


_BatchNorm = nn.modules.batchnorm._BatchNorm
#: BatchNorm layers whose forward is exactly the functional batch_norm (subclasses such as
#: timm's BatchNormAct2d add work of their own, and SyncBatchNorm talks to other ranks)
_PLAIN_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _split_forward(bn: _BatchNorm, groups: int, x: Tensor) -> Tensor:
    """BatchNorm in training mode with separate statistics for `groups` consecutive slices
    of the batch, in one call (MoCo's SplitBatchNorm): the slices become channel blocks.
    The running statistics end as the first slice's update leaves them."""
    n, c, rest = x.shape[0], x.shape[1], x.shape[2:]
    size = n // groups
    blocks = x.reshape(groups, size, c, *rest).transpose(0, 1).reshape(size, groups * c, *rest)
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # a cumulative average, as BatchNorm's own forward
            factor = 1.0 / float(bn.num_batches_tracked)
    mean = bn.running_mean.repeat(groups) if bn.running_mean is not None else None
    var = bn.running_var.repeat(groups) if bn.running_var is not None else None
    out = F.batch_norm(blocks, mean, var,
                       bn.weight.repeat(groups) if bn.weight is not None else None,
                       bn.bias.repeat(groups) if bn.bias is not None else None,
                       True, factor, bn.eps)
    if mean is not None and var is not None and bn.running_mean is not None \
            and bn.running_var is not None:
        bn.running_mean.data.copy_(mean.view(groups, c)[0])
        bn.running_var.data.copy_(var.view(groups, c)[0])
    return out.reshape(size, groups, c, *rest).transpose(0, 1).reshape(x.shape)


@contextmanager
def _split_batch_norm(norms: Sequence[_BatchNorm], groups: int) -> Iterator[None]:
    for bn in norms:
        bn.forward = partial(_split_forward, bn, groups)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for bn in norms:
            del bn.forward


def grouped_forward(fn: Callable[..., tuple[Tensor, ...]], inputs: Sequence[Tensor], groups: int,
                    module: nn.Module | None = None) -> tuple[Tensor, ...]:
    """`fn(*inputs)` computed on `groups` consecutive slices of the batch (each with its
    own BatchNorm statistics, as on as many ranks), outputs concatenated in order.

    Afterwards `module`'s buffers (running statistics) are those the first slice left, as
    DistributedDataParallel broadcasts rank 0's before every forward."""
    if groups <= 1:
        return fn(*inputs)
    n = inputs[0].shape[0]
    if n % groups:
        raise ComponentError(f"a batch of {n} does not split into {groups} BatchNorm groups",
                             f"use a batch size divisible by {groups} (shuffle_bn_groups)")
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm)] if module is not None else []
    if norms and all(type(m) in _PLAIN_BATCH_NORMS for m in norms):
        with _split_batch_norm(norms, groups):  # one pass: far faster than `groups` small ones
            return fn(*inputs)
    size = n // groups
    outs: list[tuple[Tensor, ...]] = []
    first: list[Tensor] = []
    for g in range(groups):
        outs.append(fn(*(t[g * size:(g + 1) * size] for t in inputs)))
        if g == 0 and module is not None:
            first = [b.detach().clone() for b in module.buffers()]
    if module is not None:
        # through `.data`, as MoCo's SplitBatchNorm: BatchNorm's backward holds the running
        # statistics (without reading them in training); a tracked copy would fail its check
        for buf, kept in zip(module.buffers(), first, strict=True):
            buf.data.copy_(kept)
    return tuple(torch.cat(parts) for parts in zip(*outs, strict=True))


# -- momentum, loss, queue --------------------------------------------------------------------

@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """target = m * target + (1 - m) * online over parameters only (buffers such as BatchNorm
    statistics evolve by the target's own forward passes)."""
    ts = [p.data for p in target.parameters()]
    os_ = [p.data for p in online.parameters()]
    if not ts:
        return
    if len(ts) != len(os_):
        raise ComponentError(f"momentum update of a module with {len(ts)} parameters from one "
                             f"with {len(os_)}", "the target must be a copy of the online module")
    torch._foreach_mul_(ts, momentum)
    torch._foreach_add_(ts, torch._foreach_mul(os_, 1.0 - momentum))


def info_nce(q_out: Tensor, k_out: Tensor, queue: Tensor, temperature: float
             ) -> tuple[Tensor, Tensor, Tensor]:
    """MoCo's InfoNCE row by row, in float32 even under autocast: logits = [q.k+, q.queue] / T
    with label 0 (`queue` is (dim, K), one negative per column). Returns each row's loss,
    whether its positive got the top logit, and the normalised keys (what gets enqueued)."""
    with torch.autocast(device_type=q_out.device.type, enabled=False):
        q = F.normalize(q_out.float(), dim=1)
        k = F.normalize(k_out.detach().float(), dim=1)
        l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", q, queue.clone().detach().float())
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        losses = F.cross_entropy(logits, labels, reduction="none")
    with torch.no_grad():
        correct = logits.argmax(dim=1) == 0
    return losses, correct, k


def nearest_queue_sizes(queue_size: int, batch_size: int) -> list[int]:
    """The multiples of `batch_size` closest to `queue_size` (below and above)."""
    lower = (queue_size // batch_size) * batch_size
    return [s for s in (lower, lower + batch_size) if s > 0]


@torch.no_grad()
def enqueue(queue: Tensor, ptr: Tensor, keys: Tensor, owner: str = "the queue") -> None:
    """All ranks' `keys` (rows) into the (dim, K) ring buffer `queue` at `ptr`, which moves
    on by the global batch. The global batch must divide K (as in MoCo); the pointer stays
    on the device (reading it back would sync every step)."""
    keys = concat_all_gather(keys)
    batch, size = keys.shape[0], queue.shape[1]
    if size % batch != 0:
        sizes = " or ".join(str(s) for s in nearest_queue_sizes(size, batch))
        raise ComponentError(
            f"{owner} got a global batch of {batch} keys, which does not divide "
            f"queue_size {size}",
            f"drop the last incomplete batch (drop_last=True) or set queue_size to {sizes}",
        )
    idx = ptr + torch.arange(batch, device=ptr.device)
    queue.index_copy_(1, idx, keys.T.to(queue.dtype))
    ptr.add_(batch).remainder_(size)


@torch.no_grad()
def enqueue_valid(queue: Tensor, ptr: Tensor, keys: Tensor, valid: Tensor,
                  owner: str = "the queue", size_field: str = "queue_size") -> None:
    """Enqueue the rows of `keys` (all ranks') where `valid`, oldest first, without reading
    the count back to the host: valid rows go first and invalid ones rewrite what was there."""
    keys = concat_all_gather(keys)
    valid = concat_all_gather(valid.to(keys.dtype)) > 0.5
    n, size = keys.shape[0], queue.shape[1]
    if n > size:
        raise ComponentError(
            f"{owner} got {n} keys in one step, more than {size_field} {size}",
            f"set {size_field} to at least {n}")
    order = torch.argsort((~valid).to(torch.int8), stable=True)
    keys, valid = keys[order], valid[order]
    idx = (ptr + torch.arange(n, device=keys.device)) % size
    old = queue[:, idx]
    queue[:, idx] = torch.where(valid[None, :], keys.T.to(old.dtype), old)
    ptr.add_(valid.sum()).remainder_(size)


# -- heads ------------------------------------------------------------------------------------

def projection_head(in_dim: int, out_dim: int, hidden_dim: int | None = None, mlp: bool = True,
                    batch_norm: bool = False) -> nn.Module:
    """MoCo v2 / SimCLR projection: Linear(in, hidden) [BatchNorm] ReLU Linear(hidden, out)
    (hidden = in by default), or one Linear(in, out) without `mlp` (MoCo v1)."""
    if not mlp:
        return nn.Linear(in_dim, out_dim)
    hidden = hidden_dim or in_dim
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)]
    return nn.Sequential(*layers)


def prediction_head(dim: int, hidden_dim: int) -> nn.Module:
    """BYOL / SimSiam predictor: Linear(dim, hidden) BatchNorm ReLU Linear(hidden, dim)."""
    return projection_head(dim, dim, hidden_dim, batch_norm=True)


# -- MoCo as a base objective -----------------------------------------------------------------

class _Branch(nn.Module):
    """Trunk + projection head: keys `trunk.*` and `fc.*`."""

    def __init__(self, trunk: Encoder, fc: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.fc = fc

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.trunk(x))


class MomentumContrastParams(Params):
    """MomentumContrast's parameters, with the official MoCo-v2 defaults (K=65536, dim 128,
    m=0.999, T=0.2, MLP head); objectives built on it add their own."""

    dim: int = Field(128, ge=1, description="key/query embedding size")
    queue_size: int = Field(65536, ge=1, description="number of negative keys K")
    momentum: float = Field(0.999, ge=0.0, le=1.0, description="key-encoder momentum m")
    temperature: float = Field(0.2, gt=0.0, description="softmax temperature T")
    mlp: bool = Field(True, description="2-layer MLP head (v2) instead of one Linear (v1)")
    shuffle_bn: bool = Field(True, description="shuffle-BN: across ranks under torchrun, "
                             "emulated by shuffle_bn_groups in one process")
    shuffle_bn_groups: int | None = Field(
        None, ge=1, description="one-process shuffle-BN: BatchNorm groups the batch is split "
        "into (each an emulated rank); null = up to 8 groups of at least 4 images; 1 = off. "
        "Only with BatchNorm in the encoder and without torchrun")


class MomentumContrast(ContrastiveObjective):
    """MoCo's machinery (facebookresearch/moco's builder) for objectives to build on.

    The query branch (trunk + head) trains; the key branch is its copy updated by momentum
    before each key pass; `queue` (dim, K) holds past keys, `queue_ptr` where the next go.
    Keys are computed under shuffle-BN: across ranks under torchrun, emulated in one process
    by `shuffle_bn_groups` BatchNorm groups (queries in consecutive groups, keys shuffled into
    groups, as the ranks of a multi-GPU run; `None` chooses with `bn_groups`).

    `branch_names` are the two branches' attribute names, which prefix their state-dict keys
    (`<query>.trunk.*`, `<query>.fc.*`): an objective that follows a framework keeps the
    framework's names, so its checkpoints convert to that framework's layout by renaming."""

    #: attribute names of the query and the key branch
    branch_names: ClassVar[tuple[str, str]] = ("query_branch", "key_branch")
    queue: Tensor
    queue_ptr: Tensor
    #: the component's name, for messages
    name: str = "moco"

    def __init__(self, params: MomentumContrastParams) -> None:
        super().__init__()
        dim, queue_size = params.dim, params.queue_size
        self.dim = dim
        self.K = queue_size
        self.m = params.momentum
        self.T = params.temperature
        self.mlp = params.mlp
        self.shuffle_bn = params.shuffle_bn
        self.shuffle_bn_groups = params.shuffle_bn_groups
        for branch in self.branch_names:
            setattr(self, branch, None)
        self._has_bn = False
        # the queue, a normalised copy and its logits against a batch: ~3 queues at once
        ensure_fits(3 * 4 * dim * queue_size,
                    f"the negatives queue (objective queue_size={queue_size}, dim={dim})",
                    "lower queue_size (MoCo v2 uses 65536) or dim")
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    # -- setup ---------------------------------------------------------------------------
    def bind(self, encoder: Encoder) -> None:
        """Build the query head, and the key branch as a frozen deep copy of the query one."""
        if getattr(self, self.branch_names[0]) is not None:
            raise ComponentError(f"{self.name} is already bound to an encoder",
                                 "create a new objective for each encoder")
        feat = encoder.checked_feature_dim()
        if any(k.startswith("fc.") for k in encoder.state_dict()):
            raise ComponentError(
                f"encoder {type(encoder).__name__} has its own `fc.*` weights, which would clash "
                "with the projection head's keys (`fc.*`) in the checkpoint",
                "drop the classifier from the encoder (return pre-FC pooled features)")
        head = projection_head(feat, self.dim, mlp=self.mlp)
        device = next(iter(encoder.parameters()), self.queue).device
        query = _Branch(encoder, head.to(device))
        key = copy.deepcopy(query)
        for p in key.parameters():
            p.requires_grad = False
        setattr(self, self.branch_names[0], query)
        setattr(self, self.branch_names[1], key)
        self._has_bn = has_batch_norm(query)

    def branches(self) -> tuple[_Branch, _Branch]:
        """The query and the key branch (each trunk + head), once bound."""
        query, key = (getattr(self, name) for name in self.branch_names)
        if query is None or key is None:
            raise ComponentError(f"{self.name} is used before bind(encoder) was called",
                                 "call objective.bind(encoder) first")
        return query, key

    @property
    def encoder(self) -> Encoder:
        q, _ = self.branches()
        return q.trunk  # type: ignore[return-value]

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size <= 0:
            raise ComponentError(f"batch size must be positive, got {batch_size}",
                                 "set train.batch_size to a positive integer")
        if self.K % batch_size != 0:
            sizes = " or ".join(str(s) for s in nearest_queue_sizes(self.K, batch_size))
            raise ComponentError(
                f"{self.name} queue_size {self.K} is not divisible by the global batch size "
                f"{batch_size}",
                f"set queue_size to {sizes}, or pick a batch size that divides {self.K}",
            )
        groups = self.shuffle_bn_groups
        single = distributed.world_size() == 1
        if groups is not None and groups > 1 and single and batch_size % groups:
            raise ComponentError(
                f"{self.name} shuffle_bn_groups {groups} does not divide the batch size "
                f"{batch_size}", f"set shuffle_bn_groups to a divisor of {batch_size}, or "
                "null to choose automatically")

    # -- pieces of a step ------------------------------------------------------------------
    def groups(self, batch_size: int) -> int:
        """BatchNorm groups emulating shuffle-BN in this step (1: none): only in one training
        process with an encoder that has BatchNorm and `shuffle_bn` on."""
        single = distributed.world_size() == 1
        if not (self.shuffle_bn and self.training and self._has_bn and single):
            return 1
        return bn_groups(batch_size, self.shuffle_bn_groups)

    @torch.no_grad()
    def _momentum_update_key_encoder(self) -> None:
        """k = m*k + (1-m)*q over parameters only (buffers evolve by the key forward)."""
        q_branch, k_branch = self.branches()
        momentum_update(q_branch, k_branch, self.m)

    def query_forward(self, fn: Callable[..., tuple[Tensor, ...]], *inputs: Tensor
                      ) -> tuple[Tensor, ...]:
        """`fn(*inputs)` through the query branch: in consecutive BatchNorm groups when
        shuffle-BN is emulated (each group a rank's local batch)."""
        q_branch, _ = self.branches()
        return grouped_forward(fn, inputs, self.groups(inputs[0].shape[0]), q_branch)

    @torch.no_grad()
    def key_forward(self, fn: Callable[..., tuple[Tensor, ...]], *inputs: Tensor
                    ) -> tuple[Tensor, ...]:
        """`fn(*inputs)` through the key branch under shuffle-BN; the outputs in the inputs'
        order. What follows the images (`inputs[1:]`, e.g. boxes) is shuffled with them."""
        _, k_branch = self.branches()
        groups = self.groups(inputs[0].shape[0])
        if not ((self.shuffle_bn and distributed.world_size() > 1) or groups > 1):
            return fn(*inputs)
        x, idx_unshuffle = batch_shuffle(inputs[0])
        rest = [shuffle_like(t, idx_unshuffle) for t in inputs[1:]]
        outs = grouped_forward(fn, (x, *rest), groups, k_branch)
        return tuple(batch_unshuffle(o, idx_unshuffle) for o in outs)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: Tensor) -> None:
        enqueue(self.queue, self.queue_ptr, keys, self.name)
