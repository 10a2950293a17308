"""GOT-10k train layout: sequences of a moving, turning object that occluders pass in front of.

`GOT-10k/train/list.txt`, `GOT-10k_Train_{n:06d}/{frame:08d}.jpg`, `groundtruth.txt`
(`x,y,w,h` with 4 decimals), `absence.label`, `cover.label` (0..8 visible-fraction bins),
`cut_by_image.label` and `meta_info.ini`.
"""

from __future__ import annotations

import math
from pathlib import Path

from .common import (
    GOT_BASE,
    direction,
    job_rng,
    mask_box,
    projected_box,
    random_background,
    save_jpeg,
    trace_apart,
)
from .objects import PlacedObject, World
from .render import Camera, Light, composite, downsample_mask, shade

#: bulky categories that make good occluders
OCCLUDERS = ("car", "sofa", "diningtable", "boat", "tvmonitor", "snowman", "tree", "robot", "chair")
#: an occluder crosses the target's line of sight this many scene units per sequence: slow
#: enough that its pass fills most of the frames (the occlusion probe takes one frame per
#: cover level, so frames spent fully visible are wasted)
OCCLUDER_TRAVEL = 3.0
#: an occluder's bounding radius is at least this many times the target's, so that its pass
#: hides much of the target when it passes
OCCLUDER_SIZE = 1.4
#: vertical field of view (degrees): the target's box is about a third of the frame height
CAMERA_FOV = 30.0


def sequence_name(n: int) -> str:
    return f"GOT-10k_Train_{n:06d}"


def cover_level(visible: int, full: int) -> int:
    """GOT-10k's cover label: 0 fully occluded, 1 (0, 15%], ..., 6 (75%, 90%], 7 (90%, 100%), 8 100%."""
    if full == 0 or visible == 0:
        return 0
    if visible >= full:
        return 8
    ratio = visible / full
    if ratio > 0.9:
        return 7
    return max(1, math.ceil(ratio / 0.15 - 1e-9))


def write_sequence(root: Path, seed: int, n: int, frames: int, size: tuple[int, int],
                   categories: list[str], ss: int = 2) -> dict:
    """Render sequence `n` (1-based) into root (the `GOT-10k/train` folder)."""
    rng = job_rng(seed, 31, n)
    world = World(seed)
    target_cat = categories[(n - 1) % len(categories)]  # every class gets as many sequences
    target = world.instance(target_cat, GOT_BASE + n)
    camera = Camera(0.0, float(rng.uniform(10, 25)), 4.5, (0.0, 0.45, 0.0), CAMERA_FOV)
    exits = n % 4 == 1 or rng.random() < 0.2  # the first of every 4 leaves the frame
    x0, x1 = rng.uniform(-0.9, -0.3), (3.4 if exits else rng.uniform(0.3, 0.9))
    if rng.random() < 0.5:
        x0, x1 = -x0, -x1
    z0 = rng.uniform(-0.4, 0.4)
    yaw0, yaw_rate = rng.uniform(0, 360), rng.uniform(3, 12) * rng.choice([-1, 1])
    n_occ = int(rng.integers(1, 3))
    occluders = []
    _, target_r = target.bounds()
    for j in range(n_occ):
        cat = OCCLUDERS[int(rng.integers(len(OCCLUDERS)))]
        occ = world.instance(cat, GOT_BASE + 100_000 + 3 * n + j)
        _, occ_r = occ.bounds()
        meet = rng.uniform(0.3, 0.7) if n_occ == 1 else (0.3 if j == 0 else 0.7)
        scale = max(1.0, OCCLUDER_SIZE * target_r / occ_r) * rng.uniform(0.9, 1.2)
        occluders.append((occ, meet, scale, rng.uniform(1.6, 2.2), rng.choice([-1, 1]),
                          rng.uniform(0, 360)))
    light = Light(direction(rng.uniform(-60, 60), rng.uniform(30, 70)), float(rng.uniform(3000, 6500)),
                  1.0, 0.3, white_balance=5000.0)
    bg, _ = random_background(rng, size)
    seq = root / sequence_name(n)
    seq.mkdir(parents=True, exist_ok=True)
    boxes, absence, cover, cut = [], [], [], []
    for f in range(frames):
        s = f / max(frames - 1, 1)
        tx = x0 + (x1 - x0) * s
        placed_t = PlacedObject(target, (tx, 0.0, z0), yaw0 + yaw_rate * f, 1.0, 1)
        placed = [placed_t]
        for j, (occ, meet, scale, depth_z, sign, yaw) in enumerate(occluders):
            tx_meet = x0 + (x1 - x0) * meet
            at_meet = tx_meet * (4.5 - depth_z) / (4.5 - z0)  # same screen x as the target then
            ox = at_meet + sign * OCCLUDER_TRAVEL * (s - meet)
            placed.append(PlacedObject(occ, (ox, 0.0, depth_z), yaw + 4 * f, scale, 2 + j))
        parts = trace_apart(placed, camera, size, ss)
        out = shade(composite(parts), light, bg)
        alone, _ = downsample_mask(parts[0])
        full = int((alone == 1).sum())
        visible = int((out.mask == 1).sum())
        box = mask_box(alone == 1) or projected_box(placed_t, camera, size)
        level = cover_level(visible, full)
        boxes.append(box)
        absence.append(1 if visible == 0 else 0)
        cover.append(level)
        edge = alone == 1
        touches = bool(edge[0].any() or edge[-1].any() or edge[:, 0].any() or edge[:, -1].any())
        cut.append(1 if (touches or full == 0) else 0)
        save_jpeg(seq / f"{f + 1:08d}.jpg", out.image)
    (seq / "groundtruth.txt").write_text("".join(f"{x:.4f},{y:.4f},{w:.4f},{h:.4f}\n" for x, y, w, h in boxes))
    (seq / "absence.label").write_text("".join(f"{a}\n" for a in absence))
    (seq / "cover.label").write_text("".join(f"{c}\n" for c in cover))
    (seq / "cut_by_image.label").write_text("".join(f"{c}\n" for c in cut))
    h, w = size
    motion = "moving and turning" if abs(yaw_rate) > 6 else "moving"
    (seq / "meta_info.ini").write_text(
        "[METAINFO]\n"
        f"url: synthworld://seed{seed}/{sequence_name(n)}\n"
        "begin: 00:00:00\n"
        f"end: 00:00:{frames // 10:02d}\n"
        "anno_fps: 10Hz\n"
        f"object_class: {target_cat}\n"
        f"motion_class: {motion}\n"
        "major_class: synthetic object\n"
        "root_class: object\n"
        f"motion_adverb: {'fast' if abs(x1 - x0) > 2 else 'slowly'}\n"
        f"resolution: ({w}, {h})\n")
    return {"sequence": sequence_name(n), "category": target_cat, "cover_min": min(cover),
            "cover_max": max(cover), "exits": bool(exits)}
