"""What every layout writer shares: size presets, seeded rngs, random lights and backgrounds,
per-object tracing and boxes, image I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .objects import CATEGORIES, PlacedObject
from .render import Camera, GBuffer, Light, background, trace

#: ALOI's 12 lamp voltages (file suffix i110 .. i250) and the colour temperatures they map to
ALOI_LAMPS = (110, 120, 130, 140, 150, 160, 170, 180, 190, 210, 230, 250)
ALOI_TEMP_RANGE = (2175.0, 3075.0)
ALOI_SIZE = (144, 192)  # red2: 192 x 144 (height, width); a size preset may render smaller

# where each kind of object comes from in the world: distinct instance index ranges
TRAIN_BASE, VAL_BASE, ALOI_BASE, GOT_BASE, PASCAL_BASE = 0, 500_000, 600_000, 700_000, 800_000
VIDEO_BASE = 1_000_000  # (900_000.. : the scene layouts)


@dataclass(frozen=True)
class SizeConfig:
    """How much of the world to render for one size preset."""

    train_instances: int  # per category
    train_per_instance: int
    val_instances: int
    val_per_instance: int
    image_size: int
    aloi_objects: int
    got_sequences: int
    got_frames: int
    got_size: tuple[int, int]  # (height, width)
    pascal_per_class: int  # {cls}_imagenet images per class (train + val)
    pascal_extra_per_class: int  # {cls}_pascal images per class
    pascal_size: tuple[int, int]
    pascal_cells: int = 12  # viewpoint cells (azimuth x elevation bin) the ImageNet part cycles through
    supersample: int = 2  # anti-aliasing: ss x ss rays per pixel
    aloi_size: tuple[int, int] = ALOI_SIZE  # (height, width) of the ALOI images, 4:3 as red2
    categories: tuple[str, ...] = tuple(CATEGORIES)
    videos: int = 0  # videos of 2-4 moving objects (mp4 + tracks, and TrackingNet's layout)
    video_frames: int = 24
    video_size: tuple[int, int] = (96, 128)  # (height, width)
    video_fps: int = 10

    def to_dict(self) -> dict:
        return asdict(self)


SIZES: dict[str, SizeConfig] = {
    # tiny: every probe works (9 PASCAL3D+ images per class in 3 viewpoint cells give
    # trajectories of 3 rows for both PASCAL3D+ probes), rendered in seconds for tests
    "tiny": SizeConfig(2, 3, 1, 2, 64, 4, 3, 16, (96, 128), 9, 1, (96, 128), pascal_cells=3,
                       supersample=1, videos=4, video_frames=12, video_size=(48, 64)),
    # small (the recipes' default): enough trajectories per probe that the top-10 bootstrap
    # interval of recipes/paper_table1.yaml is at most +-2 points (docs/plugins/synthworld.md)
    # ALOI and GOT-10k are rendered at about the size the recipes probe them (64 px): ALOI
    # whole images at 96x72, GOT-10k frames whose target box is about 47 px high; 20
    # frames a sequence, as the occlusion probe keeps one frame per cover level
    # videos: the main object is about a third of the 96 px frame high (~32 px), enough for
    # selective search proposals and 64 px crops; 32 frames turn it by ~100-250 degrees
    "small": SizeConfig(12, 7, 4, 3, 96, 238, 504, 20, (96, 128), 96, 2, (144, 192),
                        pascal_cells=12, aloi_size=(72, 96), videos=112, video_frames=32,
                        video_size=(96, 128)),
    "full": SizeConfig(100, 10, 25, 4, 128, 300, 700, 40, (240, 320), 180, 10, (240, 320),
                       pascal_cells=12, videos=1000, video_frames=48, video_size=(240, 320)),
}

#: the 12 categories that play PASCAL3D+'s 12 classes
PASCAL_CLASSES = ("aeroplane", "boat", "bottle", "car", "chair", "diningtable", "lamp", "mug",
                  "robot", "rocket", "sofa", "tvmonitor")


def job_rng(seed: int, *key: int) -> np.random.Generator:
    """An rng that depends only on the world seed and the job, never on scheduling."""
    return np.random.default_rng([int(seed), *[int(k) for k in key]])


def aloi_temperature(lamp: int) -> float:
    """Lamp voltage index 110..250 -> colour temperature, monotonically (2175 K .. 3075 K)."""
    lo, hi = ALOI_TEMP_RANGE
    return lo + (hi - lo) * (lamp - ALOI_LAMPS[0]) / (ALOI_LAMPS[-1] - ALOI_LAMPS[0])


def direction(azimuth: float, elevation: float) -> tuple[float, float, float]:
    az, el = math.radians(azimuth), math.radians(elevation)
    return (math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el))


def random_light(rng: np.random.Generator, camera_azimuth: float) -> Light:
    """A light from the camera's side of the object, of a random colour temperature."""
    az = camera_azimuth + rng.uniform(-100, 100)
    el = rng.uniform(15, 75)
    return Light(direction(az, el), float(rng.uniform(2175, 7500)), float(rng.uniform(0.85, 1.1)),
                 float(rng.uniform(0.2, 0.4)), white_balance=5000.0)


def random_background(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """Plain, gradient or blotchy backgrounds so that the background is no class cue."""
    kind = ("plain", "gradient", "blotchy")[int(rng.integers(3))]
    c1 = rng.uniform(0.1, 0.95, 3).tolist()
    c2 = rng.uniform(0.1, 0.95, 3).tolist() if kind != "plain" else None
    noise = 0.12 if kind == "blotchy" else 0.0
    return background(size, c1, c2, noise, rng), kind


def save_jpeg(path: Path, image: np.ndarray, quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="JPEG", quality=quality)


def save_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG", compress_level=1)


def trace_apart(objects: Sequence[PlacedObject], camera: Camera, size: tuple[int, int],
                ss: int) -> list[GBuffer]:
    """Trace each object alone: `render.composite` of the list is the scene, and each
    buffer on its own gives that object's unoccluded silhouette (cover levels, amodal boxes)."""
    return [trace([p.world_primitives()], camera, size, ss) for p in objects]


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x, y, w, h) in pixels of a boolean mask's extent (w = last column - first + 1), or None."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)


def projected_box(obj: PlacedObject, camera: Camera, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """Amodal (x, y, w, h) from the object's bounding sphere, for frames where it is out of view."""
    placed = obj.world_primitives()
    eye, right, up, fwd = camera.frame()
    rel = placed.center - eye
    z = max(float(rel @ fwd), 1e-3)
    tan = math.tan(math.radians(camera.fov) / 2)
    h, w = size
    cx = (float(rel @ right) / z / (tan * w / h) + 1) / 2 * w
    cy = (1 - float(rel @ up) / z / tan) / 2 * h
    r = placed.radius / z / tan / 2 * h
    return cx - r, cy - r, 2 * r, 2 * r
