"""ALOI's three red2 layouts (4:3 PNGs on black, 192x144 or smaller, one folder per object).

- `aloi_red2_view/{obj}/{obj}_r{0..355 step 5}.png`: the turntable turns, camera and lamp fixed;
- `aloi_red2_ill/{obj}/{obj}_l{1..8}c{1..3}.png`: 8 light directions seen by 3 cameras;
- `aloi_red2_col/{obj}/{obj}_i{110..250}.png`: 12 lamp voltages = colour temperatures.

Each camera's view is traced once and lit many times.
"""

from __future__ import annotations

from pathlib import Path

from .common import ALOI_BASE, ALOI_LAMPS, ALOI_SIZE, aloi_temperature, direction, save_png
from .objects import ObjectInstance, PlacedObject, Scene, World, object_camera
from .render import Light, shade, trace

VIEW_ANGLES = tuple(range(0, 360, 5))
#: three cameras at different azimuths, as ALOI's c1..c3
CAMERA_AZIMUTHS = {1: 0.0, 2: 15.0, 3: 30.0}
#: eight lamp directions (azimuth, elevation relative to camera c1), l1..l8
LIGHT_DIRECTIONS = {1: (-90.0, 20.0), 2: (-60.0, 40.0), 3: (-30.0, 25.0), 4: (0.0, 55.0),
                    5: (30.0, 25.0), 6: (60.0, 40.0), 7: (90.0, 20.0), 8: (0.0, 85.0)}
ELEVATION = 12.0
BACKGROUND = (0.0, 0.0, 0.0)
FRONT_LIGHT = Light(direction(20.0, 35.0), 3075.0, 1.0, 0.25, white_balance=3075.0)


def aloi_object(seed: int, obj: int, categories: list[str]) -> ObjectInstance:
    """ALOI object number `obj` (1-based): instances distinct from the training ones."""
    category = categories[(obj - 1) % len(categories)]
    return World(seed).instance(category, ALOI_BASE + obj)


def write_object(root: Path, seed: int, obj: int, categories: list[str], ss: int = 2,
                 size: tuple[int, int] = ALOI_SIZE) -> dict:
    """Write the 72 + 24 + 12 images (`size` = (height, width)) of object `obj` under root
    (the `aloi/` folder)."""
    inst = aloi_object(seed, obj, categories)
    scene = Scene([PlacedObject(inst)]).prepared()
    aspect = size[1] / size[0]

    def cam(az: float):
        return object_camera(inst, az, ELEVATION, fill=0.9, aspect=aspect)

    for angle in VIEW_ANGLES:  # the turntable turns the object: same as the camera going round
        g = trace(scene, cam(float(angle)), size, ss)
        save_png(root / "aloi_red2_view" / str(obj) / f"{obj}_r{angle}.png",
                 shade(g, FRONT_LIGHT, BACKGROUND).image)
    for c, cam_az in CAMERA_AZIMUTHS.items():
        g = trace(scene, cam(cam_az), size, ss)
        for light_k, (az, el) in LIGHT_DIRECTIONS.items():
            light = Light(direction(az, el), 3075.0, 1.0, 0.15, white_balance=3075.0)
            save_png(root / "aloi_red2_ill" / str(obj) / f"{obj}_l{light_k}c{c}.png",
                     shade(g, light, BACKGROUND).image)
    g = trace(scene, cam(0.0), size, ss)
    for lamp in ALOI_LAMPS:
        light = Light(FRONT_LIGHT.direction, aloi_temperature(lamp), 1.0, 0.25, white_balance=3075.0)
        save_png(root / "aloi_red2_col" / str(obj) / f"{obj}_i{lamp}.png", shade(g, light, BACKGROUND).image)
    return {"object": obj, "category": inst.category, "instance": inst.instance}
