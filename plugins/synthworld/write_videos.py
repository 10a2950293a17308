"""Videos: 2-4 objects that move, turn and pass behind one another under drifting light,
filmed by a panning, dollying camera over a textured floor and wall.

Nearby frames are positive pairs with genuine viewpoint and illumination change: every
object turns 3-8 degrees a frame (and the camera orbits), the light's direction turns and
its colour temperature drifts by tens of kelvin a frame. Each video is written twice:

- `videos/{name}.mp4` (OpenCV, fourcc mp4v; checked to read back with decord) and
  `videos/{name}.tracks.json` in sslc's track format: `{"num_frames", "size": [H, W],
  "fps", "objects": [{"id", "category", "instance", "boxes": [[x1, y1, x2, y2] | null]}]}`,
  a box per frame (null where the object is not visible at all);
- TrackingNet's layout, for object 1 (the main object, always in view):
  `TrackingNet/TRAIN_0/frames/{name}/{i}.jpg` (i = 0, 1, ...) and
  `TrackingNet/TRAIN_0/anno/{name}.txt` (`x,y,w,h` per frame).

`videos/meta.jsonl` holds each video's per-frame yaw of every object, light and camera.
Boxes are the object's own silhouette in the frame (amodal under occlusion, as GOT-10k).
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssl_core import DataError, inspect_video

from .common import (
    VIDEO_BASE,
    SizeConfig,
    direction,
    job_rng,
    mask_box,
    projected_box,
    save_jpeg,
    trace_apart,
)
from .objects import ObjectInstance, Palette, PlacedObject, World, box
from .render import (
    CHECKS,
    DOTS,
    STRIPES,
    Camera,
    GBuffer,
    Light,
    Material,
    PlacedPrimitives,
    Render,
    composite,
    downsample_mask,
    shade,
    trace,
    upsample,
)

#: job_rng key of this part (imagenet 11, got10k 31, pascal3d 41, scenes 51)
VIDEO_CODE = 61
TRACKINGNET = "TrackingNet/TRAIN_0"
CAMERA_FOV = 30.0
#: camera distance to the main object: a 0.9-unit object is a third of the frame high
CAMERA_DISTANCE = 5.0
MAIN_HEIGHT = 0.9
#: no object's bounding radius (after scaling) above this: wide objects stay in the frame
MAX_RADIUS = 1.1
#: the camera pans after the main object by this share of its motion
FOLLOW = 0.5
#: degrees per frame that every object turns (either way)
YAW_STEP = (3.0, 8.0)
#: depth (z) ranges of the other objects: in front of the main object or behind it
DEPTH_SLOTS = {"front": (1.2, 1.6), "back": (-1.8, -1.3), "far": (-2.9, -2.4)}
#: a plan is redrawn (up to ATTEMPTS times) when less of the main object than this shows in a frame
MIN_MAIN_VISIBLE = 0.25
ATTEMPTS = 4
FLOOR_ID, WALL_ID = 250, 251
WALL_Z = -4.5
#: the floor and wall are faces of huge cubes (isotropic pattern scale)
STAGE = 30.0


def video_name(n: int) -> str:
    return f"synth_{n:05d}"


def video_jobs(cfg: SizeConfig) -> list[tuple[str, int]]:
    return [("videos", n) for n in range(1, cfg.videos + 1)]


@dataclass(frozen=True)
class Track:
    """One object's motion: it stands on the floor at start + f * step, turning yaw_step a frame."""

    object_id: int
    obj: ObjectInstance
    scale: float
    start: tuple[float, float]  # (x, z) at frame 0
    step: tuple[float, float]  # per frame
    yaw0: float
    yaw_step: float

    def position(self, f: float) -> tuple[float, float]:
        return self.start[0] + self.step[0] * f, self.start[1] + self.step[1] * f

    def placed(self, f: int) -> PlacedObject:
        x, z = self.position(f)
        return PlacedObject(self.obj, (x, 0.0, z), self.yaw(f), self.scale, self.object_id)

    def yaw(self, f: int) -> float:
        return (self.yaw0 + self.yaw_step * f) % 360.0


@dataclass(frozen=True)
class Drift:
    """A value that changes linearly over the video: value(f) = mid + step * (f - middle frame)."""

    mid: float
    step: float
    middle: float

    def at(self, f: float) -> float:
        return self.mid + self.step * (f - self.middle)


@dataclass(frozen=True)
class CameraPath:
    """A camera that orbits (azimuth drift), dollies (distance drift) and pans after the main object."""

    azimuth: Drift
    elevation: float
    distance: Drift

    def at(self, main: Track, f: float) -> Camera:
        x, z = main.position(f)
        return Camera(self.azimuth.at(f), self.elevation, self.distance.at(f),
                      (FOLLOW * x, 0.45, FOLLOW * z), CAMERA_FOV)


@dataclass(frozen=True)
class VideoPlan:
    """Everything about one video but its pixels: objects, camera and light over time."""

    n: int
    frames: int
    size: tuple[int, int]
    tracks: tuple[Track, ...]  # tracks[0]: the main object (id 1)
    camera_path: CameraPath
    light_azimuth: Drift
    light_elevation: Drift
    temperature: Drift
    ambient: float
    stage: tuple[PlacedPrimitives, ...]
    attempt: int

    @property
    def name(self) -> str:
        return video_name(self.n)

    def camera(self, f: float) -> Camera:
        return self.camera_path.at(self.tracks[0], f)

    def light(self, f: float) -> Light:
        return Light(direction(self.light_azimuth.at(f), self.light_elevation.at(f)),
                     self.temperature.at(f), 1.0, self.ambient, white_balance=5000.0)


def _scale(obj: ObjectInstance, height: float) -> float:
    """Scale that makes the object about `height` tall, keeping wide ones in the frame."""
    _, radius = obj.bounds()
    return min(float(np.clip(height / obj.height(), 0.6, 1.8)), MAX_RADIUS / radius)


def _step(rng: np.random.Generator, lo: float, hi: float, total: float, frames: int) -> float:
    """A per-frame drift of lo..hi either way, at most `total` over the video."""
    return float(rng.choice([-1.0, 1.0])) * min(float(rng.uniform(lo, hi)), total / max(frames - 1, 1))


def _stage(rng: np.random.Generator) -> tuple[PlacedPrimitives, ...]:
    """A patterned floor (checks or dots) and wall (stripes, checks or dots): random muted colours."""
    pal = Palette(rng)

    def material(patterns: list[int], tile: tuple[float, float]) -> Material:
        c1 = pal.color(sat=(0.1, 0.5), val=(0.3, 0.8))
        c2 = tuple(0.5 * a + 0.5 * b for a, b in zip(c1, pal.color(sat=(0.1, 0.6), val=(0.2, 0.9)),
                                                     strict=True))
        pattern = int(rng.choice(patterns))
        return Material(c1, c2, pattern, STAGE / float(rng.uniform(*tile)), 0.05)  # type: ignore[arg-type]

    floor = box((0.0, -STAGE - 0.002, 0.0), (STAGE,) * 3, material([CHECKS, DOTS], (0.35, 0.8)))
    wall = box((0.0, 0.0, WALL_Z - STAGE), (STAGE,) * 3, material([STRIPES, CHECKS, DOTS], (0.3, 0.9)))
    radius = STAGE * math.sqrt(3.0)
    return (PlacedPrimitives(FLOOR_ID, [floor], floor.offset, radius),
            PlacedPrimitives(WALL_ID, [wall], wall.offset, radius))


def plan_video(seed: int, n: int, frames: int, size: tuple[int, int], categories: list[str],
               attempt: int = 0) -> VideoPlan:
    """Draw video `n` (1-based) from (seed, n, attempt). The main object depends only on
    (seed, n); a later `attempt` (when too little of it showed) redraws the rest, and the
    last one puts nothing in front of it."""
    rng = job_rng(seed, VIDEO_CODE, n, attempt)
    world = World(seed)
    middle = (frames - 1) / 2
    n_objects = int(rng.integers(2, 5))
    slots = [str(s) for s in rng.permutation(list(DEPTH_SLOTS))]
    if attempt == ATTEMPTS - 1:
        slots = [s for s in slots if s != "front"]
    n_objects = min(n_objects, len(slots) + 1)
    cats = [categories[(n - 1) % len(categories)]]  # every category leads as many videos
    cats += [categories[int(rng.integers(len(categories)))] for _ in range(n_objects - 1)]
    insts = [world.instance(c, VIDEO_BASE + 4 * n + j) for j, c in enumerate(cats)]

    vx = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.02, 0.045))
    vz = float(rng.uniform(-0.012, 0.012))
    main_mid = (float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.2, 0.2)))
    main = Track(1, insts[0], _scale(insts[0], MAIN_HEIGHT),
                 (main_mid[0] - vx * middle, main_mid[1] - vz * middle), (vx, vz),
                 float(rng.uniform(0, 360)), _step(rng, *YAW_STEP, 1e9, frames))
    cam_az = Drift(float(rng.uniform(-25, 25)), _step(rng, 0.3, 1.0, 40.0, frames), middle)
    cam_el = float(rng.uniform(8, 20))
    dist = CAMERA_DISTANCE * float(rng.uniform(0.92, 1.08))
    camera = CameraPath(cam_az, cam_el,
                        Drift(dist, _step(rng, 0.004 * dist, 0.01 * dist, 0.3 * dist, frames), middle))

    tracks = [main]
    for j in range(1, n_objects):
        slot = slots[j - 1]
        z = float(rng.uniform(*DEPTH_SLOTS[slot]))
        scale = _scale(insts[j], MAIN_HEIGHT) * float(rng.uniform(0.75, 1.0))
        if slot == "front":  # smaller, so that it hides part of the main object, seldom all
            scale *= float(rng.uniform(0.6, 0.8))
        meet = float(rng.uniform(0.2, 0.8)) * (frames - 1)
        speed = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.09))
        drift_z = float(rng.uniform(-0.008, 0.008))
        # where the line of sight to the main object crosses depth z at frame `meet`
        eye = camera.at(main, meet).frame()[0]
        mx, mz = main.position(meet)
        t = (z - eye[2]) / (mz - eye[2])
        x_meet = float(eye[0] + t * (mx - eye[0]))
        tracks.append(Track(j + 1, insts[j], scale, (x_meet - speed * meet, z - drift_z * meet),
                            (speed, drift_z), float(rng.uniform(0, 360)), _step(rng, *YAW_STEP, 1e9, frames)))

    light_az = Drift(cam_az.mid + float(rng.uniform(-60, 60)), _step(rng, 1.5, 3.0, 100.0, frames), middle)
    light_el = Drift(float(rng.uniform(30, 60)), _step(rng, 0.3, 0.8, 30.0, frames), middle)
    temperature = Drift(float(rng.uniform(3800, 5800)), _step(rng, 50.0, 110.0, 3200.0, frames), middle)
    return VideoPlan(n, frames, size, tuple(tracks), camera, light_az, light_el, temperature,
                     float(rng.uniform(0.25, 0.35)), _stage(rng), attempt)


def render_frame(plan: VideoPlan, f: int, ss: int, objects: bool = True) -> tuple[Render, list[GBuffer]]:
    """Frame f (and each object's own trace); without objects: the empty stage, same camera and light."""
    camera = plan.camera(f)
    placed = [t.placed(f) for t in plan.tracks] if objects else []
    own = trace_apart(placed, camera, plan.size, ss)
    stage = upsample(trace(list(plan.stage), camera, plan.size, 1), ss)
    return shade(composite([stage, *own]), plan.light(f), (0.0, 0.0, 0.0)), own


@dataclass
class Rendered:
    images: list[np.ndarray]
    boxes: list[list[tuple[float, float, float, float] | None]]  # [object][frame] (x, y, w, h)
    visible: list[list[float]]  # [object][frame] visible share of the in-frame silhouette


def render_video(plan: VideoPlan, ss: int, strict: bool = True) -> Rendered | None:
    """All frames; None (when strict) as soon as too little of the main object shows."""
    out = Rendered([], [[] for _ in plan.tracks], [[] for _ in plan.tracks])
    for f in range(plan.frames):
        frame, own = render_frame(plan, f, ss)
        for k, (track, g) in enumerate(zip(plan.tracks, own, strict=True)):
            alone = downsample_mask(g)[0] == track.object_id
            full = int(alone.sum())
            seen = int((frame.mask == track.object_id).sum())
            out.boxes[k].append(mask_box(alone) if seen else None)
            out.visible[k].append(round(seen / full, 4) if full else 0.0)
        if strict and out.visible[0][-1] < MIN_MAIN_VISIBLE:
            return None
        out.images.append(frame.image)
    return out


def write_video(root: Path, seed: int, n: int, frames: int, size: tuple[int, int], fps: int,
                categories: list[str], ss: int = 2) -> dict[str, Any]:
    """Render video `n` (1-based) into root (the part folder: `videos/`, `TrackingNet/`)."""
    rendered = None
    for attempt in range(ATTEMPTS):
        plan = plan_video(seed, n, frames, size, categories, attempt)
        rendered = render_video(plan, ss, strict=attempt < ATTEMPTS - 1)
        if rendered is not None:
            break
    assert rendered is not None
    name = plan.name
    h, w = size
    mp4 = Path(root) / "videos" / f"{name}.mp4"
    write_mp4(mp4, rendered.images, fps)
    check_mp4(mp4, frames, size)
    objects = [{"id": t.object_id, "category": t.obj.category, "instance": t.obj.instance,
                "boxes": [None if b is None else [b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in boxes]}
               for t, boxes in zip(plan.tracks, rendered.boxes, strict=True)]
    tracks = {"num_frames": frames, "size": [h, w], "fps": fps, "objects": objects}
    (mp4.parent / f"{name}.tracks.json").write_text(json.dumps(tracks) + "\n")
    tn = Path(root) / TRACKINGNET
    for i, image in enumerate(rendered.images):
        save_jpeg(tn / "frames" / name / f"{i}.jpg", image)
    main = plan.tracks[0]
    lines = []
    for f, b in enumerate(rendered.boxes[0]):
        # the main object is always in view (render_video redraws plans where it is not)
        x, y, bw, bh = b if b is not None else projected_box(main.placed(f), plan.camera(f), size)
        lines.append(f"{x:.4f},{y:.4f},{bw:.4f},{bh:.4f}\n")
    (tn / "anno").mkdir(parents=True, exist_ok=True)
    (tn / "anno" / f"{name}.txt").write_text("".join(lines))
    rng_frames = range(frames)
    return {
        "name": name, "num_frames": frames, "size": [h, w], "fps": fps, "attempt": plan.attempt,
        "objects": [{"id": t.object_id, "category": t.obj.category, "instance": t.obj.instance,
                     "scale": round(t.scale, 4), "yaw": [round(t.yaw(f), 3) for f in rng_frames],
                     "visible": vis}
                    for t, vis in zip(plan.tracks, rendered.visible, strict=True)],
        "camera": {"azimuth": [round(plan.camera_path.azimuth.at(f), 3) for f in rng_frames],
                   "elevation": round(plan.camera_path.elevation, 3),
                   "distance": [round(plan.camera_path.distance.at(f), 4) for f in rng_frames]},
        "light": {"azimuth": [round(plan.light_azimuth.at(f), 3) for f in rng_frames],
                  "elevation": [round(plan.light_elevation.at(f), 3) for f in rng_frames],
                  "temperature": [round(plan.temperature.at(f), 1) for f in rng_frames]},
    }


def write_mp4(path: Path, images: list[np.ndarray], fps: int) -> None:
    """RGB frames -> mp4 (fourcc mp4v) with OpenCV."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise DataError(f"OpenCV cannot write {path} (fourcc mp4v)",
                        "install an OpenCV build with FFmpeg, e.g. `pip install opencv-python-headless`")
    try:
        for image in images:
            writer.write(np.ascontiguousarray(image[:, :, ::-1]))
    finally:
        writer.release()


def check_mp4(path: Path, frames: int, size: tuple[int, int]) -> None:
    """The video must read back with decord (what the video datasets use, through
    `ssl_core.inspect_video`, which decodes the last frame): frame count and size."""
    got, _, shape = inspect_video(path)
    if (got, shape) != (frames, tuple(size)):
        raise DataError(f"{path}: decord reads {got} frames of {shape[0]}x{shape[1]} (HxW), "
                        f"expected {frames} of {size[0]}x{size[1]}",
                        "OpenCV's mp4v encoder and decord disagree; check the installed OpenCV and decord")


def write_index(root: Path, results: list[dict[str, Any]]) -> dict[str, int]:
    """`videos/meta.jsonl`: one line per video, sorted by name."""
    rows = sorted(results, key=lambda r: r["name"])
    folder = Path(root) / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    return {"videos": len(rows), "frames": sum(r["num_frames"] for r in rows),
            "redrawn": sum(r["attempt"] > 0 for r in rows)}


# --- a look at the videos (docs/images/synthworld_videos.png) ----------------------------------
BOX_COLOURS = ((255, 60, 60), (60, 200, 255), (255, 220, 40), (120, 255, 100))


def contact_sheet(root: Path, names: list[str], path: Path, every: int = 4, zoom: int = 2) -> None:
    """Every `every`-th frame of each video (TrackingNet jpgs) in a row, with each object's
    box from the sidecar in its own colour (object 1 red)."""
    from PIL import Image, ImageDraw

    rows = []
    for name in names:
        tracks = json.loads((Path(root) / "videos" / f"{name}.tracks.json").read_text())
        h, w = tracks["size"]
        picks = list(range(0, tracks["num_frames"], every))
        row = Image.new("RGB", (len(picks) * (w * zoom + 2), h * zoom + 2), (255, 255, 255))
        for col, f in enumerate(picks):
            frame = Image.open(Path(root) / TRACKINGNET / "frames" / name / f"{f}.jpg").convert("RGB")
            frame = frame.resize((w * zoom, h * zoom), Image.Resampling.NEAREST)
            draw = ImageDraw.Draw(frame)
            for obj in tracks["objects"]:
                b = obj["boxes"][f]
                if b is not None:
                    colour = BOX_COLOURS[(obj["id"] - 1) % len(BOX_COLOURS)]
                    draw.rectangle([b[0] * zoom, b[1] * zoom, b[2] * zoom - 1, b[3] * zoom - 1],
                                   outline=colour, width=1)
            row.paste(frame, (col * (w * zoom + 2), 1))
        rows.append(row)
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), (255, 255, 255))
    y = 0
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def sample_sheet(path: Path, seed: int = 0, size: str = "small", videos: tuple[int, ...] = (1, 2, 3, 4, 5, 6),
                 every: int = 4) -> None:
    """Render a few videos of a size preset into a temporary folder and draw their contact sheet."""
    from .common import SIZES

    cfg = SIZES[size]
    with tempfile.TemporaryDirectory() as tmp:
        for n in videos:
            write_video(Path(tmp), seed, n, cfg.video_frames, cfg.video_size, cfg.video_fps,
                        list(cfg.categories), cfg.supersample)
        contact_sheet(Path(tmp), [video_name(n) for n in videos], Path(path), every)
