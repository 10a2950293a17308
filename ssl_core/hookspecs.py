"""The hooks a plugin implements: one per component kind, all of the same shape.

Each hook receives a `register` callable::

    @hookimpl
    def register_encoders(register):
        register("resnet18", build_resnet18, params=ResNetParams, summary="torchvision ResNet-18")

`register(name, factory, params=None, summary="")` adds one component. `factory` is
called with the validated `params` model instance (an empty one when `params` is
None) and returns the component. Parameter models should subclass
`ssl_core.Params`, which rejects unknown keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("sslc")
hookimpl = pluggy.HookimplMarker("sslc")

Register = Callable[..., None]


@hookspec
def register_datasets(register: Register) -> Any:
    """Register dataset readers (and generators) by name."""


@hookspec
def register_pair_samplers(register: Register) -> Any:
    """Register PairSamplers: what counts as a positive pair."""


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


#: component kind -> hook name, in the order they are listed to users
KIND_HOOKS: dict[str, str] = {
    "dataset": "register_datasets",
    "pair-sampler": "register_pair_samplers",
    "encoder": "register_encoders",
    "objective": "register_objectives",
    "invariance-probe": "register_invariance_probes",
    "evaluator": "register_evaluators",
}
