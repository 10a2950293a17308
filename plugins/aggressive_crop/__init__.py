"""`aggressive-crop`: the MoCo-v2 augmentation, as a view augmentation and as a pair sampler.

It registers a **view-augmentation** `aggressive-crop` (the pipeline below: what the video
samplers and the region tracker compose as their `views`) and a **pair-sampler**
`aggressive-crop` (two such views of one image form a positive pair).

The pipeline is the official MoCo-v2 loader's (facebookresearch/moco, `main_moco.py`
with `--aug-plus`), step for step on the PIL image: RandomResizedCrop(size, scale
0.2-1.0); ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8; RandomGrayscale p 0.2; PIL
`GaussianBlur(radius=sigma)`, sigma ~ U(0.1, 2.0), with p 0.5; horizontal flip;
ToTensor; ImageNet normalisation (the last two fused into one pass). The official blur draws sigma with Python's `random`;
here it comes from torch's RNG like every other draw, so the trainer's per-(seed,
epoch, image) `torch.manual_seed` fixes the whole view.

With `augment_on: gpu` the workers stop after the crop (uint8 views plus every drawn
parameter) and `on_device` does the rest on the training device (module `gpu`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageFilter
from pydantic import Field, model_validator
from torch import Tensor
from torchvision import transforms
from torchvision.transforms import functional as TF

from ssl_core import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Crop,
    DataError,
    Dataset,
    ImageRecord,
    PairSampler,
    Params,
    Register,
    ViewAugmentation,
    crop_box,
    hookimpl,
    load_rgb,
)
from sslc_plugins.aggressive_crop.gpu import augment_views, draw_view, unpack


class MocoV2ViewParams(Params):
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
    blur_sigma: tuple[float, float] = Field(
        (0.1, 2.0), description="range of the PIL GaussianBlur radius (sigma), drawn uniformly")
    flip_p: float = Field(0.5, ge=0.0, le=1.0)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    augment_on: Literal["cpu", "gpu"] = Field(
        "cpu", description="cpu: the whole pipeline in the DataLoader workers; gpu: workers decode "
        "and crop, the trainer's device does jitter, grayscale, blur, flip and normalisation")

    @model_validator(mode="after")
    def _check_ranges(self) -> MocoV2ViewParams:
        lo, hi = self.scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {self.scale}")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {self.ratio}")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        return self


class AggressiveCropParams(MocoV2ViewParams):
    """The pair sampler's: the MoCo-v2 knobs and which subset of the dataset to read."""

    subset: str | None = None


class GaussianBlur:
    """The official MoCo-v2 blur: PIL `GaussianBlur(radius=sigma)`, sigma ~ U(low, high).

    PIL blurs with the whole (extended-box) Gaussian at any sigma, unlike a fixed
    torchvision kernel, which a small image would truncate. Sigma is drawn from torch's
    RNG, not `random` as the official code does, so seeding torch fixes the view.
    """

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0)) -> None:
        self.sigma = sigma

    def draw_sigma(self) -> float:
        lo, hi = self.sigma
        return float(torch.empty(()).uniform_(lo, hi))

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.filter(ImageFilter.GaussianBlur(radius=self.draw_sigma()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma})"


class ToNormalizedTensor:
    """ToTensor then Normalize in one pass: float32 (3, H, W) of (pixel / 255 - mean) / std.

    Equal to torchvision's two steps up to float rounding (< 1e-6), without their
    intermediate tensors: 2-3x faster, about a tenth off a 48 px pair (benchmarks/bench_augment.py).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean, self.std = tuple(mean), tuple(std)
        std_t = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1) / std_t

    def __call__(self, img: Image.Image) -> Tensor:
        if img.mode != "RGB":
            img = img.convert("RGB")
        pixels = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)
        return torch.addcmul(self.shift, pixels, self.scale, out=torch.empty(pixels.shape))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


def build_transform(p: MocoV2ViewParams) -> transforms.Compose:
    """The MoCo-v2 augmentation on a PIL image, in the official order (tensor out).

    torchvision's v1 transforms are the official loader's own and draw from torch's RNG;
    on PIL images they are also faster than v2's at small sizes (48 px).
    """
    return transforms.Compose([
        transforms.RandomResizedCrop(p.size, scale=p.scale, ratio=p.ratio),
        transforms.RandomApply(
            [transforms.ColorJitter(p.brightness, p.contrast, p.saturation, p.hue)], p=p.jitter_p),
        transforms.RandomGrayscale(p=p.grayscale_p),
        transforms.RandomApply([GaussianBlur(p.blur_sigma)], p=p.blur_p),
        transforms.RandomHorizontalFlip(p=p.flip_p),
        ToNormalizedTensor(p.mean, p.std),
    ])


def class_indices(records: Sequence[ImageRecord]) -> list[int] | None:
    """Each record's class as its index among the sorted labels, or None unless every
    record has a label (what the `supervised` objective trains on)."""
    labels = [r.label for r in records]
    if not labels or any(label is None for label in labels):
        return None
    index = {name: i for i, name in enumerate(sorted({str(x) for x in labels}))}
    return [index[str(x)] for x in labels]


class MocoV2Views(ViewAugmentation):
    """The view augmentation `aggressive-crop`: the MoCo-v2 pipeline on one image.

    `__call__` is `build_transform`'s Compose; `draw_crop` + `finish` make the same draws in
    the same order for samplers that draw the crop themselves; `prepare` + `on_device` are
    the `augment_on: gpu` split (module `gpu`)."""

    def __init__(self, params: MocoV2ViewParams) -> None:
        self.p = params
        self.size = params.size
        self.augment_on = params.augment_on
        self.transform = build_transform(params)

    def __call__(self, img: Image.Image) -> Tensor:
        out: Tensor = self.transform(img)
        return out

    def draw_crop(self, img: Image.Image) -> Crop:
        top, left, h, w = transforms.RandomResizedCrop.get_params(img, list(self.p.scale),
                                                                  list(self.p.ratio))
        return int(top), int(left), int(h), int(w)

    def finish(self, img: Image.Image, crop: Crop) -> tuple[Tensor, bool]:
        p = self.p
        _, jitter, gray, blur, _, to_tensor = self.transform.transforms
        top, left, h, w = crop
        view = TF.resized_crop(img, top, left, h, w, [p.size, p.size],
                               transforms.InterpolationMode.BILINEAR, antialias=True)
        view = blur(gray(jitter(view)))
        flip = bool(torch.rand(1) < p.flip_p)  # RandomHorizontalFlip's draw
        if flip:
            view = TF.hflip(view)
        return to_tensor(view), flip

    def prepare(self, img: Image.Image) -> tuple[Tensor, bytes]:
        """One crop and its parameters, drawn as the CPU pipeline's transforms draw them."""
        crop, jitter = self.transform.transforms[0], self.transform.transforms[1].transforms[0]
        p = self.p
        return draw_view(img, crop, p.jitter_p, jitter, p.grayscale_p, p.blur_p, p.blur_sigma,
                         p.flip_p)

    def on_device(self, views: Tensor, params: Sequence[bytes]) -> Tensor:
        """Jitter, grayscale, blur, flip and normalise the uint8 crops where they are, with the
        parameters the workers drew (no random draw here: a pure function of the batch, so
        resumed runs stay reproducible)."""
        return augment_views(views, unpack(params), self.p.mean, self.p.std)


class CropPairs(torch.utils.data.Dataset):
    """Items `{"query", "key", "index"}`: two independent views of record `index`, plus
    `"label"` (its class index, see `class_indices`) when every record has a label.

    With `augment_on: gpu` query and key are uint8 crops (3, size, size) and their drawn
    parameters travel as `bytes` (`query_params`, `key_params`: kept on the host by the
    collate); `AggressiveCrop.on_device` turns a batch of them into the CPU path's tensors."""

    def __init__(self, records: Sequence[ImageRecord], views: ViewAugmentation) -> None:
        self.records = list(records)
        self.views = views
        self.labels = class_indices(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        # A training crop keeps only the part of a box inside the image (no black padding).
        img = crop_box(load_rgb(record.path), record.box, record.path, mode="clip")
        item: dict[str, Any] = {"index": index}
        if self.views.augment_on == "gpu":
            item["query"], item["query_params"] = self.views.prepare(img)
            item["key"], item["key_params"] = self.views.prepare(img)
        else:
            item["query"], item["key"] = self.views(img), self.views(img)
        if self.labels is not None:
            item["label"] = self.labels[index]
        return item


class AggressiveCrop(PairSampler):
    """Positive pair = two aggressive augmentations of the same image (MoCo v2)."""

    def __init__(self, params: AggressiveCropParams) -> None:
        self.params = params
        self.views = MocoV2Views(params)
        self.transform = self.views.transform

    def on_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """`augment_on: gpu`: the views' on-device half; identity for `augment_on: cpu`."""
        return self.views.on_device_batch(batch)

    def pairs(self, dataset: Dataset) -> CropPairs:
        records = dataset.records(self.params.subset)
        if not records:
            where = getattr(dataset, "root", "")
            raise DataError(
                f"dataset {type(dataset).__name__} at {where or '(no root)'} has no images"
                f" in subset {self.params.subset or '(default)'}",
                "check the dataset root and the sampler's `subset` parameter",
            )
        return CropPairs(records, self.views)


@hookimpl
def register_pair_samplers(register: Register) -> None:
    register("aggressive-crop", AggressiveCrop, params=AggressiveCropParams,
             summary="two MoCo-v2 augmentations (crop, jitter, gray, PIL blur, flip) of one image")


@hookimpl
def register_view_augmentations(register: Register) -> None:
    register("aggressive-crop", MocoV2Views, params=MocoV2ViewParams,
             summary="the MoCo-v2 augmentation (crop, jitter, gray, PIL blur, flip, normalise) "
                     "of one image; augment_on: gpu finishes views on the training device")
