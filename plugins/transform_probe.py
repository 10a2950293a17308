"""`transform`: invariance to a synthetic transformation, on any image dataset.

Each image is one trajectory; its rows are the image under each value of one sweep
(rotation by 0, 90, 180 and 270 degrees, say), applied in memory at the probe's input size
(no files are written; the feature cache keys on the transformation). RIS then asks, as for
the paper's real-world probes, whether the units that fire for an image keep firing as the
transformation sweeps its values. This is the synthetic side of the invariance literature
since the paper (e.g. Ericsson et al. 2022, "Why do self-supervised models transfer?"),
measured with the same metric, intervals and cache as the real-world probes.

A trajectory's class is the image's label (one class when the dataset has none), so the
firing threshold is set per class, as for the other probes. Every value of a sweep is a
row, repeats included (they give identical rows). Random parts (the occlusion patch's
place, the noise) are seeded from the image's path, so every row of a trajectory and every
rerun see the same ones.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np
import torchvision.transforms.functional as TF
from PIL import Image
from pydantic import Field, model_validator

from ssl_core import (
    DataError,
    Dataset,
    ImageTransform,
    InvarianceProbe,
    Params,
    ProbeItem,
    ProbeSet,
    Register,
    hookimpl,
)

Sweep = Literal["rotation", "gaussian_blur", "brightness", "contrast", "saturation", "hue",
                "grayscale", "scale", "translation", "occlusion", "gaussian_noise",
                "jpeg_quality", "hflip"]

#: each sweep's values when a recipe gives none (what the value means, and its identity):
#: the presets of the invariance literature, from no change to a strong one
PRESETS: dict[str, tuple[list[float], str]] = {
    "rotation": ([0, 90, 180, 270], "degrees, counter-clockwise (0: none)"),
    "gaussian_blur": ([0, 0.5, 1, 2, 4], "sigma in pixels of the probe's input (0: none)"),
    "brightness": ([0.4, 0.7, 1.0, 1.3, 1.6], "factor (1: none)"),
    "contrast": ([0.4, 0.7, 1.0, 1.3, 1.6], "factor (1: none)"),
    "saturation": ([0.0, 0.5, 1.0, 1.5, 2.0], "factor (1: none; 0: grey)"),
    "hue": ([-0.4, -0.2, 0.0, 0.2, 0.4], "shift of the hue circle, in [-0.5, 0.5] (0: none)"),
    "grayscale": ([0.0, 0.5, 1.0], "blend towards grey, in [0, 1] (0: none)"),
    "scale": ([1.0, 1.25, 1.5, 2.0], "zoom into the centre, >= 1 (1: none)"),
    "translation": ([0.0, 0.1, 0.2, 0.3], "shift right and down, as a fraction of the side"),
    "occlusion": ([0.0, 0.25, 0.5], "side of a grey square, as a fraction of the side"),
    "gaussian_noise": ([0.0, 0.05, 0.1, 0.2], "std of added noise, pixels in [0, 1]"),
    "jpeg_quality": ([100, 75, 50, 25, 10], "JPEG quality of a round trip (100: nearly none)"),
    "hflip": ([0, 1], "mirror left-right when 1"),
}

_RANGES: dict[str, tuple[float, float]] = {
    "gaussian_blur": (0, 50), "brightness": (0, 10), "contrast": (0, 10), "saturation": (0, 10),
    "hue": (-0.5, 0.5), "grayscale": (0, 1), "scale": (1, 16), "translation": (-1, 1),
    "occlusion": (0, 1), "gaussian_noise": (0, 1), "jpeg_quality": (1, 100), "hflip": (0, 1),
}


def _seed(text: str) -> int:
    """A seed from text, the same in every process (Python's hash() is not)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


@dataclass(frozen=True)
class SweepTransform(ImageTransform):
    """One value of one sweep, for one image (`seed_text` seeds its random parts)."""

    sweep: str
    value: float
    seed_text: str = ""

    @property
    def key(self) -> str:
        return f"{self.sweep}={self.value!r}" + (f"@{self.seed_text}" if self.seed_text else "")

    def __call__(self, img: Image.Image) -> Image.Image:
        v, w, h = self.value, img.width, img.height
        if self.sweep == "rotation":
            return TF.rotate(img, v, interpolation=TF.InterpolationMode.BILINEAR) if v % 360 else img
        if self.sweep == "gaussian_blur":
            if v <= 0:
                return img
            kernel = 2 * int(np.ceil(3 * v)) + 1
            return TF.gaussian_blur(img, [kernel, kernel], [v, v])
        if self.sweep == "brightness":
            return TF.adjust_brightness(img, v)
        if self.sweep == "contrast":
            return TF.adjust_contrast(img, v)
        if self.sweep == "saturation":
            return TF.adjust_saturation(img, v)
        if self.sweep == "hue":
            return TF.adjust_hue(img, v) if v else img
        if self.sweep == "grayscale":
            return Image.blend(img, TF.rgb_to_grayscale(img, 3), v) if v else img
        if self.sweep == "scale":
            if v <= 1:
                return img
            crop = TF.center_crop(img, [max(1, round(h / v)), max(1, round(w / v))])
            return TF.resize(crop, [h, w], interpolation=TF.InterpolationMode.BILINEAR)
        if self.sweep == "translation":
            return TF.affine(img, angle=0.0, translate=[round(v * w), round(v * h)], scale=1.0,
                             shear=[0.0, 0.0]) if v else img
        if self.sweep == "occlusion":
            side = round(v * min(w, h))
            if side <= 0:
                return img
            rng = np.random.default_rng(_seed(self.seed_text))
            x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
            out = img.copy()
            out.paste((124, 116, 104), (x, y, x + side, y + side))  # the ImageNet mean, in 0-255
            return out
        if self.sweep == "gaussian_noise":
            if v <= 0:
                return img
            rng = np.random.default_rng(_seed(self.seed_text))
            pixels = np.asarray(img, dtype=np.float32) / 255
            noisy = np.clip(pixels + rng.normal(0.0, v, pixels.shape), 0, 1)
            return Image.fromarray((noisy * 255 + 0.5).astype(np.uint8))
        if self.sweep == "jpeg_quality":
            buffer = io.BytesIO()
            img.save(buffer, format="JPEG", quality=int(v))
            return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        if self.sweep == "hflip":
            return TF.hflip(img) if v else img
        raise ValueError(f"unknown sweep {self.sweep!r}")


class TransformProbeParams(Params):
    sweep: Sweep = Field(description="the transformation whose values a trajectory sweeps")
    values: list[float] | None = Field(
        None, min_length=2, description="the sweep's values, one row each (repeats allowed); "
                                        "default: the sweep's preset (docs/plugins/transform-probe.md)")
    image_size: int = Field(64, ge=8, description="side of the square input the network sees")
    max_images: int | None = Field(200, ge=1, description="images probed (the first ones in "
                                                          "the dataset's order); null: all")
    subset: str | None = Field(None, description="the dataset's subset to read (e.g. val); "
                                                 "default: the dataset's default")

    @model_validator(mode="after")
    def _values_in_range(self) -> TransformProbeParams:
        low_high = _RANGES.get(self.sweep)
        if self.values is not None and low_high is not None:
            low, high = low_high
            bad = [v for v in self.values if not low <= v <= high]
            if bad:
                raise ValueError(f"values {bad} are outside {self.sweep}'s range [{low}, {high}] "
                                 f"({PRESETS[self.sweep][1]})")
        return self


class TransformProbe(InvarianceProbe):
    """One trajectory per image, one row per value of the sweep."""

    dataset_type: ClassVar[str] = "image-folder"
    invariance = "synthetic transformation"

    def __init__(self, params: TransformProbeParams) -> None:
        self.params = params
        self.values = list(params.values if params.values is not None else PRESETS[params.sweep][0])

    def build(self, dataset: Dataset) -> ProbeSet:
        p = self.params
        records = dataset.records(p.subset)
        if not records:
            raise DataError(f"transform probe: the dataset {type(dataset).__name__} has no images"
                            + (f" in subset {p.subset!r}" if p.subset else ""),
                            "point the probe's dataset at a folder of images")
        if p.max_images is not None:
            records = records[: p.max_images]
        items = []
        for index, record in enumerate(records):
            trajectory = f"{index}:{record.path}" + (f"@{list(record.box)}" if record.box else "")
            label = record.label or "all"
            for value in self.values:
                transform = SweepTransform(p.sweep, float(value), seed_text=trajectory)
                items.append(ProbeItem(replace(record, transform=transform), trajectory, label))
        return ProbeSet(f"transform:{p.sweep}", items, (p.image_size, p.image_size),
                        stats={"images": len(records), "values": len(self.values)})


@hookimpl
def register_invariance_probes(register: Register) -> None:
    register("transform", TransformProbe, params=TransformProbeParams,
             summary="invariance to a synthetic transformation (rotation, blur, colour, ...) on "
                     "any image dataset")
