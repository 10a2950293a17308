"""Objective `moco-queue`: MoCo v2 (momentum key encoder + queue of negatives).

Follows the official facebookresearch/moco builder: the key encoder starts as a copy
of the query encoder and is updated by momentum over parameters only, before the key
forward pass; logits = [q.k+, q.queue] / T with label 0; the queue used is the one
before this step's enqueue; keys gathered from all ranks are enqueued at `ptr` and
ptr = (ptr + B) mod K. Shuffle-BN across ranks when torch.distributed is initialised;
in one process it is emulated by `shuffle_bn_groups` BatchNorm groups (MoCo's one-GPU
demo), each group a rank of an N-GPU run.

The machinery (branches, queue, momentum update, shuffle-BN, InfoNCE)
is the core's `ssl_core.MomentumContrast`; this module adds the params, the loss of one
step and the official checkpoint format. Checkpoints convert to and from the official
layout (`module.encoder_q.<trunk keys>`, `module.encoder_q.fc.0.weight`, ...,
`module.encoder_k.*`, `module.queue`, `module.queue_ptr`) with `to_official_state_dict` /
`load_official_state_dict`: the branches keep the official names (`encoder_q`, `encoder_k`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ssl_core import (
    CheckpointError,
    CheckpointFormat,
    ComponentError,
    Encoder,
    MomentumContrast,
    MomentumContrastParams,
    ObjectiveOutput,
    Params,
    Register,
    hookimpl,
    info_nce,
    nearest_queue_sizes,
)

__all__ = ["MocoFormat", "MocoQueue", "MocoQueueParams", "info_nce", "nearest_queue_sizes",
           "official_checkpoint", "to_official_state_dict", "load_official_state_dict"]


#: the official builder's branch names: with them, the state dict is the official layout
#: once `trunk.` is dropped
OFFICIAL_BRANCHES = ("encoder_q", "encoder_k")
Q = OFFICIAL_BRANCHES[0]


class MocoQueueParams(MomentumContrastParams):
    """MoCo-v2 defaults (official): K=65536, dim 128, m=0.999, T=0.2, MLP head."""


class MocoQueue(MomentumContrast):
    """MoCo v2 with a queue of negatives; owns query branch, key branch and queue."""

    branch_names = OFFICIAL_BRANCHES

    name = "moco-queue"

    def __init__(self, params: MocoQueueParams | None = None) -> None:
        p = params or MocoQueueParams()
        super().__init__(p)

    def forward(self, batch: Mapping[str, Tensor]) -> ObjectiveOutput:
        q_branch, k_branch = self.branches()
        try:
            im_q, im_k = batch["query"], batch["key"]
        except KeyError as err:
            raise ComponentError(f"moco-queue needs batches with 'query' and 'key', "
                                 f"missing {err.args[0]!r}",
                                 "use a pair-sampler that yields query/key views") from None
        (q_out,) = self.query_forward(lambda x: (q_branch(x),), im_q)
        with torch.no_grad():
            self._momentum_update_key_encoder()
            (k_out,) = self.key_forward(lambda x: (k_branch(x),), im_k)
        # Normalisation, logits and loss in float32 even under autocast.
        losses, correct, k = info_nce(q_out, k_out, self.queue, self.T)
        loss = losses.mean()
        with torch.no_grad():
            acc1 = correct.float().mean() * 100.0
        self._dequeue_and_enqueue(k)
        # tensors, not floats: the trainer reads them back only when it logs
        return ObjectiveOutput(loss=loss, metrics={"acc1": acc1.detach()})


def official_checkpoint(objective: MomentumContrast, epoch: int, arch: str,
                        optimizer_state: Mapping[str, Any] | None) -> dict[str, Any]:
    """A checkpoint dict exactly like the official main_moco.py saves."""
    return {
        "epoch": epoch,
        "arch": arch,
        "state_dict": to_official_state_dict(objective, "module."),
        "optimizer": dict(optimizer_state) if optimizer_state is not None else {},
    }


class MocoFormat(CheckpointFormat):
    """The official MoCo checkpoint: `{'epoch', 'arch', 'state_dict', 'optimizer'}` with the
    query trunk under `module.encoder_q.` (`module.` only when trained with DDP)."""

    def __init__(self, params: Params | None = None) -> None:
        pass

    def select(self, state: Mapping[str, Tensor], meta: Mapping[str, Any]
               ) -> tuple[dict[str, Tensor], str] | None:
        for prefix in (f"module.{Q}.", f"{Q}."):
            picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if picked:
                return picked, prefix
        return None

    def export(self, trunk: Mapping[str, Tensor], encoder: Encoder,
               encoder_config: Mapping[str, Any]) -> dict[str, Any]:
        """What main_lincls.py reads: the trunk under `module.encoder_q.` (no head, no
        optimizer state), with `arch` naming the encoder."""
        return {"epoch": 0, "arch": str(encoder_config.get("type", "")),
                "state_dict": {f"module.{Q}.{k}": v.detach().cpu() for k, v in trunk.items()},
                "optimizer": {}}


def to_official_state_dict(objective: MomentumContrast, prefix: str = "module.") -> dict[str, Tensor]:
    """State dict in the official MoCo layout (`module.encoder_q.conv1.weight`, ...)."""
    objective.branches()
    return {prefix + _native_to_official(k): v for k, v in objective.state_dict().items()}

def load_official_state_dict(objective: MomentumContrast, state_dict: Mapping[str, Any],
                         strict: bool = True) -> tuple[list[str], list[str]]:
    """Load an official-layout state dict, with or without `module.` on each key.

    Also accepts a whole official checkpoint (`{'state_dict': ...}`). Returns the
    (missing, unexpected) official keys; raises CheckpointError if strict and any.
    """
    objective.branches()
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    native: dict[str, Any] = {}
    for key, value in state_dict.items():
        bare = key[len("module."):] if key.startswith("module.") else key
        native[_official_to_native(bare)] = value
    own = objective.state_dict()
    for key, value in native.items():
        if key in own and isinstance(value, Tensor) and value.shape != own[key].shape:
            hint = "build the objective/encoder with the checkpoint's settings"
            if key == "queue":
                hint = (f"the checkpoint has dim={value.shape[0]}, queue_size={value.shape[1]};"
                        f" set those parameters")
            raise CheckpointError(
                f"checkpoint key {_native_to_official(key)!r} has shape "
                f"{tuple(value.shape)}, this objective expects {tuple(own[key].shape)}", hint)
    result = objective.load_state_dict(native, strict=False)
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
    for branch in OFFICIAL_BRANCHES:
        head = f"{branch}.trunk."
        if key.startswith(head):
            return f"{branch}." + key[len(head):]
    return key


def _official_to_native(key: str) -> str:
    for branch in OFFICIAL_BRANCHES:
        head = f"{branch}."
        if key.startswith(head):
            rest = key[len(head):]
            if rest.startswith("fc.") or rest == "fc":
                return key
            return f"{branch}.trunk.{rest}"
    return key


def _preview(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


@hookimpl
def register_objectives(register: Register) -> None:
    register("moco-queue", MocoQueue, params=MocoQueueParams,
             summary="MoCo v2: momentum key encoder, queue of negatives, InfoNCE (official)")


@hookimpl
def register_checkpoint_formats(register: Register) -> None:
    register("moco", MocoFormat,
             summary="official MoCo v1/v2 checkpoint (module.encoder_q.*), e.g. moco_v2_200ep")
