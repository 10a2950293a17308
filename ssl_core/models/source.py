"""An encoder that is not read from a file: a registered architecture initialised from a
seed. A recipe's untrained model (`init_seed`) and `--checkpoint random:ARCH` (the "no
learning" baseline) are both made here, so the same seed gives the same weights in both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ssl_core.errors import ComponentError
from ssl_core.interfaces import Encoder
from ssl_core.models.checkpoints import split_arch
from ssl_core.plugin.registry import Registry

RANDOM_PREFIX = "random:"
#: the seed of `random:ARCH` encoders, as a recipe model's default `init_seed`
RANDOM_SEED = 0


def seeded_encoder(registry: Registry, config: Mapping[str, Any], seed: int,
                   where: str = "") -> Encoder:
    """A registered encoder initialised from `seed`, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder: Encoder = registry.create("encoder", config, where=where)
    return encoder


def random_encoder(spec: str, registry: Registry) -> tuple[Encoder, dict[str, Any]]:
    """`random:ARCH` (e.g. `random:resnet50`, `random:timm:vit_small_patch16_224`): the
    architecture at `RANDOM_SEED`, in eval mode, and a record of where it came from."""
    arch = spec[len(RANDOM_PREFIX):]
    if not arch:
        raise ComponentError("--checkpoint random: needs an architecture, e.g. random:resnet50",
                             f"available encoders: {', '.join(registry.names('encoder'))}")
    kind, params = split_arch(arch)
    encoder = seeded_encoder(registry, {"type": kind, **params}, RANDOM_SEED,
                             where="--checkpoint random:")
    return encoder.eval(), {"checkpoint": spec, "arch": arch, "seed": RANDOM_SEED,
                            "format": "random"}
