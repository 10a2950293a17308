"""What an invariance probe builds: trajectories of probe items, each with its class."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ssl_core.interfaces.data import Dataset, ImageRecord


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
