"""The one image loader and the ImageNet constants, shared by probes, samplers and datasets.

Every pixel sslc feeds a network passes through `load_rgb`, so 16-bit and other
non-8-bit files are scaled the same way everywhere instead of being clipped to 0/255
by Pillow's `convert("RGB")`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image

from ssl_core.errors import DataError

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

CropMode = Literal["pad", "clip"]

#: single-channel integer modes whose values span 16 bits (a 16-bit PNG opens as one of these)
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _to_8bit(img: Image.Image, path: object) -> Image.Image:
    """Scale a high-bit-depth single-channel image to 8 bits (0..65535 -> 0..255)."""
    if img.mode in _SIXTEEN_BIT:
        arr = np.asarray(img, dtype=np.int64)
        if arr.min() < 0 or arr.max() > 65535:
            raise DataError(f"image {path} is 32-bit with values outside 0..65535 "
                            f"({arr.min()}..{arr.max()})",
                            "convert it to an 8- or 16-bit PNG/JPEG first")
        return Image.fromarray(np.round(arr / 257.0).astype(np.uint8), mode="L")
    if img.mode == "F":
        raise DataError(f"image {path} holds floating-point pixels (mode F), whose range is unknown",
                        "convert it to an 8- or 16-bit PNG/JPEG first")
    return img


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image fully (so truncation is detected here) as 8-bit RGB.

    A DataError names the file when it is missing, truncated, not an image, or of a
    pixel type that cannot be mapped to 8 bits without guessing.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return _to_8bit(img, path).convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}",
                        "check the dataset root (--data) and that the file was not moved") from None
    except IsADirectoryError:
        raise DataError(f"expected an image file, found a directory: {path}",
                        "check the dataset layout") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}",
                        "the file is truncated or not an image; re-download or remove it") from None


def crop_box(img: Image.Image, box: Sequence[float] | None, path: object = "",
             mode: CropMode = "pad") -> Image.Image:
    """Crop an (x1, y1, x2, y2) pixel box; None keeps the whole image.

    `pad` is the authors' `transforms.functional.crop` on PIL images: coordinates are
    rounded and the part of a box outside the image is black, so boxes that leave the
    frame give the same crops (and features) as their released code. `clip` keeps only
    the part inside the image (what a training crop wants).
    """
    if box is None:
        return img
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(map(math.isfinite, (x1, y1, x2, y2))) or round(x2) - round(x1) < 1 \
            or round(y2) - round(y1) < 1:
        raise DataError(f"box {tuple(box)} of image {path} is empty or not finite",
                        "fix the annotation, or let the reader skip such boxes")
    if mode == "pad":
        return img.crop((x1, y1, x2, y2))
    w, h = img.size
    left, top = max(0, round(x1)), max(0, round(y1))
    right, bottom = min(w, round(x2)), min(h, round(y2))
    if right <= left or bottom <= top:
        raise DataError(f"box {tuple(box)} of image {path} ({w}x{h}) lies outside the image",
                        "boxes are (x1, y1, x2, y2) in pixels; fix the annotation")
    return img.crop((left, top, right, bottom))
