"""PASCAL3D+ release 1.1 layout: images with several objects, MATLAB `record` annotations.

`PASCAL3D+_release1.1/Images/{cls}_{imagenet|pascal}/{id}.JPEG`,
`Annotations/{cls}_{...}/{id}.mat` (struct `record`: filename, size, objects(k).class,
.bbox [x1 y1 x2 y2] 1-based, .viewpoint (azimuth_coarse, elevation_coarse, azimuth,
elevation, distance, theta) or [] , .truncated, .occluded, .difficult) and
`Image_sets/{cls}_imagenet_{train,val}.txt`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import scipy.io

from .common import PASCAL_BASE, job_rng, random_background, random_light, save_jpeg, trace_apart
from .objects import CATEGORIES, PlacedObject, World
from .render import Camera, composite, downsample_mask, shade

RELEASE = "PASCAL3D+_release1.1"
#: the 116-byte descriptive text at the start of a MATLAB 5 file, fixed so that files are reproducible
MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: sslc synthworld".ljust(116)
SOURCE_CODE = {"imagenet": 1, "pascal": 2}
#: azimuth bins ((azimuth_coarse mod 180) // 30) in the order the cells use them: spread first
AZIMUTH_BIN_ORDER = (0, 2, 4, 1, 3, 5)
#: camera elevation ranges that land in elevation bin 0 / 1 ((elevation_coarse mod 90) // 30)
#: with a margin for the object's centre not being the camera's target
ELEVATION_RANGES = ((5.0, 14.0), (32.0, 42.0))


def viewpoint_cell(k: int, cells: int) -> tuple[int, int]:
    """(azimuth bin, elevation bin) of the k-th image of a class (in one part).

    The images of a class cycle through `cells` viewpoint cells, so each cell gets the same
    number of images: the instance probe (trajectory = class x cell) gets `cells`
    trajectories per class and the viewpoint+instance probe (the j-th image of every
    azimuth bin) trajectories as long as the number of azimuth bins used. Random
    viewpoints would leave many cells with fewer than the 3 rows a trajectory needs.
    """
    all_cells = [(a, e) for e in range(len(ELEVATION_RANGES)) for a in AZIMUTH_BIN_ORDER]
    return all_cells[k % max(1, min(cells, len(all_cells)))]


def _scheduled_view(rng: np.random.Generator, k: int, cells: int) -> tuple[float, float]:
    """(object-frame azimuth, camera elevation) inside the k-th image's viewpoint cell.

    Bin b holds the coarse (15 degree) azimuths 30b and 30b + 15 and, mirrored, 180 more;
    drawing inside [30b - 7, 30b + 22] keeps the rounded value in the bin."""
    az_bin, el_bin = viewpoint_cell(k, cells)
    azimuth = 30.0 * az_bin + float(rng.uniform(-7.0, 22.0)) + 180.0 * int(rng.integers(2))
    lo, hi = ELEVATION_RANGES[el_bin]
    return azimuth % 360.0, float(rng.uniform(lo, hi))


def image_id(source: str, cls: str, k: int) -> str:
    if source == "imagenet":
        return f"n{list(CATEGORIES).index(cls) + 1:08d}_{k + 1}"
    return f"2008_{list(CATEGORIES).index(cls) * 1000 + k + 1:06d}"


def _viewpoint(obj: PlacedObject, eye: np.ndarray) -> dict:
    """The camera's azimuth/elevation in the object's own frame, as PASCAL3D+ annotates them."""
    center, _ = obj.obj.bounds()
    rel = eye - (np.asarray(obj.position) + np.array([0.0, center[1] * obj.scale, 0.0]))
    azimuth = (math.degrees(math.atan2(rel[0], rel[2])) - obj.yaw) % 360.0
    elevation = math.degrees(math.atan2(rel[1], math.hypot(rel[0], rel[2])))
    return {"azimuth_coarse": float(round(azimuth / 15.0) * 15 % 360),
            "elevation_coarse": float(round(elevation / 15.0) * 15),
            "azimuth": round(azimuth, 4), "elevation": round(elevation, 4),
            "distance": round(float(np.linalg.norm(rel)), 4), "theta": 0.0}


def write_image(root: Path, seed: int, source: str, cls: str, k: int, size: tuple[int, int],
                categories: list[str], ss: int = 2, cells: int = 0) -> dict:
    """Render one annotated image of class `cls` (plus other objects) into root (the release folder).

    `cells` > 0 places the main object's viewpoint in cell `viewpoint_cell(k, cells)` (each
    part, ImageNet and PASCAL, cycles through the cells on its own); 0 draws it at random."""
    rng = job_rng(seed, 41, SOURCE_CODE[source], list(CATEGORIES).index(cls), k)
    world = World(seed)
    n_objects = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    placed = []
    spots = [(0.0, 0.0)] + [(float(rng.uniform(-1.6, 1.6)), float(rng.uniform(-1.5, 0.5)))
                            for _ in range(n_objects - 1)]
    for j, (x, z) in enumerate(spots):
        cat = cls if (j == 0 or rng.random() < 0.3) else categories[int(rng.integers(len(categories)))]
        index = (PASCAL_BASE + 100_000 * list(CATEGORIES).index(cls) + 10_000 * SOURCE_CODE[source]
                 + 10 * k + j)
        inst = world.instance(cat, index)
        placed.append(PlacedObject(inst, (x, 0.0, z), float(rng.uniform(0, 360)),
                                   float(rng.uniform(0.8, 1.2)), j + 1))
    azimuth = float(rng.uniform(0, 360))
    elevation = float(rng.uniform(5, 40))
    if cells > 0:  # turn the main object so that the camera sees it from the cell's azimuth
        object_azimuth, elevation = _scheduled_view(rng, k, cells)
        first = placed[0]
        placed[0] = PlacedObject(first.obj, first.position, (azimuth - object_azimuth) % 360.0,
                                 first.scale, first.object_id)
    camera = Camera(azimuth, elevation, float(rng.uniform(2.6, 3.6)), (0.0, 0.4, 0.0), 45.0)
    light = random_light(rng, azimuth)
    bg, _ = random_background(rng, size)
    parts = trace_apart(placed, camera, size, ss)
    out = shade(composite(parts), light, bg)
    main_alone, _ = downsample_mask(parts[0])
    if (out.mask == placed[0].object_id).sum() < 0.5 * (main_alone == placed[0].object_id).sum():
        # the image's own object is mostly hidden behind another: keep it alone
        placed, parts = placed[:1], parts[:1]
        out = shade(composite(parts), light, bg)
    eye = camera.frame()[0]
    h, w = size
    objects = []
    for p, g in zip(placed, parts, strict=False):
        alone, _ = downsample_mask(g)
        full = int((alone == p.object_id).sum())
        vis = out.mask == p.object_id
        if not vis.any():
            continue
        rows, cols = np.flatnonzero(vis.any(axis=1)), np.flatnonzero(vis.any(axis=0))
        x1, y1, x2, y2 = cols[0] + 1, rows[0] + 1, cols[-1] + 1, rows[-1] + 1
        truncated = int(x1 == 1 or y1 == 1 or x2 == w or y2 == h)
        occluded = int(vis.sum() < 0.85 * full)
        main = p.obj.category == cls
        with_view = main or rng.random() < 0.4
        viewpoint = _viewpoint(p, eye) if with_view else np.zeros((0, 0))
        objects.append({"class": p.obj.category, "bbox": np.array([x1, y1, x2, y2], dtype=np.float64),
                        "viewpoint": viewpoint, "truncated": truncated, "occluded": occluded,
                        "difficult": int((x2 - x1) < 8 or (y2 - y1) < 8)})
    folder = f"{cls}_{source}"
    ident = image_id(source, cls, k)
    save_jpeg(root / "Images" / folder / f"{ident}.JPEG", out.image)
    objs = np.empty((1, len(objects)), dtype=object)
    for i, o in enumerate(objects):
        objs[0, i] = o
    record = {"filename": f"{ident}.JPEG", "folder": folder,
              "source": {"database": "ImageNet" if source == "imagenet" else "PASCAL VOC"},
              "size": {"width": float(w), "height": float(h), "depth": 3.0},
              "imgsize": np.array([w, h, 3], dtype=np.float64), "database": "synthworld",
              "objects": _struct_array(objects)}
    mat = root / "Annotations" / folder / f"{ident}.mat"
    mat.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(mat, {"record": record}, do_compression=True)
    with open(mat, "r+b") as fh:  # the header's "Created on: <time>" would make the bytes differ
        fh.write(MAT_HEADER)
    return {"id": ident, "class": cls, "source": source, "objects": len(objects)}


def _struct_array(objects: list[dict]) -> np.ndarray:
    """A 1xK MATLAB struct array (fields shared by all elements), as PASCAL3D+ stores `objects`."""
    fields = ["class", "bbox", "viewpoint", "truncated", "occluded", "difficult"]
    arr = np.empty((1, len(objects)), dtype=[(f, object) for f in fields])
    for i, o in enumerate(objects):
        for f in fields:
            arr[0, i][f] = o[f]
    return arr


def write_image_sets(root: Path, classes: list[str], per_class: int) -> None:
    """`Image_sets/{cls}_imagenet_{train,val}.txt`: the first ~70% train, the rest val."""
    sets = root / "Image_sets"
    sets.mkdir(parents=True, exist_ok=True)
    n_train = max(1, int(round(per_class * 0.7))) if per_class > 1 else per_class
    for cls in classes:
        ids = [image_id("imagenet", cls, k) for k in range(per_class)]
        (sets / f"{cls}_imagenet_train.txt").write_text("".join(i + "\n" for i in ids[:n_train]))
        (sets / f"{cls}_imagenet_val.txt").write_text("".join(i + "\n" for i in ids[n_train:]))
