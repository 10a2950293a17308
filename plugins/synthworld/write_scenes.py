"""Cluttered multi-object scenes, written as MS-COCO, PASCAL VOC2007 and ADE20K (SceneParsing).

Each scene is drawn from a context of a seeded co-occurrence table (a dining room has a
table, usually chairs facing it and often a mug or bottle on it; a street has cars,
trees and street lamps; ...), stands 3-6 objects of different sizes on a ground plane
(floor, road, grass or water) in front of a wall or sky backdrop, and is seen from a
random camera, so objects are small, cut by the frame or hidden behind each other. A
share of the scenes are object-centric shots of one large object. Scene k is written
into all three layouts (same pixels):

- `coco/annotations/instances_{train2017,val2017}.json`, `coco/{train2017,val2017}/{k:012d}.jpg`
  (boxes `[x, y, w, h]`, visible-mask polygons, areas, `iscrowd` 0);
- `VOCdevkit/VOC2007/{JPEGImages,Annotations}/{k:06d}.{jpg,xml}` and
  `ImageSets/Main/{split}.txt`, `{cls}_{split}.txt` (1 / -1 / 0 = only difficult);
- `ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_{train,val}_{n:08d}.{jpg,png}`
  (uint8 class ids, 0 = unlabelled), `objectInfo{N}.txt` and `sceneCategories.txt`.

The train scenes are COCO `train2017`, VOC `trainval` and ADE `training`; the test scenes
are `val2017`, `test` and `validation`. `scene_jobs` lists the jobs of a size preset,
`write_scene` renders one, `finalize_scenes` writes what needs all of them.
"""

from __future__ import annotations

import colorsys
import io
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import cv2
import numpy as np
from PIL import Image

from .common import job_rng, random_light
from .objects import CATEGORIES, ObjectInstance, PlacedObject, World, object_camera
from .render import (
    BOX,
    CHECKS,
    PLAIN,
    Camera,
    GBuffer,
    Material,
    PlacedPrimitives,
    Primitive,
    background,
    composite,
    downsample_mask,
    shade,
    trace,
)

#: world instance indices of scene objects (the other parts use 0 .. 899_999)
SCENE_BASE = 900_000
#: object id of the ground plane in the instance mask (objects are 1..6)
GROUND_ID = 200
COCO_DIR, VOC_DIR, ADE_DIR = "coco", "VOCdevkit/VOC2007", "ADEChallengeData2016"
COCO_SPLIT = {"train": "train2017", "test": "val2017"}
VOC_SPLIT = {"train": "trainval", "test": "test"}
ADE_SPLIT = {"train": ("training", "train"), "test": ("validation", "val")}


@dataclass(frozen=True)
class SceneConfig:
    """How many scenes a size preset renders, and how large."""

    train: int  # COCO train2017 = VOC trainval = ADE training
    test: int  # COCO val2017 = VOC test = ADE validation
    size: tuple[int, int]  # (height, width)
    supersample: int
    object_centric: float = 0.2  # share of one-object shots

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SCENE_PRESETS: dict[str, SceneConfig] = {
    "tiny": SceneConfig(4, 2, (96, 128), 1),
    "small": SceneConfig(600, 300, (96, 128), 2),
    "full": SceneConfig(6000, 2000, (240, 320), 2),
}


@dataclass(frozen=True)
class Context:
    """A kind of scene: its backdrop and ground classes, the object always there (the
    anchor) and the weights with which the others are drawn."""

    name: str
    backdrop: str  # "wall" or "sky"
    ground: str  # "floor", "road", "grass" or "water"
    anchor: str
    others: tuple[tuple[str, float], ...]
    weight: float
    facing: tuple[str, ...] = ()  # categories turned towards the anchor (chairs to the table)
    on_anchor: tuple[str, ...] = ()  # small categories stood on the anchor (a mug on the table)


#: the co-occurrence table (docs/plugins/coco.md shows it)
CONTEXTS: tuple[Context, ...] = (
    Context("dining_room", "wall", "floor", "diningtable",
            (("chair", 6.0), ("bottle", 2.0), ("mug", 2.0), ("lamp", 1.0)), 3.0,
            facing=("chair",), on_anchor=("bottle", "mug")),
    Context("living_room", "wall", "floor", "sofa",
            (("tvmonitor", 3.0), ("lamp", 3.0), ("chair", 1.0), ("mug", 1.0), ("robot", 0.5),
             ("diningtable", 0.5)), 2.0, facing=("tvmonitor",)),
    Context("office", "wall", "floor", "tvmonitor",
            (("chair", 3.0), ("mug", 2.0), ("bottle", 2.0), ("lamp", 2.0), ("robot", 1.0)), 1.5,
            facing=("chair",)),
    Context("street", "sky", "road", "car",
            (("car", 3.0), ("tree", 2.0), ("lamp", 2.0), ("robot", 0.5)), 2.0),
    Context("harbour", "sky", "water", "boat",
            (("boat", 4.0), ("aeroplane", 1.0), ("lamp", 1.0), ("bottle", 0.5)), 1.5),
    Context("park", "sky", "grass", "tree",
            (("tree", 3.0), ("snowman", 2.0), ("lamp", 1.0), ("car", 1.0)), 1.5),
    Context("airfield", "sky", "road", "aeroplane",
            (("rocket", 2.0), ("car", 2.0), ("aeroplane", 1.0), ("robot", 1.0)), 1.0),
)

#: world units per object unit (every category is built about 1 unit tall): mugs are small
SCALE = {"aeroplane": 2.2, "boat": 1.7, "bottle": 0.35, "car": 1.6, "chair": 0.9,
         "diningtable": 1.3, "lamp": 1.2, "mug": 0.3, "robot": 0.8, "rocket": 2.0,
         "snowman": 1.2, "sofa": 1.4, "tree": 2.2, "tvmonitor": 0.8}
#: COCO supercategories
SUPERCATEGORY = {"aeroplane": "vehicle", "boat": "vehicle", "car": "vehicle", "rocket": "vehicle",
                 "bottle": "kitchen", "mug": "kitchen", "chair": "furniture",
                 "diningtable": "furniture", "lamp": "furniture", "sofa": "furniture",
                 "tvmonitor": "electronic", "robot": "toy", "snowman": "outdoor", "tree": "outdoor"}
#: categories without a front: VOC pose "Unspecified"
NO_POSE = ("bottle", "lamp", "rocket", "snowman", "tree")
#: ADE20K-style classes: stuff first (as ADE20K lists wall, sky, floor first), then objects;
#: class id = position + 1, 0 = unlabelled
STUFF = ("wall", "sky", "floor", "road", "grass", "water")
ADE_CLASSES: tuple[str, ...] = STUFF + tuple(CATEGORIES)
#: VOC difficult: fewer visible pixels than this share of the image, or less than this
#: share of the object visible
DIFFICULT_AREA, DIFFICULT_VISIBLE = 0.004, 0.35
#: an object with fewer visible pixels is not annotated (COCO and VOC) at all
MIN_PIXELS = 4

Job = tuple[Any, ...]


def scene_jobs(size: str) -> list[Job]:
    """("scenes", split, k) for every scene k (1-based, train first) of the preset."""
    cfg = SCENE_PRESETS[size]
    return ([("scenes", "train", k) for k in range(1, cfg.train + 1)]
            + [("scenes", "test", k) for k in range(cfg.train + 1, cfg.train + cfg.test + 1)])


def scene_job_weight(job: Job, size: str) -> int:
    """Rough cost of a job in 96x96 object images, for a progress bar."""
    h, w = SCENE_PRESETS[size].size
    return max(1, round(3 * h * w / (96 * 96)))


def names(split: str, k: int, size: str) -> dict[str, str]:
    """The file stems of scene k in the three layouts."""
    ade_split, ade_tag = ADE_SPLIT[split]
    n = k if split == "train" else k - SCENE_PRESETS[size].train
    return {"coco": f"{k:012d}", "voc": f"{k:06d}", "ade": f"ADE_{ade_tag}_{n:08d}",
            "ade_split": ade_split}


# --- composing a scene ---------------------------------------------------------------------
def _footprint(obj: ObjectInstance) -> float:
    """Radius (object units) of a circle on the ground around the origin holding the object."""
    lo = np.min([p.offset - p.half_extent() for p in obj.prims], axis=0)
    hi = np.max([p.offset + p.half_extent() for p in obj.prims], axis=0)
    return float(math.hypot(max(-lo[0], hi[0]), max(-lo[2], hi[2])))


def _draw_context(rng: np.random.Generator, category: str | None = None) -> Context:
    pool = [c for c in CONTEXTS if category is None or category == c.anchor
            or category in dict(c.others)]
    weights = np.array([c.weight for c in pool])
    return pool[int(rng.choice(len(pool), p=weights / weights.sum()))]


def _yaw_towards(src: np.ndarray, dst: np.ndarray) -> float:
    """Yaw that turns an object's front (+z) at src towards dst."""
    return math.degrees(math.atan2(dst[0] - src[0], dst[1] - src[1]))


def _free_spot(rng: np.random.Generator, spots: list[tuple[np.ndarray, float]], radius: float,
               facing: bool) -> np.ndarray | None:
    """A ground position around the anchor (spots[0]) clear of the other standing objects;
    close to the anchor for an object that faces it (a chair half under its table)."""
    for _ in range(40):
        theta = float(rng.uniform(0, 2 * math.pi))
        if facing:
            r = spots[0][1] * 0.8 + radius * 0.6 + float(rng.uniform(0.0, 0.6))
        else:
            r = spots[0][1] + radius + float(rng.uniform(0.05, 1.4))
        cand = r * np.array([math.cos(theta), math.sin(theta)])
        if all(np.linalg.norm(cand - q) > 0.9 * (radius + qr)
               for i, (q, qr) in enumerate(spots) if i > 0 and qr > 0):
            return cand
    return None


def compose(world: World, rng: np.random.Generator, k: int,
            object_centric: bool) -> tuple[Context, list[PlacedObject]]:
    """The context and the placed objects of scene k (ids 1..n, the anchor first)."""
    if object_centric:
        category = list(CATEGORIES)[int(rng.integers(len(CATEGORIES)))]
        ctx = _draw_context(rng, category)
        obj = world.instance(category, SCENE_BASE + 10 * k)
        scale = SCALE[category] * float(rng.uniform(0.85, 1.15))
        return ctx, [PlacedObject(obj, (0.0, 0.0, 0.0), float(rng.uniform(0, 360)), scale, 1)]
    ctx = _draw_context(rng)
    cats, weights = zip(*ctx.others, strict=True)
    p = np.array(weights) / sum(weights)
    n = int(rng.integers(3, 7))
    wanted = [ctx.anchor] + [cats[int(rng.choice(len(cats), p=p))] for _ in range(n - 1)]
    placed: list[PlacedObject] = []
    spots: list[tuple[np.ndarray, float]] = []  # ground position, footprint radius
    anchor_top = 0.0
    for j, cat in enumerate(wanted):
        obj = world.instance(cat, SCENE_BASE + 10 * k + j)
        scale = SCALE[cat] * float(rng.uniform(0.85, 1.15))
        radius = _footprint(obj) * scale
        yaw = float(rng.uniform(0, 360))
        if j == 0:
            pos, y = np.zeros(2), 0.0
            anchor_top = obj.height() * scale
        elif cat in ctx.on_anchor and rng.random() < 0.7:
            a = placed[0]  # on the anchor's top, inside its middle part
            local = np.array([rng.uniform(-0.25, 0.25), 0.0, rng.uniform(-0.15, 0.15)]) * a.scale
            rot = math.radians(a.yaw)
            pos = np.array([local[0] * math.cos(rot) + local[2] * math.sin(rot),
                            -local[0] * math.sin(rot) + local[2] * math.cos(rot)])
            y = anchor_top
            radius = 0.0  # not in the way of what stands on the ground
        else:
            free = _free_spot(rng, spots, radius, cat in ctx.facing)
            if free is None:
                continue
            pos, y = free, 0.0
            if cat in ctx.facing:
                yaw = _yaw_towards(pos, np.zeros(2)) + float(rng.uniform(-15, 15))
        spots.append((pos, radius))
        placed.append(PlacedObject(obj, (float(pos[0]), y, float(pos[1])), yaw, scale,
                                   len(placed) + 1))
    return ctx, placed


def _ground(ctx: Context, rng: np.random.Generator, center: np.ndarray) -> PlacedPrimitives:
    """A large flat box whose top is the ground plane y = 0, in the context's material."""
    if ctx.ground == "floor":
        wood = np.array([rng.uniform(0.45, 0.75), rng.uniform(0.3, 0.5), rng.uniform(0.15, 0.3)])
        mat = Material(tuple(wood), tuple(np.clip(wood * rng.uniform(0.75, 0.9), 0, 1)), CHECKS,
                       float(rng.uniform(120, 200)), 0.2)
    elif ctx.ground == "road":
        g = float(rng.uniform(0.25, 0.45))
        mat = Material((g, g, g * 1.05), (g, g, g), PLAIN, 1.0, 0.05)
    elif ctx.ground == "grass":
        mat = Material((rng.uniform(0.15, 0.35), rng.uniform(0.45, 0.65), rng.uniform(0.1, 0.25)),
                       (1.0, 1.0, 1.0), PLAIN, 1.0, 0.02)
    else:  # water
        mat = Material((rng.uniform(0.05, 0.15), rng.uniform(0.25, 0.4), rng.uniform(0.45, 0.65)),
                       (1.0, 1.0, 1.0), PLAIN, 1.0, 0.7)
    half = 40.0
    prim = Primitive(BOX, np.diag([half, 0.5, half]), np.array([center[0], -0.5, center[1]]), mat)
    return PlacedPrimitives(GROUND_ID, [prim], prim.offset.copy(), float(np.linalg.norm([half, 0.5, half])))


def _backdrop(ctx: Context, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    if ctx.backdrop == "sky":
        top = np.array([rng.uniform(0.2, 0.4), rng.uniform(0.4, 0.6), rng.uniform(0.75, 0.95)])
        if rng.random() < 0.25:  # overcast
            top = np.full(3, rng.uniform(0.55, 0.8))
        bottom = np.clip(top + rng.uniform(0.15, 0.35), 0, 1)
        return background(size, top.tolist(), bottom.tolist(), 0.03, rng)
    hue = rng.uniform(0.1, 0.95, 3)
    wall = 0.55 + 0.4 * hue / hue.max() * rng.uniform(0.6, 1.0)
    return background(size, np.clip(wall, 0, 1).tolist(),
                      np.clip(wall * rng.uniform(0.8, 1.0), 0, 1).tolist(), 0.05, rng)


def _camera(rng: np.random.Generator, placed: list[PlacedObject], aspect: float,
            object_centric: bool) -> Camera:
    azimuth = float(rng.uniform(0, 360))
    if object_centric:
        o = placed[0]  # framed as if unscaled, then the whole view scaled with the object
        cam = object_camera(o.obj, azimuth, float(rng.uniform(2, 30)),
                            fill=float(rng.uniform(0.75, 1.15)), aspect=aspect, fov=40.0)
        return Camera(cam.azimuth, cam.elevation, cam.distance * o.scale,
                      tuple(v * o.scale for v in cam.target), cam.fov)  # type: ignore[arg-type]
    ground = [o for o in placed if o.position[1] == 0.0]
    pts = np.array([[o.position[0], o.position[2]] for o in ground])
    center = pts.mean(axis=0)
    reach = max(float(np.linalg.norm(pts[i] - center)) + _footprint(o.obj) * o.scale * 0.8
                for i, o in enumerate(ground))
    height = max(o.obj.height() * o.scale for o in ground)
    fov = 45.0
    fit = math.tan(math.radians(fov / 2))
    distance = max(reach, height * 0.6) / fit * float(rng.uniform(0.3, 0.7)) + reach * 0.3
    center = center + rng.uniform(-0.3, 0.3, 2) * reach  # off-centre: some objects are cut
    target = (float(center[0]), float(rng.uniform(0.25, 0.45)) * height, float(center[1]))
    return Camera(azimuth, float(rng.uniform(4, 24)), distance, target, fov)


def _viewpoint_pose(o: PlacedObject, eye: np.ndarray) -> str:
    """VOC's pose: which side of the object the camera sees (the object's front is +z)."""
    if o.obj.category in NO_POSE:
        return "Unspecified"
    rel = eye - np.asarray(o.position)
    azimuth = (math.degrees(math.atan2(rel[0], rel[2])) - o.yaw) % 360.0
    return ("Frontal", "Left", "Rear", "Right")[int(((azimuth + 45.0) % 360.0) // 90.0)]


# --- annotations -----------------------------------------------------------------------------
def polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons (x1, y1, x2, y2, ...) of a binary mask: outer contours through the
    boundary pixels' centres; a contour of 1-2 pixels becomes their pixel rectangle."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in contours:
        pts = c.reshape(-1, 2).astype(np.float64)
        if len(pts) >= 3:
            out.append([round(float(v), 2) for v in (pts + 0.5).reshape(-1)])
        else:
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0) + 1
            out.append([float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)])
    return out


def _annotate(placed: list[PlacedObject], parts: list[GBuffer], mask: np.ndarray,
              eye: np.ndarray) -> list[dict[str, Any]]:
    h, w = mask.shape
    objects = []
    for o, g in zip(placed, parts, strict=True):
        visible = mask == o.object_id
        v = int(visible.sum())
        if v < MIN_PIXELS:
            continue
        alone = downsample_mask(g)[0] == o.object_id
        full = max(int(alone.sum()), v)
        rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
        x0, y0, x1, y1 = int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
        cut = bool(alone[0].any() or alone[-1].any() or alone[:, 0].any() or alone[:, -1].any())
        objects.append({
            "category": o.obj.category, "instance": o.obj.instance,
            "bbox": [x0, y0, x1 - x0, y1 - y0],  # pixel edges: [x, y, w, h]
            "area": v, "visible": round(v / full, 4), "truncated": cut,
            "difficult": v < DIFFICULT_AREA * h * w or v / full < DIFFICULT_VISIBLE,
            "pose": _viewpoint_pose(o, eye), "segmentation": polygons(visible)})
    return objects


def _semantic(g: GBuffer, mask: np.ndarray, placed: list[PlacedObject], ctx: Context) -> np.ndarray:
    """ADE class ids: each object's category, the ground, the backdrop where no ray hit
    anything; 0 where the supersamples disagree and no object has half of them."""
    ids = {o.object_id: ADE_CLASSES.index(o.obj.category) + 1 for o in placed}
    ids[GROUND_ID] = ADE_CLASSES.index(ctx.ground) + 1
    lut = np.zeros(GROUND_ID + 1, dtype=np.uint8)
    for oid, cls in ids.items():
        lut[oid] = cls
    out = lut[mask]
    h, w = mask.shape
    ss = g.ss
    empty = (g.ids.reshape(h, ss, w, ss) == 0).all(axis=(1, 3))
    out[empty] = ADE_CLASSES.index(ctx.backdrop) + 1
    return out


# --- one scene -------------------------------------------------------------------------------
def render_scene(seed: int, k: int, size: str) -> dict[str, Any]:
    """Compose and render scene k: image, class map, objects, context (nothing written)."""
    cfg = SCENE_PRESETS[size]
    rng = job_rng(seed, 51, k)
    world = World(seed)
    centric = bool(rng.random() < cfg.object_centric)
    ctx, placed = compose(world, rng, k, centric)
    h, w = cfg.size
    camera = _camera(rng, placed, w / h, centric)
    light = random_light(rng, camera.azimuth)
    bg = _backdrop(ctx, rng, cfg.size)
    ground_at = np.array([camera.target[0], camera.target[2]])
    parts = [trace([o.world_primitives()], camera, cfg.size, cfg.supersample) for o in placed]
    floor = trace([_ground(ctx, rng, ground_at)], camera, cfg.size, cfg.supersample)
    g = composite(parts + [floor])
    out = shade(g, light, bg)
    eye = camera.frame()[0]
    return {"image": out.image, "classes": _semantic(g, out.mask, placed, ctx), "context": ctx.name,
            "object_centric": centric, "objects": _annotate(placed, parts, out.mask, eye)}


def _jpeg_bytes(image: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def voc_xml(stem: str, size: tuple[int, int], objects: list[dict[str, Any]]) -> str:
    """A VOC2007 annotation: boxes 1-based and inclusive."""
    h, w = size
    parts = ["<annotation>\n\t<folder>VOC2007</folder>\n",
             f"\t<filename>{stem}.jpg</filename>\n",
             "\t<source>\n\t\t<database>The VOC2007 Database</database>\n"
             "\t\t<annotation>PASCAL VOC2007</annotation>\n\t\t<image>sslc synthworld</image>\n"
             "\t</source>\n",
             f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n"
             "\t</size>\n\t<segmented>0</segmented>\n"]
    for o in objects:
        x, y, bw, bh = o["bbox"]
        parts.append(f"\t<object>\n\t\t<name>{escape(o['category'])}</name>\n"
                     f"\t\t<pose>{o['pose']}</pose>\n\t\t<truncated>{int(o['truncated'])}</truncated>\n"
                     f"\t\t<difficult>{int(o['difficult'])}</difficult>\n"
                     f"\t\t<bndbox>\n\t\t\t<xmin>{x + 1}</xmin>\n\t\t\t<ymin>{y + 1}</ymin>\n"
                     f"\t\t\t<xmax>{x + bw}</xmax>\n\t\t\t<ymax>{y + bh}</ymax>\n\t\t</bndbox>\n"
                     "\t</object>\n")
    parts.append("</annotation>\n")
    return "".join(parts)


def write_scene(root: Path, seed: int, job: Job, size: str) -> dict[str, Any]:
    """Render scene `job` = ("scenes", split, k) into the three layouts under the world
    root; returns what `finalize_scenes` needs (plain data, picklable)."""
    _, split, k = job
    cfg = SCENE_PRESETS[size]
    scene = render_scene(seed, k, size)
    stem = names(split, k, size)
    h, w = cfg.size
    jpeg = _jpeg_bytes(scene["image"])
    root = Path(root)
    _write(root / COCO_DIR / COCO_SPLIT[split] / f"{stem['coco']}.jpg", jpeg)
    _write(root / VOC_DIR / "JPEGImages" / f"{stem['voc']}.jpg", jpeg)
    _write(root / VOC_DIR / "Annotations" / f"{stem['voc']}.xml",
           voc_xml(stem["voc"], cfg.size, scene["objects"]).encode())
    _write(root / ADE_DIR / "images" / stem["ade_split"] / f"{stem['ade']}.jpg", jpeg)
    png = io.BytesIO()
    Image.fromarray(scene["classes"], mode="L").save(png, format="PNG")
    _write(root / ADE_DIR / "annotations" / stem["ade_split"] / f"{stem['ade']}.png", png.getvalue())
    pixels = np.bincount(scene["classes"].reshape(-1), minlength=len(ADE_CLASSES) + 1)
    return {"split": split, "k": k, "size": [h, w], "context": scene["context"],
            "object_centric": scene["object_centric"], "names": stem,
            "objects": scene["objects"], "pixels": [int(v) for v in pixels]}


# --- what needs every scene --------------------------------------------------------------------
def finalize_scenes(root: Path, seed: int, size: str, results: list[dict[str, Any]]) -> None:
    """COCO json files, VOC image-set lists and the ADE class list and scene categories."""
    root = Path(root)
    results = sorted(results, key=lambda r: r["k"])
    _write_coco(root / COCO_DIR, seed, results)
    _write_voc_lists(root / VOC_DIR, seed, results)
    _write_ade_lists(root / ADE_DIR, results)


def _write_coco(base: Path, seed: int, results: list[dict[str, Any]]) -> None:
    categories = [{"id": i + 1, "name": c, "supercategory": SUPERCATEGORY.get(c, "object")}
                  for i, c in enumerate(CATEGORIES)]
    cat_id = {c["name"]: c["id"] for c in categories}
    ann_id = 0
    for split, folder in COCO_SPLIT.items():
        images, annotations = [], []
        for r in results:
            if r["split"] != split:
                continue
            h, w = r["size"]
            images.append({"id": r["k"], "file_name": f"{r['names']['coco']}.jpg", "width": w,
                           "height": h, "license": 1, "date_captured": "2017-01-01 00:00:00"})
            for o in r["objects"]:
                ann_id += 1
                annotations.append({"id": ann_id, "image_id": r["k"], "category_id": cat_id[o["category"]],
                                    "bbox": [float(v) for v in o["bbox"]], "area": float(o["area"]),
                                    "iscrowd": 0, "segmentation": o["segmentation"]})
        doc = {"info": {"description": f"sslc synthworld scenes (seed {seed}), COCO layout",
                        "version": "1.0", "year": 2017, "contributor": "sslc",
                        "date_created": "2017-01-01"},
               "licenses": [{"id": 1, "name": "synthetic", "url": ""}],
               "images": images, "annotations": annotations, "categories": categories}
        path = base / "annotations" / f"instances_{folder}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, separators=(",", ":")))


def _write_voc_lists(base: Path, seed: int, results: list[dict[str, Any]]) -> None:
    main = base / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    subsets: dict[str, list[dict[str, Any]]] = {"trainval": [], "test": []}
    for r in results:
        subsets[VOC_SPLIT[r["split"]]].append(r)
    # train / val halves of trainval, as VOC2007 ships them
    rng = np.random.default_rng([int(seed), 52])
    tv = subsets["trainval"]
    in_train = set(rng.permutation(len(tv))[: (len(tv) + 1) // 2].tolist())
    subsets["train"] = [r for i, r in enumerate(tv) if i in in_train]
    subsets["val"] = [r for i, r in enumerate(tv) if i not in in_train]
    for subset, rows in subsets.items():
        (main / f"{subset}.txt").write_text("".join(f"{r['names']['voc']}\n" for r in rows))
        for cls in CATEGORIES:
            lines = []
            for r in rows:
                objs = [o for o in r["objects"] if o["category"] == cls]
                label = 1 if any(not o["difficult"] for o in objs) else (0 if objs else -1)
                lines.append(f"{r['names']['voc']} {label:2d}\n")
            (main / f"{cls}_{subset}.txt").write_text("".join(lines))


def _write_ade_lists(base: Path, results: list[dict[str, Any]]) -> None:
    """`objectInfo{N}.txt` as ADEChallengeData2016's objectInfo150.txt (Idx, Ratio = share of
    all pixels, Train / Val = images showing the class, Name) and `sceneCategories.txt`."""
    base.mkdir(parents=True, exist_ok=True)
    total = np.zeros(len(ADE_CLASSES) + 1, dtype=np.int64)
    shown = {"train": Counter[int](), "test": Counter[int]()}
    for r in results:
        px = np.asarray(r["pixels"], dtype=np.int64)
        total += px
        shown[r["split"]].update(int(i) for i in np.flatnonzero(px[1:]) + 1)
    lines = ["Idx\tRatio\tTrain\tVal\tName\n"]
    for i, name in enumerate(ADE_CLASSES, 1):
        ratio = total[i] / max(int(total.sum()), 1)
        lines.append(f"{i}\t{ratio:.4f}\t{shown['train'][i]}\t{shown['test'][i]}\t{name}\n")
    (base / f"objectInfo{len(ADE_CLASSES)}.txt").write_text("".join(lines))
    (base / "sceneCategories.txt").write_text(
        "".join(f"{r['names']['ade']} {r['context']}\n" for r in results))


# --- the docs' sample sheet --------------------------------------------------------------------
def sample_sheet(path: Path, seed: int = 0, scenes: tuple[int, ...] = (3, 8, 34, 42, 38, 25),
                 size: str = "small") -> None:
    """Scenes with their COCO boxes (top) and their ADE class maps over them (bottom)."""
    from PIL import ImageDraw

    hues = [colorsys.hsv_to_rgb((i * 0.618) % 1, 0.75, 0.95) for i in range(len(ADE_CLASSES))]
    palette = (np.array([(0.0, 0.0, 0.0), *hues]) * 255).astype(np.uint8)
    zoom = 3
    h, w = SCENE_PRESETS[size].size
    sheet = Image.new("RGB", (len(scenes) * (w * zoom + 6), 2 * (h * zoom + 6)), "white")
    for col, k in enumerate(scenes):
        sc = render_scene(seed, k, size)
        big = Image.fromarray(sc["image"]).resize((w * zoom, h * zoom), Image.Resampling.NEAREST)
        top = big.copy()
        draw = ImageDraw.Draw(top)
        for o in sc["objects"]:
            x, y, bw, bh = (v * zoom for v in o["bbox"])
            colour = "yellow" if o["difficult"] else "red"
            draw.rectangle([x, y, x + bw - 1, y + bh - 1], outline=colour, width=2)
            draw.text((x + 3, y + 2), o["category"], fill=colour)
        draw.text((3, h * zoom - 12), sc["context"] + (" (one object)" if sc["object_centric"] else ""),
                  fill="white")
        over = Image.fromarray(palette[sc["classes"]]).resize((w * zoom, h * zoom), Image.Resampling.NEAREST)
        blend = Image.blend(big, over, 0.55)
        bdraw = ImageDraw.Draw(blend)
        for cls in np.unique(sc["classes"]):
            if cls == 0:
                continue
            ys, xs = np.nonzero(sc["classes"] == cls)
            bdraw.text((int(np.median(xs)) * zoom - 10, int(np.median(ys)) * zoom - 5),
                       ADE_CLASSES[cls - 1], fill="white")
        x0 = col * (w * zoom + 6) + 3
        sheet.paste(top, (x0, 3))
        sheet.paste(blend, (x0, h * zoom + 9))
    sheet.save(path)


if __name__ == "__main__":  # python -m sslc_plugins.synthworld.write_scenes docs/images/synthworld_scenes.png
    import sys

    sample_sheet(Path(sys.argv[1] if len(sys.argv) > 1 else "synthworld_scenes.png"))
