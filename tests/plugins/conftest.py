"""Fixture writers for GOT-10k and PASCAL3D+ in their real on-disk formats.

GOT-10k: list.txt, sequence folders with 8-digit JPEG frames, groundtruth.txt
(`x,y,w,h` with 4 decimals), absence/cover/cut_by_image .label files and a
meta_info.ini like the released ones. PASCAL3D+: MATLAB v5 .mat files whose
`record.objects` is a struct array with nested `viewpoint` structs, exactly what
scipy.io.loadmat(squeeze_me=True, struct_as_record=False) sees in the release.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
from PIL import Image

GOT_FRAME_SIZE = (40, 30)  # width, height of the written frames


def _tiny_jpeg(path: Path, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=80)


def write_got_sequence(
    split_dir: Path,
    name: str,
    boxes: Sequence[Sequence[float] | str],
    *,
    object_class: str = "dog",
    cover: Sequence[int] | None = None,
    absence: Sequence[int] | None = None,
    cut_by_image: Sequence[int] | None = None,
    extra_meta_lines: Sequence[str] = (),
    resolution: tuple[int, int] | None = GOT_FRAME_SIZE,
    frames: bool = True,
) -> Path:
    """One GOT-10k sequence folder; a box given as a str is written verbatim (e.g. 'nan')."""
    folder = split_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for b in boxes:
        lines.append(b if isinstance(b, str) else ",".join(f"{v:.4f}" for v in b))
    (folder / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    for fname, values in (("cover.label", cover), ("absence.label", absence),
                          ("cut_by_image.label", cut_by_image)):
        if values is not None:
            (folder / fname).write_text("\n".join(str(int(v)) for v in values) + "\n")
    meta = ["[METAINFO]", "url: https://youtu.be/abc?t=1:02", "begin_frame: 1320",
            "end_frame: 1500", "anno_fps: 10Hz", f"object_class: {object_class}",
            "motion_class: walking", "major_class: animal", "root_class: object",
            "motion_adverb: slowly"]
    if resolution is not None:
        meta.append(f"resolution: ({resolution[0]}, {resolution[1]})")
    meta.extend(extra_meta_lines)
    (folder / "meta_info.ini").write_text("\n".join(meta) + "\n")
    if frames:
        size = resolution or GOT_FRAME_SIZE
        for i in range(len(boxes)):
            _tiny_jpeg(folder / f"{i + 1:08d}.jpg", size, seed=zlib.crc32(f"{name}/{i}".encode()))
    return folder


def write_got_list(split_dir: Path, names: Sequence[str]) -> None:
    split_dir.mkdir(parents=True, exist_ok=True)
    (split_dir / "list.txt").write_text("\n".join(names) + "\n")


#: the standard GOT-10k fixture: name -> (class as written, cover, absence, boxes)
def _got_standard(split_dir: Path) -> dict[str, Any]:
    ok = [5, 5, 20, 15]
    seqs: dict[str, dict[str, Any]] = {}
    # A: covers 0..8 (span 8), one absent frame, several frames per level -> random draws
    seqs["GOT-10k_Train_000001"] = dict(
        object_class="dog",
        cover=[8, 8, 7, 5, 5, 3, 3, 1, 0, 0, 8, 4, 4, 7],
        absence=[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0],
        cut_by_image=[0] * 14,
        boxes=[ok] * 14,
    )
    # B: covers span 3 (< 4) -> dropped before any draw
    seqs["GOT-10k_Train_000002"] = dict(
        object_class="sea lion", cover=[5, 6, 7, 8, 8], absence=[0] * 5,
        cut_by_image=[0] * 5, boxes=[ok] * 5,
    )
    # C: no cover.label, no absence.label -> unknown; the probe skips and counts it
    seqs["GOT-10k_Train_000003"] = dict(
        object_class="sea lion", cover=None, absence=None, cut_by_image=None, boxes=[ok] * 4,
    )
    # D: level 2's only frame has a NaN box (drawn, then dropped); a zero-size box;
    #    a box partly outside the 40x30 frame; a box fully outside (level 6, dropped)
    seqs["GOT-10k_Train_000004"] = dict(
        object_class="sea lion",
        cover=[0, 4, 4, 2, 8, 8, 6, 0],
        absence=[1, 0, 0, 0, 0, 0, 0, 1],
        cut_by_image=[0, 0, 0, 0, 1, 1, 1, 0],
        boxes=[ok, ok, [3, 3, 0, 10], "nan,nan,nan,nan", [30, 20, 25, 25], [30, 20, 25, 25],
               [50, 40, 10, 10], [0, 0, 0, 0]],
        extra_meta_lines=["this line has no colon", "", "object_class: not me (duplicate)"],
    )
    # E: span exactly 4 (kept), another class
    seqs["GOT-10k_Train_000005"] = dict(
        object_class="hand truck", cover=[2, 6, 6, 3], absence=[0] * 4,
        cut_by_image=[0] * 4, boxes=[ok] * 4,
    )
    for name, spec in seqs.items():
        write_got_sequence(split_dir, name, spec["boxes"], object_class=spec["object_class"],
                           cover=spec["cover"], absence=spec["absence"],
                           cut_by_image=spec["cut_by_image"],
                           extra_meta_lines=spec.get("extra_meta_lines", ()))
    write_got_list(split_dir, list(seqs))
    return seqs


@pytest.fixture
def got10k_world(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A data root holding GOT-10k/train (5 sequences); returns (data root, specs)."""
    split_dir = tmp_path / "GOT-10k" / "train"
    return tmp_path, _got_standard(split_dir)


@pytest.fixture
def got_writer() -> Callable[..., Path]:
    return write_got_sequence


@pytest.fixture
def got_list_writer() -> Callable[..., None]:
    return write_got_list


# -- PASCAL3D+ ------------------------------------------------------------------------------

PASCAL_FIELDS = ("class", "viewpoint", "bbox", "truncated", "occluded", "difficult")


def pascal_object(cls: str, bbox: Sequence[float], azimuth: float | None = None,
                  elevation: float | None = None, *, truncated: int = 0, occluded: int = 0,
                  difficult: int = 0, subtype: str | None = None) -> dict[str, Any]:
    """One object as a MATLAB struct would hold it; azimuth None writes viewpoint = []."""
    if azimuth is None:
        viewpoint: Any = np.zeros((0, 0))
    else:
        viewpoint = {"azimuth_coarse": float(azimuth), "elevation_coarse": float(elevation or 0),
                     "azimuth": float(azimuth) + 0.3, "elevation": float(elevation or 0) - 0.2,
                     "distance": 5.5, "focal": 1.0, "px": 20.0, "py": 15.0, "theta": 0.0,
                     "error": 0.0, "interval_azimuth": 0.0, "interval_elevation": 0.0,
                     "num_anchor": 0.0, "viewport": 3000.0}
    obj = {"class": cls, "bbox": np.array([list(map(float, bbox))]), "viewpoint": viewpoint,
           "truncated": np.array([[truncated]], dtype=np.uint8),
           "occluded": np.array([[occluded]], dtype=np.uint8),
           "difficult": np.array([[difficult]], dtype=np.uint8)}
    if subtype is not None:
        obj["subtype"] = subtype
    return obj


def write_pascal_mat(path: Path, objects: Sequence[dict[str, Any]],
                     imgsize: tuple[int, int] = (40, 30), database: str = "ImageNet",
                     with_filename: bool = True) -> None:
    """A PASCAL3D+ annotation: struct `record` with a 1 x n struct array `objects`."""
    fields = list(PASCAL_FIELDS)
    if any("subtype" in o for o in objects):
        fields.append("subtype")
    arr = np.zeros((1, len(objects)), dtype=[(f, object) for f in fields])
    for k, obj in enumerate(objects):
        for f in fields:
            arr[0, k][f] = obj.get(f, "")
    record = {"folder": path.parent.name, "source": {"database": database},
              "imgsize": np.array([imgsize[0], imgsize[1], 3], dtype=float),
              "database": database, "objects": arr}
    if with_filename:
        record["filename"] = path.stem + (".JPEG" if database == "ImageNet" else ".jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"record": record})


def write_pascal_image(root: Path, cls: str, source: str, image_id: str,
                       size: tuple[int, int] = (40, 30)) -> None:
    ext = "JPEG" if source == "imagenet" else "jpg"
    folder = root / "Images" / f"{cls}_{source}"
    folder.mkdir(parents=True, exist_ok=True)
    _tiny_jpeg(folder / f"{image_id}.{ext}", size, seed=zlib.crc32(f"{cls}/{image_id}".encode()))


def _pascal_standard(root: Path) -> dict[str, Any]:
    """Two classes. Every azimuth below is chosen to land in a known bin."""
    spec: dict[str, Any] = {
        "car": {
            "imagenet_train": {
                "n02814533_1": [pascal_object("car", [2, 2, 30, 25], 0, 10)],
                "n02814533_2": [pascal_object("car", [1, 1, 20, 20], 200, 40),  # bin 0 (200%180=20)
                                pascal_object("car", [5, 5, 25, 28], 90, 10)],   # second: unused
                "n02814533_3": [pascal_object("car", [0, 0, 39, 29], 95, -10, subtype="sedan")],
                "n02814533_4": [pascal_object("car", [3, 3, 12, 12])],          # no viewpoint
            },
            "imagenet_val": {
                "n02814533_5": [pascal_object("car", [4, 4, 36, 26], 345, 70)],  # bin 5, el 2
                "n02814533_6": [pascal_object("car", [2, 2, 22, 22], 15, 5, truncated=1)],
            },
        },
        "boat": {
            "imagenet_train": {
                "n02858304_1": [pascal_object("boat", [1, 2, 30, 25], 30, 0)],    # bin 1
                "n02858304_2": [pascal_object("boat", [1, 2, 30, 25], 210, 0)],   # bin 1
            },
            "imagenet_val": {
                "n02858304_3": [pascal_object("boat", [1, 2, 30, 25], 59.9, 0),   # bin 1
                                pascal_object("person", [0, 0, 5, 5], 10, 0)],
            },
        },
    }
    for cls, subsets in spec.items():
        for subset, images in subsets.items():
            ids = list(images)
            (root / "Image_sets").mkdir(parents=True, exist_ok=True)
            (root / "Image_sets" / f"{cls}_{subset}.txt").write_text("\n".join(ids) + "\n")
            for image_id, objects in images.items():
                write_pascal_mat(root / "Annotations" / f"{cls}_imagenet" / f"{image_id}.mat",
                                 objects)
                write_pascal_image(root, cls, "imagenet", image_id)
    # a PASCAL part for the car class (not in the default subsets)
    write_pascal_mat(root / "Annotations" / "car_pascal" / "2008_000027.mat",
                     [pascal_object("person", [1, 1, 9, 9], 0, 0),
                      pascal_object("car", [2, 2, 35, 28], 120, 20)], database="PASCAL VOC")
    write_pascal_image(root, "car", "pascal", "2008_000027")
    return spec


@pytest.fixture
def pascal3d_world(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A data root holding PASCAL3D+_release1.1 (car, boat); returns (data root, spec)."""
    return tmp_path, _pascal_standard(tmp_path / "PASCAL3D+_release1.1")


@pytest.fixture
def pascal_mat_writer() -> Callable[..., None]:
    return write_pascal_mat


@pytest.fixture
def pascal_object_maker() -> Callable[..., dict[str, Any]]:
    return pascal_object
