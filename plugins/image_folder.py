"""`image-folder`: ImageNet's layout, one folder per class (`root/{class}/*.JPEG`).

`root` may be a split folder itself (subset "all") or a folder that holds `train/`
(and optionally `val/`), giving subsets "train" and "val". Pixels are not read here:
whoever loads an image reports it if it is unreadable.

`fraction` keeps a seeded, class-balanced share of every subset (the paper's "ImageNet
10%"): round(fraction * n) images of each class of n, at least one, the same on every
machine for a `fraction_seed`.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from ssl_core import DataError, Dataset, ImageRecord, Params, Register, hookimpl

DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolderParams(Params):
    root: Path
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    fraction: float | None = Field(None, gt=0, le=1,
                                   description="keep this share of each class (seeded); None keeps all")
    fraction_seed: int = Field(0, ge=0, description="seed of the `fraction` draw")

    @field_validator("extensions")
    @classmethod
    def _normalise(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = tuple(("." + e.lstrip(".")).lower() for e in value if e.strip("."))
        if not out:
            raise ValueError("give at least one file extension, e.g. ['.jpg', '.png']")
        return out


def fraction_of(images: list[Path], label: str, fraction: float, seed: int) -> list[Path]:
    """round(fraction * n) (half up, at least 1) of one class's sorted images, drawn by a
    permutation from numpy's default_rng([seed, crc32(label)]) and kept in sorted order:
    platform-independent, and a class's draw does not depend on the other classes."""
    n = len(images)
    keep = min(n, max(1, math.floor(fraction * n + 0.5)))
    rng = np.random.default_rng([int(seed), zlib.crc32(label.encode())])
    chosen = np.sort(rng.permutation(n)[:keep])
    return [images[i] for i in chosen]


class ImageFolder(Dataset):
    """Class-per-folder images; label = folder name, group = image path stem."""

    subsets: ClassVar[tuple[str, ...]] = ("all",)

    def __init__(self, params: ImageFolderParams) -> None:
        self.params = params
        self.root = Path(params.root).expanduser()
        self.split_mode = (self.root / "train").is_dir()
        # an instance attribute shadows the class default: the subsets depend on the layout
        self.subsets = ("train", "val") if self.split_mode else ("all",)  # type: ignore[misc]

    def _folder(self, subset: str) -> Path:
        if subset not in self.subsets:
            raise DataError(
                f"image-folder at {self.root} has no subset {subset!r}",
                f"use one of: {', '.join(self.subsets)}"
                + ("" if self.split_mode else " (a root holding train/ and val/ gives train and val)"),
            )
        return self.root / subset if self.split_mode else self.root

    def prepare(self, progress: Any | None = None) -> None:
        for subset in self.subsets:
            if subset == "val" and not (self.root / "val").is_dir():
                continue
            self.records(subset)

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        subset = subset or self.subsets[0]
        folder = self._folder(subset)
        if not self.root.is_dir():
            raise DataError(f"image-folder root {self.root} does not exist",
                            "set `root` to a folder holding one sub-folder per class "
                            "(or a folder holding train/ and val/)")
        if not folder.is_dir():
            raise DataError(f"image-folder split folder {folder} does not exist",
                            f"create {folder} with one sub-folder per class, or use subset 'train'")
        classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataError(f"no class folders in {folder}",
                            "an image folder holds one sub-folder per class: "
                            f"{folder}/<class>/<image>{self.params.extensions[0]}")
        exts = set(self.params.extensions)
        out: list[ImageRecord] = []
        for cls in classes:
            images = [p for p in sorted(cls.iterdir()) if p.is_file() and p.suffix.lower() in exts]
            if self.params.fraction is not None and images:
                images = fraction_of(images, cls.name, self.params.fraction, self.params.fraction_seed)
            out.extend(ImageRecord(path=path, label=cls.name, group=path.stem) for path in images)
        if not out:
            raise DataError(f"no images with extensions {', '.join(self.params.extensions)} "
                            f"in the class folders of {folder}",
                            "check `root`, or set `extensions` to the ones your files use")
        return out

    def classes(self, subset: str | None = None) -> list[str]:
        return sorted({r.label for r in self.records(subset) if r.label is not None})


@hookimpl
def register_datasets(register: Register) -> None:
    register("image-folder", ImageFolder, params=ImageFolderParams,
             summary="ImageNet-style class-per-folder images (root/{class}/*.JPEG, or root/train, root/val)")
