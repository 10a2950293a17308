"""Objective `moco-queue`: MoCo v2 (momentum key encoder + queue of negatives).

Follows the official facebookresearch/moco builder: the key encoder starts as a copy
of the query encoder and is updated by momentum over parameters only, before the key
forward pass; logits = [q.k+, q.queue] / T with label 0; the queue used is the one
before this step's enqueue; keys gathered from all ranks are enqueued at `ptr` and
ptr = (ptr + B) mod K. Shuffle-BN across ranks when torch.distributed is initialised.

Checkpoints convert to and from the official layout (`module.encoder_q.<trunk keys>`,
`module.encoder_q.fc.0.weight`, ..., `module.encoder_k.*`, `module.queue`,
`module.queue_ptr`) with `to_official_state_dict` / `load_official_state_dict`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ssl_core import (
    CheckpointError,
    CheckpointFormat,
    ComponentError,
    ContrastiveObjective,
    Encoder,
    ObjectiveOutput,
    Params,
    Register,
    ensure_fits,
    hookimpl,
)

_Q, _K = "encoder_q", "encoder_k"
_TRUNK = "trunk"


class MocoQueueParams(Params):
    """MoCo-v2 defaults (official): K=65536, dim 128, m=0.999, T=0.2, MLP head."""

    dim: int = Field(128, ge=1, description="key/query embedding size")
    queue_size: int = Field(65536, ge=1, description="number of negative keys K")
    momentum: float = Field(0.999, ge=0.0, le=1.0, description="key-encoder momentum m")
    temperature: float = Field(0.2, gt=0.0, description="softmax temperature T")
    mlp: bool = Field(True, description="2-layer MLP head (v2) instead of one Linear (v1)")
    shuffle_bn: bool = Field(True, description="shuffle keys across ranks (distributed only)")


class _Branch(nn.Module):
    """Trunk + projection head. Native keys `trunk.*` / `fc.*`; official keys drop `trunk.`."""

    def __init__(self, trunk: Encoder, fc: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.fc = fc

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.trunk(x))


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def concat_all_gather(x: Tensor) -> Tensor:
    """All ranks' `x` concatenated along dim 0, rank order (no gradient, as the official)."""
    if not _distributed():
        return x
    gathered = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, x.contiguous())
    return torch.cat(gathered, dim=0)


def info_nce(q_out: Tensor, k_out: Tensor, queue: Tensor, temperature: float
             ) -> tuple[Tensor, Tensor, Tensor]:
    """MoCo's InfoNCE row by row, in float32 even under autocast: logits = [q.k+, q.queue] / T
    with label 0. Returns each row's loss, whether its positive got the top logit, and the
    normalised keys (what gets enqueued). Shared with objectives built on MoCo (region-moco)."""
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


class MocoQueue(ContrastiveObjective):
    """MoCo v2 with a queue of negatives; owns query branch, key branch and queue."""

    queue: Tensor
    queue_ptr: Tensor

    def __init__(self, params: MocoQueueParams | None = None) -> None:
        super().__init__()
        p = params or MocoQueueParams()
        self.dim = p.dim
        self.K = p.queue_size
        self.m = p.momentum
        self.T = p.temperature
        self.mlp = p.mlp
        self.shuffle_bn = p.shuffle_bn
        self.encoder_q: _Branch | None = None
        self.encoder_k: _Branch | None = None
        # the queue, a normalised copy and its logits against a batch: ~3 queues at once
        ensure_fits(3 * 4 * p.dim * p.queue_size,
                    f"the negatives queue (objective queue_size={p.queue_size}, dim={p.dim})",
                    "lower queue_size (MoCo v2 uses 65536) or dim")
        self.register_buffer("queue", F.normalize(torch.randn(p.dim, p.queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    # -- setup ---------------------------------------------------------------------
    def bind(self, encoder: Encoder) -> None:
        """Build the query head, and the key branch as a frozen deep copy of the query one."""
        if self.encoder_q is not None:
            raise ComponentError("moco-queue is already bound to an encoder",
                                 "create a new objective for each encoder")
        feat = encoder.checked_feature_dim()
        if any(k.startswith("fc.") for k in encoder.state_dict()):
            raise ComponentError(
                f"encoder {type(encoder).__name__} has its own `fc.*` weights, which would clash "
                "with the MoCo head in the official checkpoint layout",
                "drop the classifier from the encoder (return pre-FC pooled features)")
        if self.mlp:
            head: nn.Module = nn.Sequential(nn.Linear(feat, feat), nn.ReLU(),
                                            nn.Linear(feat, self.dim))
        else:
            head = nn.Linear(feat, self.dim)
        device = next(iter(encoder.parameters()), self.queue).device
        self.encoder_q = _Branch(encoder, head.to(device))
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad = False

    def _bound(self) -> tuple[_Branch, _Branch]:
        if self.encoder_q is None or self.encoder_k is None:
            raise ComponentError("moco-queue is used before bind(encoder) was called",
                                 "call objective.bind(encoder) first")
        return self.encoder_q, self.encoder_k

    @property
    def encoder(self) -> Encoder:
        q, _ = self._bound()
        return q.trunk  # type: ignore[return-value]

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size <= 0:
            raise ComponentError(f"batch size must be positive, got {batch_size}",
                                 "set train.batch_size to a positive integer")
        if self.K % batch_size != 0:
            sizes = " or ".join(str(s) for s in nearest_queue_sizes(self.K, batch_size))
            raise ComponentError(
                f"moco-queue queue_size {self.K} is not divisible by the global batch size "
                f"{batch_size}",
                f"set queue_size to {sizes}, or pick a batch size that divides {self.K}",
            )

    # -- one training step -----------------------------------------------------------
    @torch.no_grad()
    def _momentum_update_key_encoder(self) -> None:
        """k = m*k + (1-m)*q over parameters only (buffers evolve by the key forward)."""
        q_branch, k_branch = self._bound()
        ks = [p.data for p in k_branch.parameters()]
        qs = [p.data for p in q_branch.parameters()]
        if not ks:
            return
        torch._foreach_mul_(ks, self.m)
        torch._foreach_add_(ks, torch._foreach_mul(qs, 1.0 - self.m))

    @torch.no_grad()
    def _batch_shuffle_ddp(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Shuffle the global key batch with rank 0's permutation; this rank's share."""
        batch_this = x.shape[0]
        x_all = concat_all_gather(x)
        num_ranks = x_all.shape[0] // batch_this
        idx_shuffle = torch.randperm(x_all.shape[0], device=x.device)
        dist.broadcast(idx_shuffle, src=0)
        idx_unshuffle = torch.argsort(idx_shuffle)
        idx_this = idx_shuffle.view(num_ranks, -1)[dist.get_rank()]
        return x_all[idx_this], idx_unshuffle

    @torch.no_grad()
    def _batch_unshuffle_ddp(self, x: Tensor, idx_unshuffle: Tensor) -> Tensor:
        batch_this = x.shape[0]
        x_all = concat_all_gather(x)
        num_ranks = x_all.shape[0] // batch_this
        idx_this = idx_unshuffle.view(num_ranks, -1)[dist.get_rank()]
        return x_all[idx_this]

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: Tensor) -> None:
        keys = concat_all_gather(keys)
        batch = keys.shape[0]
        if self.K % batch != 0:
            sizes = " or ".join(str(s) for s in nearest_queue_sizes(self.K, batch))
            raise ComponentError(
                f"moco-queue got a global batch of {batch} keys, which does not divide "
                f"queue_size {self.K}",
                f"drop the last incomplete batch (drop_last=True) or set queue_size to {sizes}",
            )
        # index arithmetic on the device: reading the pointer back would sync every step
        idx = self.queue_ptr + torch.arange(batch, device=self.queue_ptr.device)
        self.queue.index_copy_(1, idx, keys.T.to(self.queue.dtype))
        self.queue_ptr.add_(batch).remainder_(self.K)

    def forward(self, batch: Mapping[str, Tensor]) -> ObjectiveOutput:
        q_branch, k_branch = self._bound()
        try:
            im_q, im_k = batch["query"], batch["key"]
        except KeyError as err:
            raise ComponentError(f"moco-queue needs batches with 'query' and 'key', "
                                 f"missing {err.args[0]!r}",
                                 "use a pair-sampler that yields query/key views") from None
        q_out = q_branch(im_q)
        with torch.no_grad():
            self._momentum_update_key_encoder()
            shuffle = self.shuffle_bn and _distributed()
            if shuffle:
                im_k, idx_unshuffle = self._batch_shuffle_ddp(im_k)
            k_out = k_branch(im_k)
            if shuffle:
                k_out = self._batch_unshuffle_ddp(k_out, idx_unshuffle)
        # Normalisation, logits and loss in float32 even under autocast.
        losses, correct, k = info_nce(q_out, k_out, self.queue, self.T)
        loss = losses.mean()
        with torch.no_grad():
            acc1 = correct.float().mean() * 100.0
        self._dequeue_and_enqueue(k)
        # tensors, not floats: the trainer reads them back only when it logs
        return ObjectiveOutput(loss=loss, metrics={"acc1": acc1.detach()})

    # -- official checkpoint layout --------------------------------------------------
    def to_official_state_dict(self, prefix: str = "module.") -> dict[str, Tensor]:
        """State dict in the official MoCo layout (`module.encoder_q.conv1.weight`, ...)."""
        self._bound()
        out: dict[str, Tensor] = {}
        for key, value in self.state_dict().items():
            out[prefix + _native_to_official(key)] = value
        return out

    def load_official_state_dict(self, state_dict: Mapping[str, Any],
                                 strict: bool = True) -> tuple[list[str], list[str]]:
        """Load an official-layout state dict, with or without `module.` on each key.

        Also accepts a whole official checkpoint (`{'state_dict': ...}`). Returns the
        (missing, unexpected) official keys; raises CheckpointError if strict and any.
        """
        self._bound()
        if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
            state_dict = state_dict["state_dict"]
        native: dict[str, Any] = {}
        for key, value in state_dict.items():
            bare = key[len("module."):] if key.startswith("module.") else key
            native[_official_to_native(bare)] = value
        own = self.state_dict()
        for key, value in native.items():
            if key in own and isinstance(value, Tensor) and value.shape != own[key].shape:
                hint = "build the objective/encoder with the checkpoint's settings"
                if key == "queue":
                    hint = (f"the checkpoint has dim={value.shape[0]}, queue_size={value.shape[1]};"
                            f" set those parameters")
                raise CheckpointError(
                    f"checkpoint key {_native_to_official(key)!r} has shape "
                    f"{tuple(value.shape)}, this objective expects {tuple(own[key].shape)}", hint)
        result = self.load_state_dict(native, strict=False)
        missing = [_native_to_official(k) for k in result.missing_keys]
        unexpected = [_native_to_official(k) for k in result.unexpected_keys]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing {len(missing)} key(s): {_preview(missing)}")
            if unexpected:
                parts.append(f"unexpected {len(unexpected)} key(s): {_preview(unexpected)}")
            raise CheckpointError(
                "checkpoint does not match the official MoCo layout of this objective: "
                + "; ".join(parts),
                "check that the encoder architecture, `mlp` and `dim` match the checkpoint's, "
                "or load with strict=False",
            )
        return missing, unexpected


def _native_to_official(key: str) -> str:
    for branch in (_Q, _K):
        head = f"{branch}.{_TRUNK}."
        if key.startswith(head):
            return f"{branch}." + key[len(head):]
    return key


def _official_to_native(key: str) -> str:
    for branch in (_Q, _K):
        head = f"{branch}."
        if key.startswith(head):
            rest = key[len(head):]
            if rest.startswith("fc.") or rest == "fc":
                return key
            return f"{branch}.{_TRUNK}.{rest}"
    return key


def _preview(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def official_checkpoint(objective: MocoQueue, epoch: int, arch: str,
                        optimizer_state: Mapping[str, Any] | None) -> dict[str, Any]:
    """A checkpoint dict exactly like the official main_moco.py saves."""
    return {
        "epoch": epoch,
        "arch": arch,
        "state_dict": objective.to_official_state_dict("module."),
        "optimizer": dict(optimizer_state) if optimizer_state is not None else {},
    }


class MocoFormat(CheckpointFormat):
    """The official MoCo checkpoint: `{'epoch', 'arch', 'state_dict', 'optimizer'}` with the
    query trunk under `module.encoder_q.` (`module.` only when trained with DDP)."""

    def __init__(self, params: Params | None = None) -> None:
        pass

    def select(self, state: Mapping[str, Tensor], meta: Mapping[str, Any]
               ) -> tuple[dict[str, Tensor], str] | None:
        for prefix in (f"module.{_Q}.", f"{_Q}."):
            picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if picked:
                return picked, prefix
        return None

    def export(self, trunk: Mapping[str, Tensor], encoder: Encoder,
               encoder_config: Mapping[str, Any]) -> dict[str, Any]:
        """What main_lincls.py reads: the trunk under `module.encoder_q.` (no head, no
        optimizer state), with `arch` naming the encoder."""
        return {"epoch": 0, "arch": str(encoder_config.get("type", "")),
                "state_dict": {f"module.{_Q}.{k}": v.detach().cpu() for k, v in trunk.items()},
                "optimizer": {}}


@hookimpl
def register_objectives(register: Register) -> None:
    register("moco-queue", MocoQueue, params=MocoQueueParams,
             summary="MoCo v2: momentum key encoder, queue of negatives, InfoNCE (official)")


@hookimpl
def register_checkpoint_formats(register: Register) -> None:
    register("moco", MocoFormat,
             summary="official MoCo v1/v2 checkpoint (module.encoder_q.*), e.g. moco_v2_200ep")
