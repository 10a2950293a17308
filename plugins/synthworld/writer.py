"""Render a whole world into its cache folder, atomically, in the real datasets' layouts.

The world is rendered into a temporary sibling folder and moved into place with
`os.replace` once `world.json` (params + renderer version) is written, so a folder
with a matching `world.json` is always complete; anything else is re-rendered.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ssl_core import DataError, write_json

from .common import PASCAL_CLASSES, SIZES, TRAIN_BASE, VAL_BASE, SizeConfig
from .render import RENDERER_VERSION

MANIFEST = "world.json"
LAYOUT_VERSION = "3"


def world_root(cache_dir: Path, size: str, seed: int) -> Path:
    return Path(cache_dir) / f"{size}-seed{seed}"


def expected_manifest(size: str, seed: int) -> dict[str, Any]:
    return {"generator": "sslc synthworld", "renderer_version": RENDERER_VERSION,
            "layout_version": LAYOUT_VERSION, "size": size, "seed": int(seed),
            "config": SIZES[size].to_dict()}


def is_complete(root: Path, size: str, seed: int) -> bool:
    """True when root holds a finished world rendered with these params by this renderer."""
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    want = expected_manifest(size, seed)
    return all(json.dumps(manifest.get(k), sort_keys=True) == json.dumps(v, sort_keys=True)
               for k, v in want.items())


# --- jobs: plain tuples so they pickle cheaply; each writes its own files -------------------
Job = tuple[Any, ...]


def _jobs(cfg: SizeConfig, seed: int) -> list[Job]:
    cats = list(cfg.categories)
    jobs: list[Job] = []
    # the slow ones first, so that the pool's two workers finish together
    jobs += [("aloi", obj) for obj in range(1, cfg.aloi_objects + 1)]
    jobs += [("got10k", n) for n in range(1, cfg.got_sequences + 1)]
    for cls in PASCAL_CLASSES:
        jobs += [("pascal3d", "imagenet", cls, k) for k in range(cfg.pascal_per_class)]
        jobs += [("pascal3d", "pascal", cls, k) for k in range(cfg.pascal_extra_per_class)]
    for cat in cats:
        jobs += [("imagenet", "train", cat, i, TRAIN_BASE + i, cfg.train_per_instance)
                 for i in range(cfg.train_instances)]
        jobs += [("imagenet", "val", cat, cfg.train_instances + i, VAL_BASE + i, cfg.val_per_instance)
                 for i in range(cfg.val_instances)]
    return jobs


def _job_weight(job: Job, cfg: SizeConfig) -> int:
    """Rough cost in 96x96 images, for the progress bar."""
    if job[0] == "aloi":
        return max(1, round(200 * cfg.aloi_size[0] * cfg.aloi_size[1] / (144 * 192)))
    if job[0] == "got10k":
        return max(1, round(3 * cfg.got_frames * cfg.got_size[0] * cfg.got_size[1] / (144 * 192)))
    if job[0] == "pascal3d":
        return 5
    return job[5]


def _run_job(args: tuple[Path, int, str, Job]) -> tuple[Job, Any]:
    tmp, seed, size, job = args
    cfg = SIZES[size]
    cats = list(cfg.categories)
    kind = job[0]
    if kind == "imagenet":
        from .write_imagenet import write_instance
        _, split, cat, inst, world_index, count = job
        return job, write_instance(tmp / "imagenet", seed, split, cat, inst, world_index, count,
                                   cfg.image_size, cfg.supersample)
    if kind == "aloi":
        from .write_aloi import write_object
        return job, write_object(tmp / "aloi", seed, job[1], cats, cfg.supersample, cfg.aloi_size)
    if kind == "got10k":
        from .write_got10k import write_sequence
        return job, write_sequence(tmp / "GOT-10k" / "train", seed, job[1], cfg.got_frames,
                                   cfg.got_size, cats, cfg.supersample)
    from .write_pascal3d import RELEASE, write_image
    _, source, cls, k = job
    return job, write_image(tmp / RELEASE, seed, source, cls, k, cfg.pascal_size, cats,
                            cfg.supersample, cfg.pascal_cells)


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds and they inherit the imported renderer; workers
    # only use numpy and PIL. Elsewhere, spawn.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _results(args: list[tuple[Path, int, str, Job]], workers: int) -> Iterator[tuple[Job, Any]]:
    if workers <= 1:
        for a in args:
            yield _run_job(a)
        return
    with _pool_context().Pool(workers) as pool:
        yield from pool.imap_unordered(_run_job, args, chunksize=1)


def render_world(root: Path, size: str, seed: int, workers: int | None = None,
                 progress: Any | None = None,
                 on_done: Callable[[float], None] | None = None) -> Path:
    """Render the world for (size, seed) into `root` unless a complete one is there already."""
    if size not in SIZES:
        raise DataError(f"unknown synthworld size {size!r}", f"use one of: {', '.join(SIZES)}")
    root = Path(root)
    if is_complete(root, size, seed):
        return root
    cfg = SIZES[size]
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    started = time.perf_counter()
    cpu0 = _cpu_seconds()
    try:
        jobs = _jobs(cfg, seed)
        if workers is None:
            workers = min(os.cpu_count() or 1, 8)
        task = None
        if progress is not None:
            total = sum(_job_weight(j, cfg) for j in jobs)
            task = progress.add_task(f"rendering synthworld {size} (seed {seed})", total=total, info="")
        metas: dict[str, list[dict]] = {"train": [], "val": []}
        summary: dict[str, list[Any]] = {"aloi": [], "got10k": [], "pascal3d": []}
        for job, result in _results([(tmp, seed, size, j) for j in jobs], workers):
            if job[0] == "imagenet":
                metas[job[1]].extend(result)
            else:
                summary[job[0]].append(result)
            if task is not None and progress is not None:
                progress.advance(task, _job_weight(job, cfg))
        _write_indexes(tmp, cfg, metas, summary)
        manifest = expected_manifest(size, seed)
        manifest["counts"] = {"train": len(metas["train"]), "val": len(metas["val"]),
                              "aloi_objects": cfg.aloi_objects, "got10k_sequences": cfg.got_sequences,
                              "pascal3d_images": len(summary["pascal3d"])}
        manifest["seconds"] = round(time.perf_counter() - started, 2)
        manifest["cpu_seconds"] = round(_cpu_seconds() - cpu0, 2)
        manifest["workers"] = workers
        write_json(tmp / MANIFEST, manifest)
        _move_into_place(tmp, root, size, seed)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if on_done is not None:
        on_done(time.perf_counter() - started)
    return root


def _cpu_seconds() -> float:
    """CPU time of this process and its finished workers: a load-independent cost measure."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _write_indexes(tmp: Path, cfg: SizeConfig, metas: dict[str, list[dict]],
                   summary: dict[str, list[Any]]) -> None:
    from .write_pascal3d import RELEASE, write_image_sets

    for split, rows in metas.items():
        rows.sort(key=lambda m: m["path"])
        text = "".join(json.dumps(m, sort_keys=True) + "\n" for m in rows)
        (tmp / "imagenet" / f"{split}_meta.jsonl").write_text(text)
    if cfg.got_sequences:
        names = sorted(s["sequence"] for s in summary["got10k"])
        (tmp / "GOT-10k" / "train" / "list.txt").write_text("".join(n + "\n" for n in names))
    if cfg.pascal_per_class:
        write_image_sets(tmp / RELEASE, list(PASCAL_CLASSES), cfg.pascal_per_class)


def _move_into_place(tmp: Path, root: Path, size: str, seed: int) -> None:
    """Swap the finished world in; a stale or incomplete one at root is removed first."""
    if root.exists():
        if is_complete(root, size, seed):  # another process finished first: keep theirs
            return
        stale = root.with_name(f".{root.name}.stale-{os.getpid()}")
        os.replace(root, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.replace(tmp, root)
