"""The component kinds. Core code talks to plugins only through these."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from rich.progress import Progress
from torch import Tensor, nn

from ssl_core.errors import ComponentError

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels


@dataclass(frozen=True)
class ImageRecord:
    """One image (or one box in an image) as a dataset reader found it on disk.

    `group` is what ties records together (an ALOI object, a GOT-10k sequence); `meta`
    carries the dataset's own annotations (angle, cover level, azimuth, ...).
    """

    path: Path
    label: str | None = None
    group: str | None = None
    box: Box | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


class Dataset(ABC):
    """A dataset in its native on-disk layout (or a generator that writes one)."""

    #: names accepted by `records(subset)`, e.g. ("view", "ill", "col") for ALOI
    subsets: ClassVar[tuple[str, ...]] = ("all",)
    #: parameters that choose how much is materialised, never what a file holds (a world
    #: rendering part of a folder): left out of training fingerprints, so changing them
    #: retrains nothing
    content_neutral_params: ClassVar[tuple[str, ...]] = ()
    root: Path

    def prepare(self, progress: Progress | None = None) -> None:  # noqa: B027 - optional hook
        """Check the layout (or synthesize it); raise DataError naming the file at fault.

        `progress`, when given, is a live rich Progress to add a task to for long work."""

    @abstractmethod
    def records(self, subset: str | None = None) -> list[ImageRecord]:
        """Every image of `subset` (the first subset when None), in a stable order."""


class Encoder(nn.Module, ABC):
    """A trunk network. `forward` returns globally pooled pre-FC features (N x feature_dim).

    The class attributes and `infer_params` let sslc load the encoder's weights from
    checkpoints written by other tools without the core knowing any architecture.
    """

    feature_dim: int
    #: state-dict keys every trunk of this class has; a checkpoint's trunk is found under
    #: the prefix P for which P + each anchor key is present
    anchor_keys: ClassVar[tuple[str, ...]] = ()
    #: key prefixes of heads that checkpoints keep beside the trunk (ignored on load)
    head_prefixes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def infer_params(cls, state: Mapping[str, Tensor]) -> dict[str, Any] | None:
        """The params this encoder needs to hold `state` (trunk keys, prefix removed), or
        None when `state` is not a trunk of this encoder."""
        return None

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor: ...

    def checked_feature_dim(self) -> int:
        """`feature_dim`, checked: objectives size their heads with it, and a missing one
        would otherwise surface as a shape error deep inside the first step."""
        dim = getattr(self, "feature_dim", None)
        if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
            raise ComponentError(f"encoder {type(self).__name__} has no positive integer `feature_dim`",
                                 "an Encoder must set feature_dim to the size of its pooled features")
        return dim

    @abstractmethod
    def feature_maps(self, x: Tensor) -> dict[str, Tensor]:
        """Intermediate maps by name (at least "layer3" for ROI pooling) and "pooled"."""

    def feature_map(self, x: Tensor, layer: str) -> Tensor:
        """The `layer` entry of `feature_maps(x)` (KeyError if there is none). Override it to
        stop at that layer: the region tracker and layer evaluators need one map, and the
        layers after it are wasted work."""
        return self.feature_maps(x)[layer]


class PairSampler(ABC):
    """Decides what counts as a positive pair."""

    @abstractmethod
    def pairs(self, dataset: Dataset) -> torch.utils.data.Dataset:
        """A torch dataset whose items are dicts with at least "query" and "key" tensors."""

    def on_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Finish a batch on the training device (e.g. augment on the GPU): the trainer calls
        it after moving each batch there. The default leaves the batch as it is."""
        return batch

    #: True when the sampler needs a frozen encoder (e.g. to track regions by their
    #: features): the train section's `sampler_encoder` names the recipe model to use
    wants_encoder: ClassVar[bool] = False

    def use_encoder(self, encoder: Encoder, encoder_id: str) -> None:  # noqa: B027
        """Receive the frozen encoder named by `sampler_encoder` before `pairs()` is called;
        `encoder_id` identifies its weights (for caches keyed on them)."""

    def stats(self) -> dict[str, Any]:
        """Numbers the run's train result should keep (e.g. track quality), after `pairs()`."""
        return {}


@dataclass
class ObjectiveOutput:
    loss: Tensor
    #: extra numbers to log; 0-d tensors are welcome (floats force a host sync per step)
    metrics: dict[str, float | Tensor] = field(default_factory=dict)


class ContrastiveObjective(nn.Module, ABC):
    """The loss and its state. Owns the query encoder it trains once `bind` is called."""

    @abstractmethod
    def bind(self, encoder: Encoder) -> None:
        """Attach the encoder to train and build heads, momentum copies, queues."""

    @property
    @abstractmethod
    def encoder(self) -> Encoder:
        """The trained (query) encoder: what probes and evaluators use."""

    @abstractmethod
    def forward(self, batch: Mapping[str, Tensor]) -> ObjectiveOutput: ...

    def check_batch_size(self, batch_size: int) -> None:  # noqa: B027 - optional hook
        """Raise ComponentError when the objective cannot run with this global batch size."""


@dataclass(frozen=True)
class ProbeItem:
    record: ImageRecord
    trajectory: str
    label: str


@dataclass
class ProbeSet:
    """A probe's trajectories: which image rows share a trajectory, and each one's class."""

    probe: str
    items: Sequence[ProbeItem]
    image_size: tuple[int, int]  # (height, width) the crops are resized to
    #: what the probe read, kept and skipped (sequences without labels, objects without
    #: viewpoint, ...), so a report can say how much of a dataset a score rests on
    stats: dict[str, int] = field(default_factory=dict)

    def trajectories(self) -> list[str]:
        return [it.trajectory for it in self.items]

    def labels(self) -> list[str]:
        return [it.label for it in self.items]


class InvarianceProbe(ABC):
    """Builds trajectories from a dataset, as the paper's authors did."""

    #: the dataset plugin this probe reads by default, and the subset it uses
    dataset_type: ClassVar[str]
    invariance: ClassVar[str] = ""

    @abstractmethod
    def build(self, dataset: Dataset) -> ProbeSet: ...


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


class CheckpointFormat(ABC):
    """Where one training framework keeps the encoder's trunk in its checkpoints.

    The core reads the file and flattens it to a `{dotted key: tensor}` mapping; a
    format picks the trunk's tensors out of that mapping and, for `sslc export`, puts a
    trunk back into the framework's layout.
    """

    @abstractmethod
    def select(self, state: Mapping[str, Tensor], meta: Mapping[str, Any]
               ) -> tuple[dict[str, Tensor], str] | None:
        """The tensors of this layout's trunk (its prefix removed) and that prefix, or None
        when `state` is not in this layout. `meta` holds the file's non-tensor entries."""

    def export(self, trunk: Mapping[str, Tensor], encoder: Encoder,
               encoder_config: Mapping[str, Any]) -> dict[str, Any]:
        """A checkpoint in this layout holding `trunk` (the encoder's own state dict)."""
        raise NotImplementedError(f"{type(self).__name__} cannot write checkpoints")


#: what an object registered for each kind must be an instance of
KIND_BASES: dict[str, type] = {
    "dataset": Dataset,
    "pair-sampler": PairSampler,
    "encoder": Encoder,
    "objective": ContrastiveObjective,
    "invariance-probe": InvarianceProbe,
    "evaluator": Evaluator,
    "checkpoint-format": CheckpointFormat,
}
