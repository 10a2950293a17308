"""Object categories as parametric compositions of 3D primitives, and the world that samples them.

Object space: y up, the object stands on y = 0, about 1 unit tall and wide, facing +z.
Each category builder draws its proportions, colours and patterns from an rng, so an
instance is fully determined by (world seed, category, instance index).
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .render import (
    BOX,
    CHECKS,
    DOTS,
    FRUSTUM,
    PLAIN,
    SPHERE,
    STRIPES,
    TORUS,
    Camera,
    Light,
    Material,
    PlacedPrimitives,
    Primitive,
    Render,
    shade,
    trace,
)

Vec = Sequence[float]


def _rot(yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotation (degrees): roll about z, then pitch about x, then yaw about y."""
    y, p, r = (math.radians(a) for a in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def sphere(center: Vec, radii: Vec | float, mat: Material, rot: np.ndarray | None = None) -> Primitive:
    radii = (radii,) * 3 if isinstance(radii, (int, float)) else radii
    lin = (np.eye(3) if rot is None else rot) @ np.diag(radii)
    return Primitive(SPHERE, lin, np.asarray(center, float), mat)


def box(center: Vec, half: Vec, mat: Material, rot: np.ndarray | None = None) -> Primitive:
    lin = (np.eye(3) if rot is None else rot) @ np.diag(half)
    return Primitive(BOX, lin, np.asarray(center, float), mat)


def cyl(center: Vec, radius: float, half_height: float, mat: Material, top: float | None = None,
        rot: np.ndarray | None = None) -> Primitive:
    """A cylinder (or cone frustum when `top` differs) along y; `top` = top radius / radius."""
    lin = (np.eye(3) if rot is None else rot) @ np.diag([radius, half_height, radius])
    return Primitive(FRUSTUM, lin, np.asarray(center, float), mat, (1.0, 1.0 if top is None else top))


def torus(center: Vec, radius: float, minor: float, mat: Material,
          rot: np.ndarray | None = None) -> Primitive:
    lin = (np.eye(3) if rot is None else rot) * radius
    return Primitive(TORUS, lin, np.asarray(center, float), mat, (minor / radius,))


class Palette:
    """Draws colours and materials for one instance."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def color(self, hue: float | None = None, sat: tuple[float, float] = (0.35, 0.9),
              val: tuple[float, float] = (0.45, 0.95)) -> tuple[float, float, float]:
        h = self.rng.random() if hue is None else hue % 1.0
        return colorsys.hsv_to_rgb(h, self.rng.uniform(*sat), self.rng.uniform(*val))

    def gray(self, lo: float = 0.1, hi: float = 0.9) -> tuple[float, float, float]:
        v = float(self.rng.uniform(lo, hi))
        return (v, v, v)

    def mat(self, color: tuple[float, float, float] | None = None, patterned: float = 0.5,
            specular: float | None = None, freq: tuple[float, float] = (2.0, 6.0)) -> Material:
        color = color or self.color()
        pattern = PLAIN
        if self.rng.random() < patterned:
            pattern = int(self.rng.choice([STRIPES, CHECKS, DOTS]))
        spec = float(self.rng.uniform(0.05, 0.5)) if specular is None else specular
        return Material(color, self.color(), pattern, float(self.rng.uniform(*freq)), spec)

    def plain(self, color: tuple[float, float, float], specular: float = 0.2) -> Material:
        return Material(color, color, PLAIN, 1.0, specular)


# --- categories ------------------------------------------------------------------------------
def _mug(rng: np.random.Generator, pal: Palette) -> list[Primitive]:
    r = rng.uniform(0.25, 0.4)
    h = rng.uniform(0.5, 0.85)
    body = pal.mat(patterned=0.7, specular=0.4)
    top = rng.uniform(0.85, 1.15)
    prims = [cyl((0, h / 2, 0), r, h / 2, body, top=top),
             cyl((0, h + 0.002, 0), r * top * 0.86, 0.004, pal.plain((0.12, 0.08, 0.05), 0.6))]
    hr = rng.uniform(0.25, 0.35) * h
    prims.append(torus((r * (1 + top) / 2, h / 2, 0), hr, rng.uniform(0.03, 0.05),
                       pal.plain(body.color, 0.4), rot=_rot(pitch=90)))
    return prims


def _diningtable(rng: np.random.Generator, pal: Palette) -> list[Primitive]:
    w, d = rng.uniform(0.5, 0.75), rng.uniform(0.3, 0.55)
    h = rng.uniform(0.45, 0.7)
    t = rng.uniform(0.025, 0.06)
    wood = pal.color(hue=rng.uniform(0.05, 0.12), sat=(0.4, 0.8), val=(0.3, 0.8))
    top_mat = pal.mat(wood, patterned=0.4)
    leg = pal.plain(pal.color(hue=rng.uniform(0.05, 0.12), val=(0.2, 0.6)))
    prims = [box((0, h - t, 0), (w, t, d), top_mat)]
    round_legs = rng.random() < 0.5
    lr = rng.uniform(0.025, 0.05)
    for sx in (-1, 1):
        for sz in (-1, 1):
            c = (sx * (w - 2 * lr), (h - 2 * t) / 2, sz * (d - 2 * lr))
            if round_legs:
                prims.append(cyl(c, lr, (h - 2 * t) / 2, leg))
            else:
                prims.append(box(c, (lr, (h - 2 * t) / 2, lr), leg))
    return prims


def _lamp(rng: np.random.Generator, pal: Palette) -> list[Primitive]:
    metal = pal.plain(pal.gray(0.2, 0.8), 0.6)
    base_r = rng.uniform(0.15, 0.3)
    pole_h = rng.uniform(0.5, 0.85)
    shade_r = rng.uniform(0.2, 0.4)
    shade_h = rng.uniform(0.12, 0.25)
    shade_mat = pal.mat(patterned=0.6, specular=0.1)
    return [cyl((0, 0.03, 0), base_r, 0.03, metal),
            cyl((0, pole_h / 2, 0), 0.025, pole_h / 2, metal),
            sphere((0, pole_h, 0), 0.07, pal.plain((1.0, 0.95, 0.7), 0.8)),
            cyl((0, pole_h + shade_h * 0.4, 0), shade_r, shade_h, shade_mat,
                top=rng.uniform(0.4, 0.75))]


def _car(rng: np.random.Generator, pal: Palette) -> list[Primitive]:
    length, width = rng.uniform(0.6, 0.85), rng.uniform(0.3, 0.4)
    body_h = rng.uniform(0.12, 0.2)
    wheel_r = rng.uniform(0.1, 0.15)
    paint = pal.mat(patterned=0.3, specular=0.6)
    glass = pal.plain((0.15, 0.2, 0.28), 0.9)
    y0 = wheel_r + body_h
    cab_l = length * rng.uniform(0.4, 0.6)
    cab_h = rng.uniform(0.1, 0.18)
    prims = [box((0, y0, 0), (width, body_h, length), paint),
             box((0, y0 + body_h + cab_h, -length * rng.uniform(0, 0.2)), (width * 0.85, cab_h, cab_l),
                 glass if rng.random() < 0.5 else paint)]
    tire = pal.plain((0.06, 0.06, 0.06), 0.1)
    for sx in (-1, 1):
        for sz in (-1, 1):
            prims.append(cyl((sx * width * 0.92, wheel_r, sz * length * 0.65), wheel_r, 0.06, tire,
                             rot=_rot(roll=90)))
    lamp = pal.plain((1.0, 1.0, 0.8), 0.9)
    for sx in (-1, 1):
        prims.append(sphere((sx * width * 0.65, y0, length), (0.05, 0.04, 0.02), lamp))
    return prims


def _chair(rng: np.random.Generator, pal: Palette) -> list[Primitive]:
    w = rng.uniform(0.25, 0.35)
    seat_h = rng.uniform(0.35, 0.5)
    back_h = rng.uniform(0.3, 0.55)
    mat = pal.mat(patterned=0.4)
    leg = pal.plain(pal.color(val=(0.2, 0.7)), 0.3)
    lr = rng.uniform(0.02, 0.035)
    prims = [box((0, seat_h, 0), (w, 0.03, w), mat),
             box((0, seat_h + back_h / 2 + 0.03, -w + 0.02), (w, back_h / 2, 0.025), mat,
                 rot=_rot(pitch=-rng.uniform(0, 12)))]
    for sx in (-1, 1):
        for sz in (-1, 1):
            prims.append(box((sx * (w - lr), seat_h / 2, sz * (w - lr)), (lr, seat_h / 2, lr), leg))
    return prims


def _bottle(rng: np.random.Generator, pal: Palette) -> list[Primitive]:
    r = rng.uniform(0.13, 0.22)
    h = rng.uniform(0.45, 0.7)
    neck_r = r * rng.uniform(0.3, 0.45)
    glass = pal.plain(pal.color(sat=(0.3, 0.9), val=(0.25, 0.75)), 0.8)
    label = pal.mat(patterned=0.8, specular=0.1)
    shoulder = rng.uniform(0.1, 0.2)
    neck = rng.uniform(0.12, 0.22)
    return [cyl((0, h / 2, 0), r, h / 2, glass),
            cyl((0, h * 0.5, 0), r * 1.01, h * 0.18, label),
            cyl((0, h + shoulder / 2, 0), r, shoulder / 2, glass, top=neck_r / r),
            cyl((0, h + shoulder + neck / 2, 0), neck_r, neck / 2, glass),
            cyl((0, h + shoulder + neck + 0.025, 0), neck_r * 1.15, 0.025, pal.plain(pal.color(), 0.5))]


def _robot(rng: np.random.Generator, pal: Palette) -> list[Primitive]:
    body = pal.mat(patterned=0.4, specular=0.5)
    metal = pal.plain(pal.gray(0.3, 0.8), 0.6)
    leg_h = rng.uniform(0.15, 0.3)
    tw, th = rng.uniform(0.18, 0.28), rng.uniform(0.18, 0.28)
    head = rng.uniform(0.09, 0.14)
    prims = [box((-tw * 0.5, leg_h / 2, 0), (0.05, leg_h / 2, 0.06), metal),
             box((tw * 0.5, leg_h / 2, 0), (0.05, leg_h / 2, 0.06), metal),
             box((0, leg_h + th, 0), (tw, th, tw * 0.6), body)]
    hy = leg_h + 2 * th + head + 0.02
    if rng.random() < 0.5:
        prims.append(box((0, hy, 0), (head, head, head), pal.plain(pal.color(), 0.4)))
    else:
        prims.append(sphere((0, hy, 0), head * 1.2, pal.plain(pal.color(), 0.4)))
    eye = pal.plain((1.0, rng.uniform(0.2, 1.0), 0.1), 0.9)
    for sx in (-1, 1):
        prims.append(sphere((sx * head * 0.45, hy + head * 0.15, head * 1.0), head * 0.22, eye))
        angle = rng.uniform(-40, 40)
        prims.append(cyl((sx * (tw + 0.04), leg_h + th * 1.2, 0), 0.035, th * 0.9, metal,
                         rot=_rot(pitch=angle)))
    prims.append(cyl((0, hy + head + 0.06, 0), 0.01, 0.06, metal))
    prims.append(sphere((0, hy + head + 0.13, 0), 0.025, eye))
    return prims


def _tree(rng: np.random.Generator, pal: Palette) -> list[Primitive]:
    trunk_h = rng.uniform(0.2, 0.4)
    bark = pal.plain(pal.color(hue=rng.uniform(0.05, 0.1), sat=(0.4, 0.7), val=(0.2, 0.45)), 0.05)
    leaf = pal.mat(pal.color(hue=rng.uniform(0.22, 0.4), sat=(0.5, 0.9), val=(0.3, 0.75)),
                   patterned=0.3, specular=0.05)
    prims = [cyl((0, trunk_h / 2, 0), rng.uniform(0.04, 0.08), trunk_h / 2, bark)]
    if rng.random() < 0.5:  # conifer: stacked cones
        layers = int(rng.integers(2, 4))
        y, r = trunk_h * 0.8, rng.uniform(0.35, 0.45)
        for _ in range(layers):
            hh = rng.uniform(0.15, 0.22)
            prims.append(cyl((0, y + hh, 0), r, hh, leaf, top=0.0))
            y += hh * 1.2
            r *= 0.75
    else:  # broadleaf: a cluster of spheres
        for _ in range(int(rng.integers(3, 6))):
            c = (rng.uniform(-0.15, 0.15), trunk_h + rng.uniform(0.15, 0.4), rng.uniform(-0.15, 0.15))
            prims.append(sphere(c, rng.uniform(0.15, 0.25), leaf))
    return prims


def _rocket(rng: np.random.Generator, pal: Palette) -> list[Primitive]:
    r = rng.uniform(0.1, 0.16)
    h = rng.uniform(0.5, 0.75)
    y0 = 0.12
    body = pal.mat(patterned=0.6, specular=0.5)
    accent = pal.plain(pal.color(), 0.4)
    prims = [cyl((0, y0 + h / 2, 0), r, h / 2, body),
             cyl((0, y0 + h + r * 1.3, 0), r, r * 1.3, accent, top=0.0),
             cyl((0, y0 / 2, 0), r * 0.7, y0 / 2, pal.plain((0.25, 0.25, 0.25), 0.6), top=1.2),
             sphere((0, y0 + h * 0.7, r * 0.95), (r * 0.35, r * 0.35, r * 0.1), pal.plain((0.5, 0.8, 1.0), 0.9))]
    n_fins = int(rng.choice([3, 4]))
    for k in range(n_fins):
        yaw = 360.0 * k / n_fins + 45
        rot = _rot(yaw=yaw)
        c = rot @ np.array([0.0, 0.0, r + 0.07])
        prims.append(box((c[0], y0 + 0.1, c[2]), (0.012, 0.1, 0.08), accent, rot=rot))
    return prims


def _snowman(rng: np.random.Generator, pal: Palette) -> list[Primitive]:
    snow = pal.plain((0.93, 0.95, 1.0), 0.2)
    r1 = rng.uniform(0.22, 0.3)
    r2 = r1 * rng.uniform(0.65, 0.8)
    r3 = r2 * rng.uniform(0.6, 0.8)
    y1, y2 = r1, 2 * r1 + r2 * 0.8
    y3 = y2 + r2 + r3 * 0.8
    prims = [sphere((0, y1, 0), r1, snow), sphere((0, y2, 0), r2, snow), sphere((0, y3, 0), r3, snow),
             cyl((0, y3, r3 * 1.2), 0.03, r3 * 0.45, pal.plain((1.0, 0.45, 0.05), 0.3), top=0.0,
                 rot=_rot(pitch=90))]
    coal = pal.plain((0.05, 0.05, 0.05), 0.5)
    for sx in (-1, 1):
        prims.append(sphere((sx * r3 * 0.35, y3 + r3 * 0.3, r3 * 0.9), 0.025, coal))
    for k in range(3):
        prims.append(sphere((0, y2 - r2 * 0.4 + k * r2 * 0.4, r2 * 0.97), 0.025, coal))
    hat = pal.mat(pal.color(val=(0.1, 0.6)), patterned=0.3)
    hh = rng.uniform(0.08, 0.15)
    prims += [cyl((0, y3 + r3 * 0.85, 0), r3 * 1.1, 0.012, hat),
              cyl((0, y3 + r3 * 0.85 + hh, 0), r3 * 0.7, hh, hat)]
    scarf = pal.mat(patterned=0.8)
    prims.append(torus((0, y2 + r2 * 0.75, 0), r2 * 0.62, 0.04, scarf))
    return prims


def _aeroplane(rng: np.random.Generator, pal: Palette) -> list[Primitive]:
    length = rng.uniform(0.6, 0.8)
    r = rng.uniform(0.07, 0.11)
    y = 0.35
    paint = pal.mat(pal.color(sat=(0.0, 0.4), val=(0.6, 1.0)), patterned=0.3, specular=0.6)
    accent = pal.plain(pal.color(), 0.5)
    span = rng.uniform(0.55, 0.8)
    sweep = rng.uniform(0, 25)
    prims = [sphere((0, y, 0), (r, r, length), paint),
             box((0, y - r * 0.3, 0.05), (span, 0.012, rng.uniform(0.08, 0.13)), accent,
                 rot=_rot(yaw=0)),
             box((0, y + r * 1.6, -length * 0.82), (0.012, r * 1.6, 0.08), accent,
                 rot=_rot(pitch=-sweep)),
             box((0, y + r * 0.3, -length * 0.85), (span * 0.35, 0.01, 0.05), accent)]
    if rng.random() < 0.7:
        eng = pal.plain(pal.gray(0.3, 0.7), 0.6)
        for sx in (-1, 1):
            prims.append(cyl((sx * span * 0.45, y - r * 0.9, 0.12), 0.04, 0.09, eng, rot=_rot(pitch=90)))
    prims.append(sphere((0, y + r * 0.4, length * 0.7), (r * 0.6, r * 0.45, r * 1.2),
                        pal.plain((0.15, 0.2, 0.3), 0.9)))
    return prims


def _sofa(rng: np.random.Generator, pal: Palette) -> list[Primitive]:
    w = rng.uniform(0.5, 0.75)
    d = rng.uniform(0.28, 0.38)
    seat = rng.uniform(0.18, 0.26)
    fabric = pal.mat(patterned=0.5, specular=0.05, freq=(4.0, 9.0))
    cushion = pal.plain(pal.color(), 0.05) if rng.random() < 0.5 else fabric
    arm_h = seat + rng.uniform(0.08, 0.16)
    back_h = seat + rng.uniform(0.2, 0.35)
    prims = [box((0, seat / 2, 0), (w, seat / 2, d), fabric),
             box((0, back_h / 2, -d + 0.06), (w, back_h / 2, 0.06), fabric)]
    for sx in (-1, 1):
        prims.append(box((sx * (w + 0.05), arm_h / 2, 0), (0.06, arm_h / 2, d), fabric))
    n = int(rng.integers(2, 4))
    cw = w / n
    for k in range(n):
        prims.append(box((-w + cw * (2 * k + 1), seat + 0.03, 0.04), (cw * 0.95, 0.03, d - 0.08), cushion))
    return prims


def _boat(rng: np.random.Generator, pal: Palette) -> list[Primitive]:
    length = rng.uniform(0.6, 0.85)
    w = rng.uniform(0.18, 0.26)
    hull = pal.mat(patterned=0.4, specular=0.3)
    hull_h = rng.uniform(0.1, 0.16)
    prims = [box((0, hull_h, 0), (w, hull_h, length * 0.75), hull),
             cyl((0, hull_h, length * 0.75), w, hull_h, hull, top=1.0, rot=_rot(yaw=0)) ,
             box((0, 0.04, 0), (w * 0.8, 0.04, length * 0.7), pal.plain((0.1, 0.1, 0.12), 0.2))]
    if rng.random() < 0.5:  # sailing boat
        mast_h = rng.uniform(0.5, 0.8)
        prims.append(cyl((0, 2 * hull_h + mast_h / 2, 0.05), 0.015, mast_h / 2, pal.plain((0.4, 0.3, 0.2))))
        sail = pal.mat(pal.color(sat=(0.0, 0.3), val=(0.85, 1.0)), patterned=0.4, specular=0.05)
        prims.append(box((0, 2 * hull_h + mast_h * 0.55, -0.12), (0.006, mast_h * 0.4, 0.16), sail))
    else:  # motor boat with a cabin
        cab = pal.plain(pal.color(sat=(0.0, 0.3), val=(0.7, 1.0)), 0.4)
        ch = rng.uniform(0.08, 0.14)
        prims.append(box((0, 2 * hull_h + ch, -0.05), (w * 0.7, ch, length * 0.3), cab))
        prims.append(box((0, 2 * hull_h + ch * 1.3, length * 0.25 - 0.05), (w * 0.6, ch * 0.5, 0.01),
                         pal.plain((0.15, 0.2, 0.3), 0.9)))
    return prims


def _tvmonitor(rng: np.random.Generator, pal: Palette) -> list[Primitive]:
    w = rng.uniform(0.4, 0.6)
    h = w * rng.uniform(0.55, 0.75)
    stand = rng.uniform(0.08, 0.2)
    frame = pal.plain(pal.color(sat=(0.0, 0.4), val=(0.05, 0.8)), 0.5)
    screen = pal.mat(pal.color(val=(0.3, 0.9)), patterned=0.9, specular=0.9, freq=(2.0, 5.0))
    cy = stand + 0.03 + h
    return [box((0, 0.015, 0), (w * 0.4, 0.015, 0.15), frame),
            cyl((0, stand / 2 + 0.03, -0.02), 0.03, stand / 2, frame),
            box((0, cy, -0.03), (w, h, 0.04), frame),
            box((0, cy, 0.011), (w * 0.92, h * 0.88, 0.004), screen)]


CATEGORIES: dict[str, Callable[[np.random.Generator, Palette], list[Primitive]]] = {
    "aeroplane": _aeroplane,
    "boat": _boat,
    "bottle": _bottle,
    "car": _car,
    "chair": _chair,
    "diningtable": _diningtable,
    "lamp": _lamp,
    "mug": _mug,
    "robot": _robot,
    "rocket": _rocket,
    "snowman": _snowman,
    "sofa": _sofa,
    "tree": _tree,
    "tvmonitor": _tvmonitor,
}


@dataclass(frozen=True)
class ObjectInstance:
    """One object: its category, index within the category and its primitives in object space."""

    category: str
    instance: int
    prims: tuple[Primitive, ...]

    def bounds(self) -> tuple[np.ndarray, float]:
        """Centre and radius of a sphere holding every primitive (from their bounding boxes)."""
        center, radius = self._bounds
        return center.copy(), radius

    @cached_property
    def _bounds(self) -> tuple[np.ndarray, float]:
        lo = np.min([p.offset - p.half_extent() for p in self.prims], axis=0)
        hi = np.max([p.offset + p.half_extent() for p in self.prims], axis=0)
        return (lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2)

    def height(self) -> float:
        tops = []
        for p in self.prims:
            ext = np.abs(p.linear[1]).sum()
            tops.append(p.offset[1] + ext)
        return float(max(tops))


@dataclass(frozen=True)
class PlacedObject:
    """An instance placed in a scene: position of its base, yaw (degrees), uniform scale."""

    obj: ObjectInstance
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw: float = 0.0
    scale: float = 1.0
    object_id: int = 1

    def world_primitives(self) -> PlacedPrimitives:
        rot = _rot(yaw=self.yaw) * self.scale
        pos = np.asarray(self.position, dtype=float)
        prims = [Primitive(p.kind, rot @ p.linear, rot @ p.offset + pos, p.material, p.param)
                 for p in self.obj.prims]
        center, radius = self.obj.bounds()
        return PlacedPrimitives(self.object_id, prims, rot @ center + pos, radius * self.scale)


@dataclass
class Scene:
    """The objects to render together; ids in the instance mask are each object's `object_id`."""

    objects: list[PlacedObject] = field(default_factory=list)

    def prepared(self) -> list[PlacedPrimitives]:
        return [o.world_primitives() for o in self.objects]


class World:
    """Samples object instances deterministically from a seed."""

    def __init__(self, seed: int = 0, categories: Sequence[str] | None = None) -> None:
        self.seed = int(seed)
        self.categories = list(categories) if categories is not None else list(CATEGORIES)
        unknown = [c for c in self.categories if c not in CATEGORIES]
        if unknown:
            raise KeyError(f"unknown categories {unknown}; known: {sorted(CATEGORIES)}")

    def instance(self, category: str, index: int) -> ObjectInstance:
        """The `index`-th instance of `category` in this world (same seed -> same object)."""
        cat_idx = list(CATEGORIES).index(category)
        rng = np.random.default_rng([self.seed, 7919, cat_idx, int(index)])
        prims = CATEGORIES[category](rng, Palette(rng))
        return ObjectInstance(category, int(index), tuple(prims))

    def instances(self, per_category: int, start: int = 0) -> list[ObjectInstance]:
        return [self.instance(c, start + i) for c in self.categories for i in range(per_category)]


def object_camera(obj: ObjectInstance, azimuth: float, elevation: float, fill: float = 1.0,
                  aspect: float = 1.0, fov: float = 35.0) -> Camera:
    """A turntable camera that frames `obj` (its bounding sphere fills `fill` of the view)."""
    center, radius = obj.bounds()
    half = math.radians(fov) / 2.0
    fit = math.tan(half) * min(1.0, aspect)
    distance = radius / (fill * math.sin(math.atan(fit)))
    return Camera(azimuth, elevation, distance, (0.0, float(center[1]), 0.0), fov)


def render(scene: Scene, camera: Camera, light: Light, size: tuple[int, int] = (96, 96),
           bg: np.ndarray | Sequence[float] = (0.0, 0.0, 0.0), ss: int = 2) -> Render:
    """Trace and shade `scene`; size is (height, width)."""
    out = shade(trace(scene.prepared(), camera, size, ss), light, bg)
    out.meta = {"camera": {"azimuth": camera.azimuth, "elevation": camera.elevation,
                           "distance": camera.distance},
                "light": {"direction": list(light.unit()), "temperature": light.temperature},
                "objects": [{"id": o.object_id, "category": o.obj.category, "instance": o.obj.instance}
                            for o in scene.objects]}
    return out
