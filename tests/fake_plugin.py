"""A small, complete plugin written for the core's tests: the plugin host and the contract
kit are tested on it in a fresh host, never on the built-in plugins.

Real (tiny) components: a dataset listing a folder's PNGs, a pair sampler making two
noisy copies of an image, a two-layer conv encoder and an in-batch InfoNCE objective.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from ssl_core import (
    ContrastiveObjective,
    DataError,
    Dataset,
    Encoder,
    ImageRecord,
    ObjectiveOutput,
    PairSampler,
    Params,
    Register,
    hookimpl,
    load_rgb,
)


class FakeFolderParams(Params):
    root: Path = Field(description="folder of .png images")


class FakeFolder(Dataset):
    """Every PNG of a folder, sorted by name."""

    def __init__(self, params: FakeFolderParams) -> None:
        self.root = params.root

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        if not self.root.is_dir():
            raise DataError(f"fake-folder: no folder {self.root}", "create it")
        return [ImageRecord(path=p) for p in sorted(self.root.glob("*.png"))]


class NoisyCopiesParams(Params):
    size: int = Field(16, ge=4, description="side of each view")
    noise: float = Field(0.1, ge=0.0, description="std of the Gaussian noise added to each view")


class NoisyPairs(torch.utils.data.Dataset):
    def __init__(self, records: list[ImageRecord], p: NoisyCopiesParams) -> None:
        self.records, self.p = records, p

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        img = load_rgb(self.records[index].path).resize((self.p.size, self.p.size))
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
        return {"query": x + self.p.noise * torch.randn_like(x),
                "key": x + self.p.noise * torch.randn_like(x), "index": index}


class NoisyCopies(PairSampler):
    """Positive pair = the image twice, each with its own Gaussian noise (torch RNG)."""

    def __init__(self, params: NoisyCopiesParams) -> None:
        self.params = params

    def pairs(self, dataset: Dataset) -> NoisyPairs:
        return NoisyPairs(dataset.records(), self.params)


class TinyNetParams(Params):
    width: int = Field(8, ge=1, description="channels of the last conv, = feature_dim")


class TinyNet(Encoder):
    def __init__(self, params: TinyNetParams) -> None:
        super().__init__()
        self.feature_dim = params.width
        self.layer1 = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4),
                                    nn.ReLU())
        self.layer3 = nn.Conv2d(4, params.width, 3, stride=2, padding=1)

    def feature_maps(self, x: Tensor) -> dict[str, Tensor]:
        fmap = self.layer3(self.layer1(x))
        return {"layer3": fmap, "pooled": fmap.mean(dim=(2, 3))}

    def forward(self, x: Tensor) -> Tensor:
        return self.feature_maps(x)["pooled"]


class InfoNCEParams(Params):
    temperature: float = Field(0.2, gt=0, description="softmax temperature")


class InBatchInfoNCE(ContrastiveObjective):
    """Query i against every key of the batch; key i is its positive."""

    def __init__(self, params: InfoNCEParams) -> None:
        super().__init__()
        self.params = params
        self.trunk: Encoder | None = None

    def bind(self, encoder: Encoder) -> None:
        self.trunk = encoder

    @property
    def encoder(self) -> Encoder:
        assert self.trunk is not None, "bind() first"
        return self.trunk

    def forward(self, batch: Mapping[str, Tensor]) -> ObjectiveOutput:
        q = F.normalize(self.encoder(batch["query"]), dim=1)
        k = F.normalize(self.encoder(batch["key"]), dim=1)
        logits = q @ k.T / self.params.temperature
        target = torch.arange(len(q))
        loss = F.cross_entropy(logits, target)
        return ObjectiveOutput(loss, {"loss": loss.item(),
                                      "acc1": (logits.argmax(1) == target).float().mean().item()})


@hookimpl
def register_datasets(register: Register) -> None:
    register("fake-folder", FakeFolder, params=FakeFolderParams, summary="PNGs of a folder")


@hookimpl
def register_pair_samplers(register: Register) -> None:
    register("fake-noisy-copies", NoisyCopies, params=NoisyCopiesParams,
             summary="two noisy copies of one image")


@hookimpl
def register_encoders(register: Register) -> None:
    register("fake-net", TinyNet, params=TinyNetParams, summary="a two-conv encoder")


@hookimpl
def register_objectives(register: Register) -> None:
    register("fake-infonce", InBatchInfoNCE, params=InfoNCEParams, summary="in-batch InfoNCE")
