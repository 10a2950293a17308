"""A small numpy ray caster for analytic 3D primitives.

Every primitive is a canonical shape (unit sphere, box [-1, 1]^3, cone frustum along y,
torus in the xz plane) mapped into the world by an affine transform. Rays from a
perspective camera are intersected with each primitive over the screen rectangle its
bounding sphere projects to; a z-buffer keeps the nearest hit across primitives and
objects. Tracing (geometry) and shading (light) are separate steps, so one traced view
can be lit many times (ALOI's 8 light directions, 12 colour temperatures).

Nothing here imports torch: worker processes stay light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

RENDERER_VERSION = "1"

SPHERE, BOX, FRUSTUM, TORUS = 0, 1, 2, 3

PLAIN, STRIPES, CHECKS, DOTS = 0, 1, 2, 3


@dataclass(frozen=True)
class Material:
    """Surface colour and an optional pattern in the primitive's own (canonical) space."""

    color: tuple[float, float, float]
    color2: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pattern: int = PLAIN
    freq: float = 4.0
    specular: float = 0.15


@dataclass(frozen=True)
class Primitive:
    """A canonical shape placed by `linear` (3x3) and `offset` (3,) into object space.

    `param` is the frustum's (r_bottom, r_top) or the torus's minor radius.
    """

    kind: int
    linear: np.ndarray
    offset: np.ndarray
    material: Material
    param: tuple[float, ...] = ()

    @cached_property
    def inverse(self) -> np.ndarray:
        """inv(linear), computed once per primitive (a traced ALOI view reuses it 76 times)."""
        return np.linalg.inv(self.linear)

    def half_extent(self) -> np.ndarray:
        """Half sizes of the axis-aligned box around `offset` that holds the whole shape."""
        return self._half_extent

    @cached_property
    def _half_extent(self) -> np.ndarray:
        lin = self.linear
        if self.kind == BOX:
            return np.abs(lin).sum(axis=1)
        if self.kind == SPHERE:
            return np.sqrt((lin * lin).sum(axis=1))
        if self.kind == FRUSTUM:
            r = max(self.param)
            # a disc of radius r in canonical xz, swept along canonical y
            disc = np.sqrt((lin[:, 0] * r) ** 2 + (lin[:, 2] * r) ** 2)
            return disc + np.abs(lin[:, 1])
        m = self.param[0]  # torus
        return np.sqrt((lin[:, 0] * (1 + m)) ** 2 + (lin[:, 2] * (1 + m)) ** 2) + np.abs(lin[:, 1]) * m

    def bound_radius(self) -> float:
        """Radius of a sphere around `offset` that holds the whole shape."""
        s = float(np.linalg.norm(self.linear, ord=2))
        if self.kind == BOX:
            s *= math.sqrt(3.0)
        elif self.kind == FRUSTUM:
            s *= math.sqrt(1.0 + max(self.param) ** 2)
        elif self.kind == TORUS:
            s *= 1.0 + self.param[0]
        return min(s, float(np.linalg.norm(self.half_extent())))


@dataclass(frozen=True)
class Camera:
    """A perspective camera on a turntable around `target`.

    Azimuth 0 looks at the object's front (+z side), angles in degrees; elevation
    above the horizon.
    """

    azimuth: float = 0.0
    elevation: float = 15.0
    distance: float = 3.0
    target: tuple[float, float, float] = (0.0, 0.45, 0.0)
    fov: float = 35.0

    def frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Eye position and the right, up, forward unit vectors."""
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        offset = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
        target = np.asarray(self.target, dtype=np.float64)
        eye = target + self.distance * offset
        fwd = -offset
        right = np.cross(fwd, [0.0, 1.0, 0.0])
        norm = np.linalg.norm(right)
        right = np.array([1.0, 0.0, 0.0]) if norm < 1e-9 else right / norm
        up = np.cross(right, fwd)
        return eye, right, up, fwd


def kelvin_to_rgb(kelvin: float) -> np.ndarray:
    """Blackbody colour (Tanner Helland's fit of Mitchell Charity's table), scaled to max 1."""
    t = kelvin / 100.0
    if t <= 66:
        r = 255.0
        g = 99.4708025861 * math.log(t) - 161.1195681661
        b = 0.0 if t <= 19 else 138.5177312231 * math.log(t - 10) - 305.0447927307
    else:
        r = 329.698727446 * (t - 60) ** -0.1332047592
        g = 288.1221695283 * (t - 60) ** -0.0755148492
        b = 255.0
    rgb = np.clip(np.array([r, g, b]), 0.0, 255.0) / 255.0
    return rgb / rgb.max()


@dataclass(frozen=True)
class Light:
    """A directional light (unit vector towards the light) of a colour temperature, plus ambient."""

    direction: tuple[float, float, float] = (0.4, 0.8, 0.6)
    temperature: float = 3075.0
    intensity: float = 1.0
    ambient: float = 0.3
    white_balance: float = 3075.0  # the camera's white point: this temperature renders neutral

    def rgb(self) -> np.ndarray:
        balance = kelvin_to_rgb(self.white_balance)
        return self.intensity * kelvin_to_rgb(self.temperature) / balance

    def unit(self) -> np.ndarray:
        d = np.asarray(self.direction, dtype=np.float64)
        return d / np.linalg.norm(d)


@dataclass
class PlacedPrimitives:
    """One object's primitives already in world space, with its id for the instance mask."""

    object_id: int
    prims: list[Primitive]
    center: np.ndarray
    radius: float


@dataclass
class GBuffer:
    """Per supersample: depth along the view axis, object id, normal, albedo, pattern-free specular."""

    depth: np.ndarray
    ids: np.ndarray
    normal: np.ndarray
    albedo: np.ndarray
    spec: np.ndarray
    view: np.ndarray  # direction from surface to eye (not normalised)
    ss: int
    object_ids: tuple[int, ...] = ()
    cached_mask: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class Render:
    image: np.ndarray  # uint8 H x W x 3
    mask: np.ndarray  # int32 H x W, object id or 0 for background
    depth: np.ndarray  # float32 H x W, inf on background
    meta: dict = field(default_factory=dict)


def _rays(camera: Camera, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Eye and per-pixel directions (3, H, W) whose forward component is 1, so t is z-depth."""
    eye, right, up, fwd = camera.frame()
    tan = math.tan(math.radians(camera.fov) / 2.0)
    ys = ((1.0 - (np.arange(height) + 0.5) / height * 2.0) * tan).astype(np.float32)
    xs = (((np.arange(width) + 0.5) / width * 2.0 - 1.0) * tan * width / height).astype(np.float32)
    dirs = np.empty((3, height, width), dtype=np.float32)
    for k in range(3):
        dirs[k] = fwd[k] + xs[None, :] * right[k] + ys[:, None] * up[k]
    return eye, dirs


_CORNERS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)


def _screen_rect(center: np.ndarray, half: np.ndarray, frame: tuple[np.ndarray, ...], tan: float,
                 height: int, width: int) -> tuple[int, int, int, int] | None:
    """Conservative pixel rectangle (r0, r1, c0, c1) that an axis-aligned box projects to.

    None when the box is behind the camera or off screen; the whole screen when the
    camera is inside or next to it.
    """
    eye, right, up, fwd = frame
    rel = center + _CORNERS * half - eye
    z = rel @ fwd
    if z.max() <= 1e-6:
        return None
    if z.min() <= 1e-3:
        return 0, height, 0, width
    x = (rel @ right) / z / (tan * width / height)
    y = (rel @ up) / z / tan
    c0 = math.floor((x.min() + 1.0) / 2.0 * width) - 1
    c1 = math.ceil((x.max() + 1.0) / 2.0 * width) + 1
    r0 = math.floor((1.0 - y.max()) / 2.0 * height) - 1
    r1 = math.ceil((1.0 - y.min()) / 2.0 * height) + 1
    r0, r1, c0, c1 = max(r0, 0), min(r1, height), max(c0, 0), min(c1, width)
    if r0 >= r1 or c0 >= c1:
        return None
    return r0, r1, c0, c1


def _intersect(prim: Primitive, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest positive hit t (inf = miss) and canonical normals (3, n) for rays o + t d.

    `d` is component-major (3, n): numpy reduces over long rows much faster than over
    short trailing axes.
    """
    n = d.shape[1]
    t = np.full(n, np.inf, dtype=d.dtype)
    normal = np.zeros((3, n), dtype=d.dtype)
    dx, dy, dz = d
    ox, oy, oz = (float(v) for v in o)
    eps = 1e-4
    if prim.kind == SPHERE:
        a = dx * dx + dy * dy + dz * dz
        b = ox * dx + oy * dy + oz * dz
        c = ox * ox + oy * oy + oz * oz - 1.0
        disc = b * b - a * c
        hit = np.flatnonzero(disc > 0)
        th = (-b[hit] - np.sqrt(disc[hit])) / a[hit]
        ok = th > eps
        idx = hit[ok]
        t[idx] = th[ok]
        normal[:, idx] = o[:, None] + th[ok] * d[:, idx]
    elif prim.kind == BOX:
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / d  # +-inf for axis-parallel rays: the slab test still works
            t1 = (-1.0 - o[:, None]) * inv
            t2 = (1.0 - o[:, None]) * inv
        lo = np.minimum(t1, t2)
        far = np.maximum(t1, t2)
        hi = np.minimum(np.minimum(far[0], far[1]), far[2])
        tmin = np.maximum(np.maximum(lo[0], lo[1]), lo[2])
        hit = np.flatnonzero((hi >= tmin) & (tmin > eps))
        t[hit] = tmin[hit]
        l0, l1, l2 = lo[0, hit], lo[1, hit], lo[2, hit]
        axis = np.where((l0 >= l1) & (l0 >= l2), 0, np.where(l1 >= l2, 1, 2))
        normal[axis, hit] = -np.sign(d[axis, hit])
    elif prim.kind == FRUSTUM:
        r0, r1 = prim.param
        ka, kb = (r0 + r1) / 2.0, (r1 - r0) / 2.0  # radius(y) = ka + kb * y, y in [-1, 1]
        k = ka + kb * oy
        kd = kb * dy
        a = dx * dx + dz * dz - kd * kd
        b = ox * dx + oz * dz - k * kd
        c = ox * ox + oz * oz - k * k
        disc = b * b - a * c
        surface = np.zeros(n, dtype=np.int8)  # 1 side, 2 top cap, 3 bottom cap
        with np.errstate(divide="ignore", invalid="ignore"):
            sq = np.sqrt(np.maximum(disc, 0.0))
            for root in ((-b - sq) / a, (-b + sq) / a):
                y = oy + root * dy
                ok = (disc > 0) & (root > eps) & (np.abs(y) <= 1.0) & (ka + kb * y >= 0) & (root < t)
                t[ok] = root[ok]
                surface[ok] = 1
            for code, cap, radius in ((2, 1.0, r1), (3, -1.0, r0)):
                tc = (cap - oy) / dy
                px = ox + tc * dx
                pz = oz + tc * dz
                ok = (tc > eps) & (px * px + pz * pz <= radius * radius) & (tc < t)
                t[ok] = tc[ok]
                surface[ok] = code
        side = np.flatnonzero(surface == 1)
        p = o[:, None] + t[side] * d[:, side]
        normal[0, side] = p[0]
        normal[1, side] = -(ka + kb * p[1]) * kb
        normal[2, side] = p[2]
        normal[1, surface == 2] = 1.0
        normal[1, surface == 3] = -1.0
    elif prim.kind == TORUS:
        minor = prim.param[0]
        # sphere-trace the torus SDF, only for rays that hit its bounding sphere
        a = dx * dx + dy * dy + dz * dz
        b = ox * dx + oy * dy + oz * dz
        c = ox * ox + oy * oy + oz * oz - (1.0 + minor) ** 2
        disc = b * b - a * c
        idx = np.flatnonzero(disc > 0)
        if idx.size:
            dd = d[:, idx]
            dn = np.sqrt(a[idx])
            sq = np.sqrt(disc[idx])
            tt = np.maximum((-b[idx] - sq) / a[idx], eps)
            tfar = (-b[idx] + sq) / a[idx]
            active = np.arange(idx.size)
            done = np.zeros(idx.size, dtype=bool)
            for _ in range(40):
                ta = tt[active]
                px = ox + ta * dd[0, active]
                py = oy + ta * dd[1, active]
                pz = oz + ta * dd[2, active]
                q = np.sqrt(px * px + pz * pz) - 1.0
                sdf = np.sqrt(q * q + py * py) - minor
                conv = sdf < 1e-3
                done[active[conv]] = True
                ta = ta + 0.9 * sdf / dn[active]
                tt[active] = np.where(conv, tt[active], ta)
                keep = ~conv & (ta < tfar[active])
                active = active[keep]
                if active.size == 0:
                    break
            ok = done & (tt < tfar)
            sel = idx[ok]
            t[sel] = tt[ok]
            p = o[:, None] + tt[ok] * dd[:, ok]
            ring = np.sqrt(p[0] ** 2 + p[2] ** 2) + 1e-12
            normal[:, sel] = p - np.stack([p[0] / ring, np.zeros_like(ring), p[2] / ring])
    return t, normal


def _pattern(mat: Material, p: np.ndarray) -> np.ndarray:
    """Albedo (m, 3) from the material's pattern evaluated at canonical points p (3, m)."""
    base = np.asarray(mat.color, dtype=np.float64)
    if mat.pattern == PLAIN:
        return np.broadcast_to(base, (p.shape[1], 3))
    alt = np.asarray(mat.color2, dtype=np.float64)
    f = mat.freq
    if mat.pattern == STRIPES:
        sel = np.sin(math.pi * f * p[1]) > 0
    elif mat.pattern == CHECKS:
        sel = (np.floor(f * p).sum(axis=0).astype(np.int64) % 2) == 0
    else:  # DOTS
        q = f * p
        sel = np.sqrt(((q - np.round(q)) ** 2).sum(axis=0)) < 0.3
    return np.where(sel[:, None], alt, base)


def trace(objects: Sequence[PlacedPrimitives], camera: Camera, size: tuple[int, int],
          ss: int = 2) -> GBuffer:
    """Cast one ray per supersample; keep the nearest hit of every primitive of every object."""
    height, width = size[0] * ss, size[1] * ss
    eye, dirs = _rays(camera, height, width)
    frame = camera.frame()
    tan = math.tan(math.radians(camera.fov) / 2.0)
    npx = height * width
    depth = np.full(npx, np.inf, dtype=np.float32)
    ids = np.zeros(npx, dtype=np.int32)
    normal = np.zeros((npx, 3), dtype=np.float32)
    albedo = np.zeros((npx, 3), dtype=np.float32)
    spec = np.zeros(npx, dtype=np.float32)
    for obj in objects:
        if _screen_rect(obj.center, np.full(3, obj.radius), frame, tan, height, width) is None:
            continue
        for prim in obj.prims:
            rect = _screen_rect(prim.offset, prim.half_extent(), frame, tan, height, width)
            if rect is None:
                continue
            r0, r1, c0, c1 = rect
            d = dirs[:, r0:r1, c0:c1].reshape(3, -1)
            inv = prim.inverse
            o_c = inv @ (eye - prim.offset)
            d_c = inv.astype(np.float32) @ d
            t, n_c = _intersect(prim, o_c, d_c)
            win = np.flatnonzero(t < depth.reshape(height, width)[r0:r1, c0:c1].reshape(-1))
            if win.size == 0:
                continue
            flat = (r0 + win // (c1 - c0)) * width + c0 + win % (c1 - c0)
            depth[flat] = t[win]
            ids[flat] = obj.object_id
            n_w = inv.T.astype(np.float32) @ n_c[:, win]  # normals: inverse transpose
            n_w /= np.sqrt((n_w * n_w).sum(axis=0)) + 1e-12
            normal[flat] = n_w.T
            albedo[flat] = _pattern(prim.material, o_c[:, None] + t[win] * d_c[:, win])
            spec[flat] = prim.material.specular
    view = -dirs.reshape(3, -1).T
    return GBuffer(depth.reshape(height, width), ids.reshape(height, width),
                   normal.reshape(height, width, 3), albedo.reshape(height, width, 3),
                   spec.reshape(height, width), view.reshape(height, width, 3), ss,
                   tuple(sorted({o.object_id for o in objects})))


def background(size: tuple[int, int], color: Sequence[float], color2: Sequence[float] | None = None,
               noise: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """A plain colour, a vertical gradient to `color2`, optionally with smooth blotches."""
    h, w = size
    top = np.asarray(color, dtype=np.float64)
    bottom = top if color2 is None else np.asarray(color2, dtype=np.float64)
    ramp = np.linspace(0.0, 1.0, h)[:, None, None]
    img = top * (1 - ramp) + bottom * ramp
    img = np.broadcast_to(img, (h, w, 3)).copy()
    if noise > 0 and rng is not None:
        coarse = rng.normal(0.0, noise, size=(4, 4, 3))
        ys = np.linspace(0, 3, h)
        xs = np.linspace(0, 3, w)
        y0 = np.clip(ys.astype(int), 0, 2)
        x0 = np.clip(xs.astype(int), 0, 2)
        fy = (ys - y0)[:, None, None]
        fx = (xs - x0)[None, :, None]
        c = coarse
        img += ((c[y0][:, x0] * (1 - fx) + c[y0][:, x0 + 1] * fx) * (1 - fy)
                + (c[y0 + 1][:, x0] * (1 - fx) + c[y0 + 1][:, x0 + 1] * fx) * fy)
    return np.clip(img, 0.0, 1.0)


def shade(g: GBuffer, light: Light, bg: np.ndarray | Sequence[float] = (0.0, 0.0, 0.0)) -> Render:
    """Lambert + Blinn-Phong under `light`, over background `bg`; 2x2 (ss x ss) box-filtered."""
    ss = g.ss
    hs, ws = g.depth.shape
    _h, _w = hs // ss, ws // ss
    hit = np.flatnonzero(g.ids.reshape(-1))
    lrgb = light.rgb().astype(np.float32)
    ldir = light.unit().astype(np.float32)
    n = g.normal.reshape(-1, 3)[hit]
    view = g.view.reshape(-1, 3)[hit]
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    ndotl = np.clip(n @ ldir, 0.0, None)
    half = view + ldir
    half /= np.linalg.norm(half, axis=1, keepdims=True) + 1e-12
    spec = np.clip(np.einsum("ij,ij->i", n, half), 0.0, None) ** 32 * g.spec.reshape(-1)[hit]
    lit = np.float32(light.ambient) + np.float32(1.0 - light.ambient) * ndotl
    color = g.albedo.reshape(-1, 3)[hit] * lit[:, None] * lrgb + spec[:, None] * lrgb
    bg_arr = np.asarray(bg, dtype=np.float32)
    if bg_arr.ndim == 3:
        full = np.repeat(np.repeat(bg_arr, ss, axis=0), ss, axis=1).reshape(-1, 3)
    else:
        full = np.empty((hs * ws, 3), dtype=np.float32)
        full[:] = bg_arr
    full[hit] = color
    image = _box_filter(full.reshape(hs, ws, 3), ss)
    image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if g.cached_mask is None:
        g.cached_mask = downsample_mask(g)
    mask, depth = g.cached_mask
    return Render(image, mask, depth)


def _box_filter(a: np.ndarray, ss: int) -> np.ndarray:
    """Mean of each ss x ss block of an (H, W, C) array, summing contiguous slabs."""
    hs, ws, ch = a.shape
    h, w = hs // ss, ws // ss
    rows = a.reshape(h, ss, ws * ch)
    acc = rows[:, 0].copy()
    for i in range(1, ss):
        acc += rows[:, i]
    cols = acc.reshape(h, w, ss, ch)
    out = cols[:, :, 0].copy()
    for j in range(1, ss):
        out += cols[:, :, j]
    return out / (ss * ss)


def downsample_mask(g: GBuffer) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel: the object covering most supersamples (if at least half), its min depth."""
    ss = g.ss
    subs = [(i, j) for i in range(ss) for j in range(ss)]
    id_sub = [g.ids[i::ss, j::ss] for i, j in subs]
    d_sub = [g.depth[i::ss, j::ss] for i, j in subs]
    h, w = id_sub[0].shape
    mask = np.zeros((h, w), dtype=np.int32)
    best = np.zeros((h, w), dtype=np.int32)
    for oid in g.object_ids:
        count = sum((s == oid).astype(np.int32) for s in id_sub)
        better = count > best
        mask[better] = oid
        best[better] = count[better]
    mask[best * 2 < ss * ss] = 0
    depth = np.full((h, w), np.inf, dtype=np.float32)
    for s_ids, s_d in zip(id_sub, d_sub, strict=False):
        depth = np.where((s_ids == mask) & (s_d < depth), s_d, depth)
    depth[mask == 0] = np.inf
    return mask, depth


def composite(buffers: Sequence[GBuffer]) -> GBuffer:
    """Merge G-buffers traced separately (e.g. a target alone and its occluders) by depth.

    Tracing objects apart and compositing costs the same as tracing them together, and
    also gives each object's unoccluded silhouette.
    """
    out = buffers[0]
    depth, ids = out.depth.copy(), out.ids.copy()
    normal, albedo, spec = out.normal.copy(), out.albedo.copy(), out.spec.copy()
    for g in buffers[1:]:
        near = g.depth < depth
        depth[near] = g.depth[near]
        ids[near] = g.ids[near]
        normal[near] = g.normal[near]
        albedo[near] = g.albedo[near]
        spec[near] = g.spec[near]
    object_ids = tuple(sorted({i for g in buffers for i in g.object_ids}))
    return GBuffer(depth, ids, normal, albedo, spec, out.view, out.ss, object_ids)


def upsample(g: GBuffer, ss: int) -> GBuffer:
    """A G-buffer traced with one ray per pixel, repeated to `ss` x `ss` samples per pixel:
    for large, smooth surfaces (a video's floor and wall) that need no anti-aliasing, at a
    quarter of the cost; composite it with objects traced at `ss`."""
    if g.ss != 1:
        raise ValueError("upsample() takes a G-buffer traced with ss=1")

    def rep(a: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(a, ss, axis=0), ss, axis=1)

    return GBuffer(rep(g.depth), rep(g.ids), rep(g.normal), rep(g.albedo), rep(g.spec), rep(g.view), ss,
                   g.object_ids)
