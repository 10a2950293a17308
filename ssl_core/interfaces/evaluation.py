"""Downstream evaluators: how they ask for features (Preprocessing, FeatureFn) and what they
return."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from rich.progress import Progress

from ssl_core.interfaces.data import Dataset, ImageRecord


@dataclass(frozen=True)
class Preprocessing:
    """How an evaluator wants its images turned into network inputs (ImageNet
    normalisation follows), and which of the encoder's outputs it wants back. Part of the
    feature cache key.

    `image_size` is the (height, width) the network sees. `resize` None resizes straight
    to it (FAIR's VOC07 SVM benchmark: 224 x 224); an int resizes the shorter side to
    `resize` and crops the centre `image_size` (MoCo's linear-evaluation val: 256, 224).
    `layer` names the `Encoder.feature_maps(x)` entry returned: "pooled" (N x D, what
    `forward` gives) or a spatial map such as "layer3" / "layer4" (N x C x h x w, for
    dense tasks like segmentation). `dtype` "float16" halves the memory and cache of maps.
    """

    image_size: tuple[int, int]
    resize: int | None = None
    layer: str = "pooled"
    dtype: Literal["float32", "float16"] = "float32"


#: `features(name, records, preprocessing)`: the frozen encoder's pooled features
#: (N x D) or, with `preprocessing.layer`, feature maps (N x C x h x w) of `records`, in
#: order, as `preprocessing.dtype`; extracted once per (encoder, images, preprocessing)
#: and shared through the feature cache. `name` labels progress only.
FeatureFn = Callable[[str, Sequence[ImageRecord], Preprocessing], np.ndarray]


@dataclass
class EvaluationResult:
    """What an evaluator measured: `metrics` are the headline numbers reports show (flat,
    numeric); `details` (per-class scores, chosen hyperparameters, counts) go to JSON only."""

    metrics: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


class Evaluator(ABC):
    """A downstream task on a frozen encoder, working on its (cached) pooled features or
    feature maps."""

    #: the dataset plugin read when an evaluation names no `datasets` entry
    dataset_type: ClassVar[str] = ""

    @abstractmethod
    def evaluate(self, dataset: Dataset, features: FeatureFn, *,
                 test_dataset: Dataset | None = None,
                 progress: Progress | None = None) -> EvaluationResult:
        """Metrics of the frozen encoder behind `features` on `dataset` (its subsets), or
        trained on `dataset` and tested on `test_dataset` when one is given. `progress`,
        when given, is a live rich Progress to add tasks to."""
