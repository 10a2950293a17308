"""The one image loader: every pixel type is scaled to 8 bits, never clipped to 0/255."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssl_core.errors import DataError
from ssl_core.kit.imageio import crop_box, load_rgb


def test_16bit_png_matches_its_8bit_version(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray8 = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    Image.fromarray(gray8, mode="L").save(tmp_path / "g8.png")
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as raw:
        assert raw.mode.startswith("I")  # what made convert("RGB") clip to 0/255
    a = np.asarray(load_rgb(tmp_path / "g8.png"))
    b = np.asarray(load_rgb(tmp_path / "g16.png"))
    assert b.dtype == np.uint8 and b.shape == (12, 10, 3)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(b)) > 2


def test_float_images_are_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "depth.tiff"
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), mode="F").save(path)
    with pytest.raises(DataError, match="depth.tiff.*floating-point"):
        load_rgb(path)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="bad.jpg"):
        load_rgb(tmp_path / "bad.jpg")
    with pytest.raises(DataError, match="not found"):
        load_rgb(tmp_path / "absent.png")
    with pytest.raises(DataError, match="directory"):
        load_rgb(tmp_path)


def test_crop_modes() -> None:
    img = Image.fromarray(np.full((10, 10, 3), 200, dtype=np.uint8))
    padded = np.asarray(crop_box(img, (5, 5, 15, 15), mode="pad"))
    assert padded.shape == (10, 10, 3) and padded[-1, -1, 0] == 0 and padded[0, 0, 0] == 200
    clipped = np.asarray(crop_box(img, (5, 5, 15, 15), mode="clip"))
    assert clipped.shape == (5, 5, 3) and (clipped == 200).all()
    assert crop_box(img, None) is img
    with pytest.raises(DataError, match="outside the image"):
        crop_box(img, (20, 20, 30, 30), mode="clip")
    with pytest.raises(DataError, match="empty or not finite"):
        crop_box(img, (3, 3, 3, 8))
