"""What training composes: pair samplers, view augmentations and contrastive objectives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from ssl_core.errors import ComponentError
from ssl_core.interfaces.data import Dataset
from ssl_core.interfaces.encoder import Encoder


class PairSampler(ABC):
    """Decides what counts as a positive pair."""

    #: the keys every batch holds (after `on_device`), checked against the objective's
    #: `needs_keys` by `sslc validate`
    batch_keys: ClassVar[frozenset[str]] = frozenset({"query", "key"})

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


Crop = tuple[int, int, int, int]  # top, left, height, width in pixels (torchvision's order)


class ViewAugmentation(ABC):
    """Turns an image (a frame, or a crop of one) into a view: a normalised float32 tensor
    (3, size, size), channels first. Pair samplers compose one (`views: {type: ..., ...}`)
    instead of each carrying its own augmentation; all randomness is torch's, so the
    trainer's per-item seed fixes a view.

    A sampler that moves boxes with the pixels (e.g. a region tracker) draws the crop itself
    (`draw_crop`, possibly several times) and lets the augmentation do the rest (`finish`).
    With `augment_on == "gpu"` the DataLoader workers call `prepare` (uint8 crop plus the
    drawn parameters) and the trainer's device finishes a batch (`on_device`).
    """

    #: side length of every view, in pixels
    size: int
    #: "cpu": `__call__` does everything in the workers; "gpu": `prepare` + `on_device`
    augment_on: Literal["cpu", "gpu"] = "cpu"

    @abstractmethod
    def draw_crop(self, img: Any) -> Crop:
        """One random crop of PIL image `img`, drawn as `__call__` would draw it."""

    @abstractmethod
    def finish(self, img: Any, crop: Crop) -> tuple[Tensor, bool]:
        """The view of `crop` of `img` (resized to size x size, then the rest of the pipeline)
        and whether it was mirrored left-right (boxes must follow)."""

    def __call__(self, img: Any) -> Tensor:
        """The whole pipeline on PIL image `img`."""
        return self.finish(img, self.draw_crop(img))[0]

    def prepare(self, img: Any) -> tuple[Tensor, bytes]:
        """`augment_on: gpu`, in the workers: a uint8 (3, size, size) crop and every other
        random draw, packed (bytes stay on the host through the default collate)."""
        raise ComponentError(f"{type(self).__name__} has no on-device half",
                             "set `augment_on: cpu` on the view augmentation")

    def on_device(self, views: Tensor, params: Sequence[bytes]) -> Tensor:
        """`augment_on: gpu`, on the trainer's device: finish a batch of `prepare`d crops
        (N, 3, size, size) with their parameters, drawing no random number."""
        raise ComponentError(f"{type(self).__name__} has no on-device half",
                             "set `augment_on: cpu` on the view augmentation")

    def on_device_batch(self, batch: dict[str, Any],
                        keys: Sequence[str] = ("query", "key")) -> dict[str, Any]:
        """A sampler's `on_device`: finish `batch[k]` for each key whose `<k>_params` (from
        `prepare`) are there, in one call; other batches are returned as they are."""
        if self.augment_on == "cpu" or any(f"{k}_params" not in batch for k in keys):
            return batch
        sizes = [len(batch[k]) for k in keys]
        params = [b for k in keys for b in batch[f"{k}_params"]]
        out = self.on_device(torch.cat([batch[k] for k in keys]), params)
        rest = {k: v for k, v in batch.items() if k not in {f"{key}_params" for key in keys}}
        return {**rest, **dict(zip(keys, out.split(sizes), strict=True))}


@dataclass
class ObjectiveOutput:
    loss: Tensor
    #: extra numbers to log; 0-d tensors are welcome (floats force a host sync per step)
    metrics: dict[str, float | Tensor] = field(default_factory=dict)


class ContrastiveObjective(nn.Module, ABC):
    """The loss and its state. Owns the query encoder it trains once `bind` is called."""

    #: the batch keys `forward` reads: a pair sampler must give them all (`batch_keys`)
    needs_keys: ClassVar[frozenset[str]] = frozenset({"query", "key"})

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
