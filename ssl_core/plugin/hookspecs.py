"""The hooks a plugin implements: one per component kind, all of the same shape.

Each hook receives a `register` callable::

    @hookimpl
    def register_pair_samplers(register: Register) -> None:
        register("aggressive-crop", AggressiveCrop, params=AggressiveCropParams,
                 summary="two MoCo-v2 augmentations of one image")

`register(name, cls, params=None, summary="")` adds one component: `cls` is the
component's class, whose `__init__` takes the validated `params` model instance (an
empty one when `params` is None). Parameter models subclass `ssl_core.Params`, which
rejects unknown keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy
from pydantic import BaseModel

hookspec = pluggy.HookspecMarker("sslc")
hookimpl = pluggy.HookimplMarker("sslc")

class Register(Protocol):
    """The callable each `register_*` hook receives."""

    def __call__(self, name: str, cls: Callable[..., Any], *,
                 params: type[BaseModel] | None = None, summary: str = "") -> None: ...


@hookspec
def register_datasets(register: Register) -> Any:
    """Register dataset readers (and generators) by name."""


@hookspec
def register_pair_samplers(register: Register) -> Any:
    """Register PairSamplers: what counts as a positive pair."""


@hookspec
def register_view_augmentations(register: Register) -> Any:
    """Register ViewAugmentations: how an image becomes a view; pair samplers compose them."""


@hookspec
def register_encoders(register: Register) -> Any:
    """Register Encoders: networks exposing pooled features and intermediate maps."""


@hookspec
def register_objectives(register: Register) -> Any:
    """Register ContrastiveObjectives: the loss and its state (momentum encoder, queue)."""


@hookspec
def register_invariance_probes(register: Register) -> Any:
    """Register InvarianceProbes: how trajectories are built from a dataset."""


@hookspec
def register_evaluators(register: Register) -> Any:
    """Register Evaluators: a downstream task and its metric."""


@hookspec
def register_checkpoint_formats(register: Register) -> Any:
    """Register CheckpointFormats: where a training framework keeps the trunk's weights."""


#: component kind -> hook name, in the order they are listed to users
KIND_HOOKS: dict[str, str] = {
    "dataset": "register_datasets",
    "pair-sampler": "register_pair_samplers",
    "view-augmentation": "register_view_augmentations",
    "encoder": "register_encoders",
    "objective": "register_objectives",
    "invariance-probe": "register_invariance_probes",
    "evaluator": "register_evaluators",
    "checkpoint-format": "register_checkpoint_formats",
}
