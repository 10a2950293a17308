"""Render a world into its cache folder part by part, each part atomically, in the real
datasets' layouts.

A world root (`<cache>/<size>-seed<seed>/`) holds independent *parts* (imagenet, aloi,
got10k, pascal3d, videos): a recipe's world renders only those it needs, and a world with
some parts gains others later without re-rendering the ones already there. Each part is
rendered into a temporary folder inside the root, its folders are moved into place, and
its manifest `<root>/<part>.json` (generator, renderer/layout/part versions, the part's
config) is written last, atomically: a part is complete exactly when its manifest matches;
anything else (no manifest, another version, a crash half way) is rendered again.

Every job seeds its rng from (world seed, part, item), so a part's bytes do not depend on
which parts are rendered with it, on the number of workers or on scheduling.

Adding a part is one entry in `PARTS`: the folders it owns, a function listing its jobs,
one running a job, a job's weight, its config and (optionally) a function writing what
needs every job (indexes, lists); and its name in `PartName`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ssl_core import DataError, write_json

from .common import PASCAL_CLASSES, SIZES, TRAIN_BASE, VAL_BASE
from .render import RENDERER_VERSION

LAYOUT_VERSION = "4"
#: the manifest of layout versions <= 3: one for the whole world (removed when a part renders)
LEGACY_MANIFEST = "world.json"

#: the names `SynthWorldParams.parts` accepts: the keys of PARTS (a test keeps them equal)
PartName = Literal["imagenet", "aloi", "got10k", "pascal3d", "videos", "scenes"]

# --- jobs: plain tuples so they pickle cheaply; each writes its own files -------------------
Job = tuple[Any, ...]


@dataclass(frozen=True)
class Part:
    """One independently rendered piece of the world (functions take the size preset's name)."""

    folders: tuple[str, ...]  # top-level folders of the root that this part writes and owns
    jobs: Callable[[str], list[Job]]  # size -> jobs
    run: Callable[[Path, int, Job, str], Any]  # (part folder, seed, job, size) -> result (picklable)
    weight: Callable[[Job, str], int]  # rough cost in 96x96 images, for the progress bar
    config: Callable[[str], dict[str, Any]]  # size -> what the part's files depend on
    finish: Callable[[Path, int, str, list[Any]], Any] | None = None  # indexes that need every job
    version: str = "1"  # bump when this part's generator changes: only this part re-renders
    #: what one job renders, when a world may render only the first N jobs of this part
    #: (`limits`); each job's bytes do not depend on the others, so those N are the same
    #: as in the whole part
    limit_unit: str | None = None


def _fields(*names: str) -> Callable[[str], dict[str, Any]]:
    """A part's config: these SizeConfig fields (plus the shared ones) of the size preset."""
    def config(size: str) -> dict[str, Any]:
        full = SIZES[size].to_dict()
        return {k: full[k] for k in (*names, "supersample", "categories")}
    return config


# imagenet -------------------------------------------------------------------------------------
def _imagenet_jobs(size: str) -> list[Job]:
    cfg = SIZES[size]
    jobs: list[Job] = []
    for cat in cfg.categories:
        jobs += [("imagenet", "train", cat, i, TRAIN_BASE + i, cfg.train_per_instance)
                 for i in range(cfg.train_instances)]
        jobs += [("imagenet", "val", cat, cfg.train_instances + i, VAL_BASE + i, cfg.val_per_instance)
                 for i in range(cfg.val_instances)]
    return jobs


def _imagenet_run(root: Path, seed: int, job: Job, size: str) -> list[dict]:
    from .write_imagenet import write_instance

    cfg = SIZES[size]
    _, split, cat, inst, world_index, count = job
    return write_instance(root / "imagenet", seed, split, cat, inst, world_index, count,
                          cfg.image_size, cfg.supersample)


def _imagenet_finish(root: Path, seed: int, size: str, results: list[list[dict]]) -> dict[str, int]:
    counts = {}
    for split in ("train", "val"):
        rows = sorted((m for metas in results for m in metas if m["path"].startswith(f"{split}/")),
                      key=lambda m: m["path"])
        (root / "imagenet").mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(m, sort_keys=True) + "\n" for m in rows)
        (root / "imagenet" / f"{split}_meta.jsonl").write_text(text)
        counts[split] = len(rows)
    return counts


# aloi -----------------------------------------------------------------------------------------
def _aloi_run(root: Path, seed: int, job: Job, size: str) -> dict:
    from .write_aloi import write_object

    cfg = SIZES[size]
    return write_object(root / "aloi", seed, job[1], list(cfg.categories), cfg.supersample, cfg.aloi_size)


def _aloi_weight(job: Job, size: str) -> int:
    h, w = SIZES[size].aloi_size
    return max(1, round(200 * h * w / (144 * 192)))


# got10k ---------------------------------------------------------------------------------------
def _got_run(root: Path, seed: int, job: Job, size: str) -> dict:
    from .write_got10k import write_sequence

    cfg = SIZES[size]
    return write_sequence(root / "GOT-10k" / "train", seed, job[1], cfg.got_frames, cfg.got_size,
                          list(cfg.categories), cfg.supersample)


def _got_weight(job: Job, size: str) -> int:
    cfg = SIZES[size]
    return max(1, round(3 * cfg.got_frames * cfg.got_size[0] * cfg.got_size[1] / (144 * 192)))


def _got_finish(root: Path, seed: int, size: str, results: list[dict]) -> dict[str, int]:
    if results:
        names = sorted(s["sequence"] for s in results)
        (root / "GOT-10k" / "train" / "list.txt").write_text("".join(n + "\n" for n in names))
    return {"sequences": len(results)}


# pascal3d -------------------------------------------------------------------------------------
def _pascal_jobs(size: str) -> list[Job]:
    cfg = SIZES[size]
    jobs: list[Job] = []
    for cls in PASCAL_CLASSES:
        jobs += [("pascal3d", "imagenet", cls, k) for k in range(cfg.pascal_per_class)]
        jobs += [("pascal3d", "pascal", cls, k) for k in range(cfg.pascal_extra_per_class)]
    return jobs


def _pascal_run(root: Path, seed: int, job: Job, size: str) -> dict:
    from .write_pascal3d import RELEASE, write_image

    cfg = SIZES[size]
    _, source, cls, k = job
    return write_image(root / RELEASE, seed, source, cls, k, cfg.pascal_size, list(cfg.categories),
                       cfg.supersample, cfg.pascal_cells)


def _pascal_finish(root: Path, seed: int, size: str, results: list[dict]) -> dict[str, int]:
    from .write_pascal3d import RELEASE, write_image_sets

    cfg = SIZES[size]
    if cfg.pascal_per_class:
        write_image_sets(root / RELEASE, list(PASCAL_CLASSES), cfg.pascal_per_class)
    return {"images": len(results)}


# videos ---------------------------------------------------------------------------------------
def _video_jobs(size: str) -> list[Job]:
    from .write_videos import video_jobs

    return video_jobs(SIZES[size])


def _video_run(root: Path, seed: int, job: Job, size: str) -> dict:
    from .write_videos import write_video

    cfg = SIZES[size]
    return write_video(root, seed, job[1], cfg.video_frames, cfg.video_size, cfg.video_fps,
                       list(cfg.categories), cfg.supersample)


def _video_weight(job: Job, size: str) -> int:
    cfg = SIZES[size]
    h, w = cfg.video_size
    return max(1, round(4 * cfg.video_frames * h * w / (96 * 96)))


def _video_finish(root: Path, seed: int, size: str, results: list[dict]) -> dict[str, int]:
    from .write_videos import write_index

    return write_index(root, results)


# scenes (COCO, VOC2007 and ADE20K layouts of the same multi-object scenes) ----------------------
def _scene_jobs(size: str) -> list[Job]:
    from .write_scenes import scene_jobs

    return scene_jobs(size)


def _scene_run(root: Path, seed: int, job: Job, size: str) -> dict:
    from .write_scenes import write_scene

    return write_scene(root, seed, job, size)


def _scene_weight(job: Job, size: str) -> int:
    from .write_scenes import scene_job_weight

    return scene_job_weight(job, size)


def _scene_config(size: str) -> dict[str, Any]:
    from .write_scenes import SCENE_PRESETS

    return SCENE_PRESETS[size].to_dict()


def _scene_finish(root: Path, seed: int, size: str, results: list[dict]) -> None:
    from .write_scenes import finalize_scenes

    finalize_scenes(root, seed, size, results)


#: the world's parts, in the order they are listed (and the progress bar names them)
PARTS: dict[str, Part] = {
    "imagenet": Part(("imagenet",), _imagenet_jobs, _imagenet_run, lambda job, size: job[5],
                     _fields("train_instances", "train_per_instance", "val_instances",
                             "val_per_instance", "image_size"), _imagenet_finish),
    "aloi": Part(("aloi",), lambda size: [("aloi", o) for o in range(1, SIZES[size].aloi_objects + 1)],
                 _aloi_run, _aloi_weight, _fields("aloi_objects", "aloi_size"), limit_unit="objects"),
    "got10k": Part(("GOT-10k",), lambda size: [("got10k", n) for n in range(1, SIZES[size].got_sequences + 1)],
                   _got_run, _got_weight, _fields("got_sequences", "got_frames", "got_size"), _got_finish),
    "pascal3d": Part(("PASCAL3D+_release1.1",), _pascal_jobs, _pascal_run, lambda job, size: 5,
                     _fields("pascal_per_class", "pascal_extra_per_class", "pascal_size", "pascal_cells"),
                     _pascal_finish),
    "videos": Part(("videos", "TrackingNet"), _video_jobs, _video_run, _video_weight,
                   _fields("videos", "video_frames", "video_size", "video_fps"), _video_finish),
    "scenes": Part(("coco", "VOCdevkit", "ADEChallengeData2016"), _scene_jobs, _scene_run,
                   _scene_weight, _scene_config, _scene_finish),
}


def world_root(cache_dir: Path, size: str, seed: int) -> Path:
    return Path(cache_dir) / f"{size}-seed{seed}"


def resolve_parts(parts: Iterable[str] | None) -> list[str]:
    """The parts asked for, in table order (None: every part)."""
    if parts is None:
        return list(PARTS)
    wanted = set(parts)
    unknown = sorted(wanted - set(PARTS))
    if unknown:
        raise DataError(f"unknown synthworld part(s) {', '.join(map(repr, unknown))}",
                        f"use some of: {', '.join(PARTS)} (or leave parts unset for all)")
    return [p for p in PARTS if p in wanted]


def manifest_path(root: Path, part: str) -> Path:
    return Path(root) / f"{part}.json"


def expected_manifest(part: str, size: str, seed: int, limit: int | None = None) -> dict[str, Any]:
    spec = PARTS[part]
    manifest = {"generator": "sslc synthworld", "renderer_version": RENDERER_VERSION,
                "layout_version": LAYOUT_VERSION, "part": part, "part_version": spec.version,
                "size": size, "seed": int(seed), "config": spec.config(size)}
    if limit is not None:
        manifest["limit"] = int(limit)
    return manifest


def check_limits(limits: Mapping[str, int] | None, size: str) -> dict[str, int]:
    """`limits` (part -> first N jobs) checked against the parts and the size preset."""
    out: dict[str, int] = {}
    for part, n in (limits or {}).items():
        unit = PARTS[part].limit_unit if part in PARTS else None
        if unit is None:
            limited = [p for p, spec in PARTS.items() if spec.limit_unit]
            raise DataError(f"synthworld part {part!r} cannot be rendered in part",
                            f"limit only {', '.join(limited)}")
        total = len(PARTS[part].jobs(size))
        if not 1 <= int(n) <= total:
            raise DataError(f"synthworld {size} has {total} {part} {unit}; asked for the first {n}",
                            f"ask for 1 to {total} {unit}, or leave the limit out for all")
        if int(n) < total:
            out[part] = int(n)
    return out


def part_complete(root: Path, part: str, size: str, seed: int, limit: int | None = None) -> bool:
    """True when root holds this part finished, for these params, by this generator: all
    of it, or (`limit`) at least its first `limit` jobs."""
    try:
        manifest = json.loads(manifest_path(root, part).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    want = expected_manifest(part, size, seed)
    same = all(json.dumps(manifest.get(k), sort_keys=True) == json.dumps(v, sort_keys=True)
               for k, v in want.items())
    have = manifest.get("limit")  # None: the whole part
    return same and (have is None or (limit is not None and isinstance(have, int) and have >= limit))


def is_complete(root: Path, size: str, seed: int, parts: Iterable[str] | None = None,
                limits: Mapping[str, int] | None = None) -> bool:
    """True when every part asked for (None: all) is complete at root."""
    return not missing_parts(root, size, seed, parts, limits)


def missing_parts(root: Path, size: str, seed: int, parts: Iterable[str] | None = None,
                  limits: Mapping[str, int] | None = None) -> list[str]:
    limits = limits or {}
    return [p for p in resolve_parts(parts) if not part_complete(root, p, size, seed, limits.get(p))]


def _run_job(args: tuple[str, Path, int, str, Job]) -> tuple[str, Job, Any, float]:
    part, folder, seed, size, job = args
    cpu0 = time.process_time()
    result = PARTS[part].run(folder, seed, job, size)
    return part, job, result, time.process_time() - cpu0


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds and they inherit the imported renderer; workers
    # only use numpy, PIL and OpenCV. Elsewhere, spawn.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _results(args: list[tuple[str, Path, int, str, Job]],
             workers: int) -> Iterator[tuple[str, Job, Any, float]]:
    if workers <= 1:
        for a in args:
            yield _run_job(a)
        return
    with _pool_context().Pool(workers) as pool:
        yield from pool.imap_unordered(_run_job, args, chunksize=1)


def render_world(root: Path, size: str, seed: int, workers: int | None = None,
                 progress: Any | None = None, on_done: Callable[[float], None] | None = None,
                 parts: Iterable[str] | None = None, limits: Mapping[str, int] | None = None) -> Path:
    """Render the parts asked for (None: all) of the world (size, seed) into `root`; parts
    already complete there are kept as they are. `limits` renders only the first N jobs
    of a part (`Part.limit_unit`), the same bytes as in the whole part. The caller holds
    the world's lock (`ssl_core.run.locking.world_lock`) when other processes may render the
    same world."""
    if size not in SIZES:
        raise DataError(f"unknown synthworld size {size!r}", f"use one of: {', '.join(SIZES)}")
    root = Path(root)
    limits = check_limits(limits, size)
    missing = missing_parts(root, size, seed, parts, limits)
    if not missing:
        return root
    root.mkdir(parents=True, exist_ok=True)
    _clear_leftovers(root)
    started = time.perf_counter()
    folders = {p: Path(tempfile.mkdtemp(prefix=f".{os.getpid()}.{p}.", suffix=".tmp", dir=root))
               for p in missing}
    try:
        jobs = [(p, job) for p in missing for job in PARTS[p].jobs(size)[:limits.get(p)]]
        # the slow ones first, so that the pool's workers finish together
        jobs.sort(key=lambda pj: -PARTS[pj[0]].weight(pj[1], size))
        left = Counter(p for p, _ in jobs)
        results: dict[str, list[Any]] = {p: [] for p in missing}
        cpu = dict.fromkeys(missing, 0.0)
        if workers is None:
            workers = min(os.cpu_count() or 1, 8)
        task = None
        if progress is not None:
            total = sum(PARTS[p].weight(job, size) for p, job in jobs)
            task = progress.add_task(f"rendering synthworld {size} (seed {seed}): {', '.join(missing)}",
                                     total=total, info="")
        for p in missing:
            if left[p] == 0:  # a part with nothing to render in this preset
                _finish_part(root, folders[p], p, size, seed, [], 0.0, started, workers)
        args = [(p, folders[p], seed, size, job) for p, job in jobs]
        for part, job, result, seconds in _results(args, workers):
            results[part].append(result)
            cpu[part] += seconds
            left[part] -= 1
            if task is not None and progress is not None:
                progress.advance(task, PARTS[part].weight(job, size))
            if left[part] == 0:  # done: move it into place now, so an interruption keeps it
                _finish_part(root, folders[part], part, size, seed, results[part], cpu[part],
                             started, workers, limits.get(part))
    finally:
        for folder in folders.values():
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
    if on_done is not None:
        on_done(time.perf_counter() - started)
    return root


def _finish_part(root: Path, folder: Path, part: str, size: str, seed: int, results: list[Any],
                 cpu_seconds: float, started: float, workers: int, limit: int | None = None) -> None:
    """Write the part's indexes, swap its folders in (replacing stale ones), then its manifest."""
    spec = PARTS[part]
    counts = spec.finish(folder, seed, size, results) if spec.finish is not None else None
    if part_complete(root, part, size, seed, limit):  # another process finished it first: keep theirs
        return
    manifest_path(root, part).unlink(missing_ok=True)
    for name in spec.folders:
        target = root / name
        if target.exists() or target.is_symlink():
            stale = root / f".{os.getpid()}.{name}.stale"
            os.replace(target, stale)
            _remove(stale)
        if (folder / name).exists():
            os.replace(folder / name, target)
    legacy = root / LEGACY_MANIFEST
    legacy.unlink(missing_ok=True)  # a layout-3 world.json would claim parts it never checked
    manifest = expected_manifest(part, size, seed, limit)
    manifest.update(counts={"jobs": len(results), **(counts or {})}, cpu_seconds=round(cpu_seconds, 2),
                    seconds=round(time.perf_counter() - started, 2), workers=workers)
    write_json(manifest_path(root, part), manifest)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _clear_leftovers(root: Path) -> None:
    """Remove temporary and stale folders (`.{pid}.{name}...{tmp,stale}`) that a killed
    renderer left in root: those whose process is gone."""
    for entry in root.iterdir():
        name = entry.name
        if not (name.startswith(".") and name.endswith((".tmp", ".stale"))):
            continue
        bits = name.split(".")
        pid = int(bits[1]) if bits[1].isdigit() else None
        if pid is None or pid == os.getpid() or _pid_alive(pid):
            continue
        _remove(entry)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
