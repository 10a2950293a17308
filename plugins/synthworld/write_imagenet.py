"""ImageNet-style object-centric images: `imagenet/{split}/{category}/{category}_{inst:04d}_{k:03d}.JPEG`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import job_rng, random_background, random_light, save_jpeg, save_png
from .objects import CATEGORIES, PlacedObject, Scene, World, object_camera, render

SPLIT_CODE = {"train": 1, "val": 2}


def image_name(category: str, instance: int, k: int) -> str:
    return f"{category}_{instance:04d}_{k:03d}"


def write_instance(root: Path, seed: int, split: str, category: str, instance: int, world_index: int,
                   count: int, size: int, ss: int = 2) -> list[dict]:
    """Render `count` random views of one instance; returns one metadata dict per image."""
    world = World(seed)
    obj = world.instance(category, world_index)
    rng = job_rng(seed, 11, SPLIT_CODE[split], list(CATEGORIES).index(category), instance)
    metas = []
    for k in range(count):
        azimuth = float(rng.uniform(0, 360))
        elevation = float(rng.uniform(-5, 50))
        camera = object_camera(obj, azimuth, elevation, fill=float(rng.uniform(0.75, 1.0)),
                               fov=float(rng.uniform(30, 45)))
        light = random_light(rng, azimuth)
        bg, bg_kind = random_background(rng, (size, size))
        out = render(Scene([PlacedObject(obj)]), camera, light, (size, size), bg, ss)
        name = image_name(category, instance, k)
        rel = f"{split}/{category}/{name}.JPEG"
        mask_rel = f"{split}_masks/{category}/{name}.png"
        save_jpeg(root / rel, out.image)
        save_png(root / mask_rel, out.mask.astype(np.uint8))
        metas.append({
            "path": rel, "category": category, "instance": instance, "azimuth": round(azimuth, 3),
            "elevation": round(elevation, 3), "light_direction": [round(float(v), 5) for v in light.unit()],
            "color_temperature": round(light.temperature, 1), "background": bg_kind, "mask": mask_rel,
        })
    return metas
