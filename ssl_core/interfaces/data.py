"""What datasets give: image records (an image or a box in one, with an optional in-memory
transform) and the Dataset contract."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rich.progress import Progress

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels


class ImageTransform(ABC):
    """A change made to an image in memory after it is loaded, cropped to its box and
    resized to the network's input (a rotation, a blur, a JPEG round trip, ...), so a probe
    can measure invariance to synthetic transformations without writing files.

    It must be deterministic (the same image in, the same pixels out: seed any noise from
    `key`), picklable (DataLoader workers apply it) and named by `key`, which enters the
    feature cache key: two transforms with one key must give the same pixels."""

    @property
    @abstractmethod
    def key(self) -> str:
        """What the transform does, e.g. `rotation=90`: part of the feature cache key."""

    @abstractmethod
    def __call__(self, img: Any) -> Any:
        """PIL image in (RGB, at the probe's size), PIL image out (RGB, same size)."""


@dataclass(frozen=True)
class ImageRecord:
    """One image (or one box in an image) as a dataset reader found it on disk.

    `group` is what ties records together (an ALOI object, a GOT-10k sequence); `meta`
    carries the dataset's own annotations (angle, cover level, azimuth, ...); `transform`
    (probes only) changes the image in memory before features are extracted.
    """

    path: Path
    label: str | None = None
    group: str | None = None
    box: Box | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    transform: ImageTransform | None = None


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
