"""Pair-sampler `aggressive-crop`: two MoCo-v2 augmentations of one image form a positive pair.

The pipeline, in the official MoCo-v2 order: RandomResizedCrop(size, scale 0.2-1.0);
ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8; RandomGrayscale p 0.2; GaussianBlur with
sigma U(0.1, 2.0) and p 0.5; horizontal flip; to tensor; ImageNet normalisation.
All randomness comes from torch's RNG (torchvision.transforms.v2 draws from it), so
`torch.manual_seed` and DataLoader worker seeding make the pairs reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from pydantic import Field, model_validator
from torch import Tensor
from torchvision.transforms import v2

from ssl_core import Dataset, ImageRecord, PairSampler, Params, hookimpl
from ssl_core.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class AggressiveCropParams(Params):
    """The MoCo-v2 augmentation, every knob exposed; defaults are the official values."""

    size: int = Field(224, ge=1, description="output side length of each view, in pixels")
    scale: tuple[float, float] = Field((0.2, 1.0), description="RandomResizedCrop area range")
    ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="RandomResizedCrop aspect range")
    brightness: float = Field(0.4, ge=0.0)
    contrast: float = Field(0.4, ge=0.0)
    saturation: float = Field(0.4, ge=0.0)
    hue: float = Field(0.1, ge=0.0, le=0.5)
    jitter_p: float = Field(0.8, ge=0.0, le=1.0)
    grayscale_p: float = Field(0.2, ge=0.0, le=1.0)
    blur_p: float = Field(0.5, ge=0.0, le=1.0)
    blur_sigma: tuple[float, float] = Field((0.1, 2.0), description="Gaussian sigma range")
    blur_kernel: int | None = Field(None, ge=1, description="odd; None = ~10% of size")
    flip_p: float = Field(0.5, ge=0.0, le=1.0)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    subset: str | None = None

    @model_validator(mode="after")
    def _check_ranges(self) -> AggressiveCropParams:
        lo, hi = self.scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {self.scale}")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {self.ratio}")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}")
        if self.blur_kernel is not None and self.blur_kernel % 2 == 0:
            raise ValueError(f"blur_kernel must be odd, got {self.blur_kernel}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        return self


def blur_kernel_size(size: int) -> int:
    """~10% of the image side, made odd (at least 3), as in SimCLR / MoCo-v2 ports."""
    k = int(0.1 * size)
    return max(3, k + 1 if k % 2 == 0 else k)


def build_transform(p: AggressiveCropParams) -> v2.Compose:
    """The MoCo-v2 augmentation as a torchvision v2 pipeline (PIL image in, tensor out)."""
    kernel = p.blur_kernel or blur_kernel_size(p.size)
    return v2.Compose([
        v2.RandomResizedCrop(p.size, scale=p.scale, ratio=p.ratio, antialias=True),
        v2.RandomApply([v2.ColorJitter(p.brightness, p.contrast, p.saturation, p.hue)],
                       p=p.jitter_p),
        v2.RandomGrayscale(p=p.grayscale_p),
        v2.RandomApply([v2.GaussianBlur(kernel, sigma=p.blur_sigma)], p=p.blur_p),
        v2.RandomHorizontalFlip(p=p.flip_p),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(p.mean), std=list(p.std)),
    ])


def load_rgb(record: ImageRecord) -> Image.Image:
    """Read a record's image as RGB, cropped to its box; a bad file is a DataError naming it."""
    path = Path(record.path)
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")  # forces a full decode: truncation shows up here
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}",
                        "check the dataset root, or re-run the dataset's prepare step") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(
            f"cannot read image {path}: {err}",
            "the file is truncated or corrupt; remove it or replace it with a good copy",
        ) from None
    if record.box is None:
        return img
    x1, y1, x2, y2 = record.box
    w, h = img.size
    left, top = max(0, int(round(x1))), max(0, int(round(y1)))
    right, bottom = min(w, int(round(x2))), min(h, int(round(y2)))
    if right <= left or bottom <= top:
        raise DataError(
            f"box {record.box} of image {path} ({w}x{h}) is empty after clipping to the image",
            "boxes are (x1, y1, x2, y2) in pixels with x2 > x1 and y2 > y1; fix the annotation",
        )
    return img.crop((left, top, right, bottom))


class CropPairs(torch.utils.data.Dataset):
    """Items `{"query", "key", "index"}`: two independent views of record `index`."""

    def __init__(self, records: Sequence[ImageRecord], transform: v2.Compose) -> None:
        self.records = list(records)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        img = load_rgb(self.records[index])
        query: Tensor = self.transform(img)
        key: Tensor = self.transform(img)
        return {"query": query, "key": key, "index": index}


class AggressiveCrop(PairSampler):
    """Positive pair = two aggressive augmentations of the same image (MoCo v2)."""

    def __init__(self, params: AggressiveCropParams | None = None) -> None:
        self.params = params or AggressiveCropParams()
        self.transform = build_transform(self.params)

    def pairs(self, dataset: Dataset) -> CropPairs:
        records = dataset.records(self.params.subset)
        if not records:
            where = getattr(dataset, "root", "")
            raise DataError(
                f"dataset {type(dataset).__name__} at {where or '(no root)'} has no images"
                f" in subset {self.params.subset or '(default)'}",
                "check the dataset root and the sampler's `subset` parameter",
            )
        return CropPairs(records, self.transform)

    def describe(self) -> dict[str, Any]:
        return {"type": "aggressive-crop", **self.params.model_dump()}


@hookimpl
def register_pair_samplers(register: Any) -> None:
    register("aggressive-crop", AggressiveCrop, params=AggressiveCropParams,
             summary="two MoCo-v2 augmentations (crop, jitter, gray, blur, flip) of one image")
