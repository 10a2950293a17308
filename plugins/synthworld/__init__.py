"""The embedded synthetic world: a procedural 3D renderer writing real dataset layouts.

`synthworld` is a dataset plugin whose `prepare()` renders (once, cached) an ImageNet-style
image folder, ALOI's three red2 layouts, a GOT-10k train split and a PASCAL3D+ release
under one data root, so every reader of a real dataset can run on it unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from ssl_core import DataError, Dataset, ImageRecord, Params, Register, hookimpl
from ssl_core import cache_dir as default_cache_dir

from .common import SIZES
from .writer import is_complete, render_world, world_root

__all__ = ["SynthWorld", "SynthWorldParams", "synthesize"]


class SynthWorldParams(Params):
    size: Literal["tiny", "small", "full"] = "small"
    seed: int = 0
    cache_dir: Path | None = None


def _cache(cache_dir: Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "synthworld"


class SynthWorld(Dataset):
    """The rendered world; `records()` lists its ImageNet-style training images."""

    subsets = ("train", "val")

    def __init__(self, params: SynthWorldParams) -> None:
        self.params = params
        self.root = world_root(_cache(params.cache_dir), params.size, params.seed)

    def prepare(self, progress: Any | None = None) -> None:
        """Render the world unless a complete one for these params is cached."""
        render_world(self.root, self.params.size, self.params.seed, progress=progress)

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        subset = subset or self.subsets[0]
        if subset not in self.subsets:
            raise DataError(f"synthworld has no subset {subset!r}",
                            f"use one of: {', '.join(self.subsets)}")
        if not is_complete(self.root, self.params.size, self.params.seed):
            raise DataError(f"the synthetic world is not rendered yet at {self.root}",
                            f"run `sslc data synthesize --size {self.params.size} "
                            f"--seed {self.params.seed}` or call prepare() first")
        meta_path = self.root / "imagenet" / f"{subset}_meta.jsonl"
        out = []
        for line in meta_path.read_text().splitlines():
            meta = json.loads(line)
            out.append(ImageRecord(path=self.root / "imagenet" / meta["path"], label=meta["category"],
                                   group=f"{meta['category']}_{meta['instance']:04d}", meta=meta))
        return out

    def describe(self) -> dict[str, Any]:
        return {"type": "synthworld", "root": str(self.root), "size": self.params.size,
                "seed": self.params.seed}


def synthesize(size: str = "small", seed: int = 0, cache_dir: Path | None = None,
               progress: Any | None = None) -> Path:
    """Render (or reuse) the world and return its data root; backs `sslc data synthesize`."""
    if size not in SIZES:
        raise DataError(f"unknown synthworld size {size!r}", f"use one of: {', '.join(SIZES)}")
    ds = SynthWorld(SynthWorldParams(size=size, seed=seed, cache_dir=cache_dir))  # type: ignore[arg-type]
    ds.prepare(progress)
    return ds.root


@hookimpl
def register_datasets(register: Register) -> None:
    register("synthworld", SynthWorld, params=SynthWorldParams,
             summary="embedded synthetic 3D world rendered into ImageNet/ALOI/GOT-10k/PASCAL3D+ layouts")
