"""Measuring an encoder on an invariance probe: the one path `sslc probe` and recipes share.

An encoder's identity is the digest of its weights, however it was obtained (trained
here, read from any checkpoint layout, or randomly initialised with a seed), so the
feature cache is shared between every caller that measures the same weights on the
same images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ssl_core.interfaces import Encoder, InvarianceProbe, ProbeSet
from ssl_core.measure.features import FeatureCache, features_for
from ssl_core.measure.ris import DEFAULT_RESAMPLES, representation_invariance_score


def encoder_identity(encoder: nn.Module) -> str:
    """sha256 over the encoder's class and every tensor of its state dict, in order."""
    h = hashlib.sha256(f"{type(encoder).__module__}.{type(encoder).__qualname__}".encode())
    for key, tensor in encoder.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return f"weights:{h.hexdigest()}"


def measure(
    encoder: Encoder,
    probe: InvarianceProbe,
    probe_set: ProbeSet,
    *,
    top_k: Sequence[int],
    cache: FeatureCache | None,
    encoder_id: str | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    allow_tf32: bool = False,
    resamples: int = DEFAULT_RESAMPLES,
    description: str | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Top-K RIS (with bootstrap intervals) of `encoder` on `probe_set`, and its features.

    The result row holds the scores (`top10`, ...), their intervals, how many rows and
    trajectories they rest on, the probe's own stats and whether the features came
    from the cache (`hit`, `miss` or `off`).
    """
    ident = encoder_id or encoder_identity(encoder)
    before = cache.hits if cache is not None else 0
    feats = features_for(encoder, probe_set, ident, cache=cache if cache is not None else False,
                         batch_size=batch_size, num_workers=num_workers, device=device,
                         allow_tf32=allow_tf32,
                         description=description or f"features {probe_set.probe}")
    cached = "off" if cache is None else ("hit" if cache.hits > before else "miss")
    ris = representation_invariance_score(feats, probe_set.trajectories(), probe_set.labels(),
                                          top_k=tuple(top_k), resamples=resamples)
    row: dict[str, Any] = {
        "invariance": probe.invariance,
        "feature_dim": int(feats.shape[1]),
        "cache": cached,
        "encoder_id": ident,
        **ris.as_dict(),
        "probe_stats": dict(probe_set.stats),
    }
    return row, feats
