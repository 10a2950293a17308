"""Evaluating an encoder downstream: the one path `sslc evaluate` and recipes share.

An evaluator never touches the encoder: it asks for the pooled features (or, naming a
`Preprocessing.layer`, the feature maps) of the images it needs through a `FeatureFn`
bound to one encoder. Features come from the same cache as the probes', keyed by the
encoder's weights, the images (paths, boxes, file stats) and their preprocessing (layer
included), so evaluators (and probes) reading the same images share them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from ssl_core.errors import ComponentError, DataError
from ssl_core.interfaces import (
    Dataset,
    Encoder,
    EvaluationResult,
    Evaluator,
    ImageRecord,
    Preprocessing,
)
from ssl_core.kit.atomic import atomic_path
from ssl_core.kit.progress import is_quiet, progress_bar
from ssl_core.measure.features import FeatureCache, ImageRows, features_for, rows_metadata
from ssl_core.measure.probing import encoder_identity

#: keys of an evaluation's recipe entry that the runner reads (never passed to the evaluator)
EVALUATION_KEYS = ("model", "dataset", "test_dataset")


@dataclass(frozen=True)
class EvaluationConfig:
    """An evaluation's recipe entry, split into the evaluator's config and the runner's keys."""

    component: dict[str, Any]
    model: str | None = None
    dataset: str | None = None
    test_dataset: str | None = None


def split_config(entry: Mapping[str, Any]) -> EvaluationConfig:
    """`{type: voc07-svm, dataset: voc, model: moco, ...}` -> its parts (e.g. as in a recipe)."""
    cfg = dict(entry)
    keys = {k: cfg.pop(k, None) for k in EVALUATION_KEYS}
    return EvaluationConfig(cfg, **keys)


def check_dataset_names(config: EvaluationConfig, datasets: Sequence[str], where: str) -> None:
    """A clear error for an evaluation naming a dataset the recipe does not define."""
    for key in ("dataset", "test_dataset"):
        name = getattr(config, key)
        if name is not None and name not in datasets:
            raise DataError(f"{where}.{key}: no dataset named {name!r}",
                            f"datasets in this recipe: {', '.join(datasets) or '(none)'}")


@dataclass
class UsedFeatures:
    """Features an evaluator asked for, kept for `--save-features` and the result's record."""

    name: str
    records: list[ImageRecord]
    preprocessing: Preprocessing
    features: np.ndarray
    cache: str  # "hit", "miss" or "off"


class Featurizer:
    """The `FeatureFn` handed to evaluators: one encoder, the shared cache, one live bar."""

    def __init__(self, encoder: Encoder, encoder_id: str, *, cache: FeatureCache | None,
                 batch_size: int = 64, num_workers: int = 0,
                 device: str | torch.device | None = None, allow_tf32: bool = False,
                 progress: Progress | None = None, description: str = "") -> None:
        self.encoder = encoder
        self.encoder_id = encoder_id
        self.cache = cache
        self.kwargs: dict[str, Any] = {"batch_size": batch_size, "num_workers": num_workers,
                                       "device": device, "allow_tf32": allow_tf32}
        self.progress = progress
        self.description = description
        self.used: list[UsedFeatures] = []

    def __call__(self, name: str, records: Sequence[ImageRecord],
                 preprocessing: Preprocessing) -> np.ndarray:
        rows = ImageRows(name, list(records), preprocessing)
        before = self.cache.hits if self.cache is not None else 0
        label = f"{self.description} {name}".strip()
        feats = features_for(self.encoder, rows, self.encoder_id,
                             cache=self.cache if self.cache is not None else False,
                             progress=self.progress if self.progress is not None else False,
                             description=f"features {label}", **self.kwargs)
        state = "off" if self.cache is None else ("hit" if self.cache.hits > before else "miss")
        self.used.append(UsedFeatures(name, list(records), preprocessing, feats, state))
        return feats


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluate(
    encoder: Encoder,
    evaluator: Evaluator,
    dataset: Dataset,
    *,
    test_dataset: Dataset | None = None,
    cache: FeatureCache | None,
    encoder_id: str | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    allow_tf32: bool = False,
    description: str = "",
) -> tuple[dict[str, Any], list[UsedFeatures]]:
    """Run `evaluator` on the frozen `encoder`; returns the result row and the features used.

    The row holds `metrics` (the headline numbers), `details`, the encoder identity and,
    per feature set, its size and whether it came from the cache.
    """
    ident = encoder_id or encoder_identity(encoder)
    with progress_bar() as bar:
        live = None if is_quiet() else bar
        featurize = Featurizer(encoder, ident, cache=cache, batch_size=batch_size,
                               num_workers=num_workers, device=device, allow_tf32=allow_tf32,
                               progress=live, description=description)
        result = evaluator.evaluate(dataset, featurize, test_dataset=test_dataset, progress=live)
    if not isinstance(result, EvaluationResult):
        raise ComponentError(f"evaluator {type(evaluator).__qualname__} returned a "
                             f"{type(result).__name__}, not an EvaluationResult",
                             "report this to the plugin's author")
    metrics: dict[str, Any] = {}
    for key, value in result.metrics.items():
        if not isinstance(value, int | float | np.number) or isinstance(value, bool):
            raise ComponentError(f"evaluator {type(evaluator).__qualname__}: metric {key!r} is "
                                 f"a {type(value).__name__}, not a number",
                                 "metrics are flat numbers; put the rest in `details`")
        metrics[key] = _plain(float(value))
    row: dict[str, Any] = {
        "metrics": metrics,
        "details": _plain(result.details),
        "encoder_id": ident,
        "features": [_features_entry(u) for u in featurize.used],
    }
    return row, featurize.used


def _features_entry(u: UsedFeatures) -> dict[str, Any]:
    """One feature set's line in a result; maps add their layer and C x h x w shape."""
    entry: dict[str, Any] = {"name": u.name, "rows": int(u.features.shape[0]),
                             "feature_dim": int(u.features.shape[1]), "cache": u.cache,
                             "image_size": list(u.preprocessing.image_size),
                             "resize": u.preprocessing.resize}
    if u.preprocessing.layer != "pooled":
        entry.update(layer=u.preprocessing.layer, shape=[int(d) for d in u.features.shape[1:]],
                     dtype=str(u.features.dtype))
    return entry


def save_features(path: Path, used: Sequence[UsedFeatures]) -> Path:
    """Write the features an evaluation used as one `.npz` (no pickle): per feature set
    NAME, `NAME.feat` (N x D float32; feature maps N x C x h x w, float16 when asked so),
    `NAME.paths`, `NAME.boxes` (N x 4, NaN = whole image) and `NAME.labels` (the record's
    label, '' where it has none)."""
    arrays: dict[str, np.ndarray] = {}
    for u in used:
        paths, boxes = rows_metadata(u.records)
        keep = np.float16 if u.features.dtype == np.float16 else np.float32
        arrays[f"{u.name}.feat"] = np.ascontiguousarray(u.features, dtype=keep)
        arrays[f"{u.name}.paths"] = np.asarray(paths, dtype=str)
        arrays[f"{u.name}.boxes"] = boxes
        arrays[f"{u.name}.labels"] = np.asarray([r.label or "" for r in u.records], dtype=str)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]  # str arrays: loads without pickle
    return path
