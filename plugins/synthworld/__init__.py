"""The embedded synthetic world: a procedural 3D renderer writing real dataset layouts.

`synthworld` is a dataset plugin whose `prepare()` renders (once, cached) an ImageNet-style
image folder, ALOI's three red2 layouts, a GOT-10k train split, a PASCAL3D+ release and
videos (mp4 + tracks, and TrackingNet's layout) under one data root, so every reader of a
real dataset can run on it unchanged. `parts` picks which of these a recipe needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ssl_core import DataError, Dataset, ImageRecord, Params, Register, hookimpl
from ssl_core import cache_dir as default_cache_dir

from .common import SIZES
from .writer import PARTS, PartName, part_complete, render_world, resolve_parts, world_root

__all__ = ["SynthWorld", "SynthWorldParams", "synthesize"]


class SynthWorldParams(Params):
    size: Literal["tiny", "small", "full"] = "small"
    seed: int = 0
    parts: list[PartName] | None = Field(
        default=None, description="parts to render, comma-separated on the command line: "
        f"{', '.join(PARTS)} (default: all)")
    aloi_objects: int | None = Field(
        default=None, ge=1, description="render only ALOI objects 1..N (default: all of the size "
        "preset's); they are the same images as in the whole part, so probes with max_objects <= N "
        "measure the same")
    cache_dir: Path | None = None

    @field_validator("parts", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        """`--parts aloi,videos` on the command line arrives as one string."""
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("parts")
    @classmethod
    def _some(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError(f"name at least one part ({', '.join(PARTS)}), or leave parts unset for all")
        return None if value is None else resolve_parts(value)


def _cache(cache_dir: Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir() / "synthworld"


class SynthWorld(Dataset):
    """The rendered world; `records()` lists its ImageNet-style training images."""

    subsets = ("train", "val")
    # objects 1..N are the same bytes whatever N (a probe reading them measures the same)
    content_neutral_params = ("aloi_objects",)

    def __init__(self, params: SynthWorldParams) -> None:
        self.params = params
        self.root = world_root(_cache(params.cache_dir), params.size, params.seed)

    def prepare(self, progress: Any | None = None) -> None:
        """Render the parts asked for that are not cached yet (the others are kept)."""
        render_world(self.root, self.params.size, self.params.seed, progress=progress,
                     parts=self.params.parts, limits=self.limits)

    @property
    def limits(self) -> dict[str, int]:
        """Parts rendered only in part: part -> first N jobs."""
        return {} if self.params.aloi_objects is None else {"aloi": self.params.aloi_objects}

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        subset = subset or self.subsets[0]
        if subset not in self.subsets:
            raise DataError(f"synthworld has no subset {subset!r}",
                            f"use one of: {', '.join(self.subsets)}")
        if not part_complete(self.root, "imagenet", self.params.size, self.params.seed):
            p = self.params
            why = ("its parts leave out 'imagenet'" if p.parts is not None and "imagenet" not in p.parts
                   else "it is not rendered yet")
            raise DataError(f"synthworld records() reads the world's 'imagenet' part at {self.root}, "
                            f"but {why}",
                            f"add imagenet to the world's parts (or leave parts unset), then call prepare() "
                            f"or run `sslc data synthesize --size {p.size} --seed {p.seed} --parts imagenet`")
        meta_path = self.root / "imagenet" / f"{subset}_meta.jsonl"
        out = []
        for line in meta_path.read_text().splitlines():
            meta = json.loads(line)
            out.append(ImageRecord(path=self.root / "imagenet" / meta["path"], label=meta["category"],
                                   group=f"{meta['category']}_{meta['instance']:04d}", meta=meta))
        return out

    def describe(self) -> dict[str, Any]:
        return {"type": "synthworld", "root": str(self.root), "size": self.params.size,
                "seed": self.params.seed, "parts": self.params.parts or list(PARTS),
                **({"limits": self.limits} if self.limits else {})}


def synthesize(size: str = "small", seed: int = 0, cache_dir: Path | None = None,
               progress: Any | None = None, parts: list[str] | None = None) -> Path:
    """Render (or reuse) the world's parts (None: all) and return its data root."""
    if size not in SIZES:
        raise DataError(f"unknown synthworld size {size!r}", f"use one of: {', '.join(SIZES)}")
    ds = SynthWorld(SynthWorldParams(size=size, seed=seed, cache_dir=cache_dir,  # type: ignore[arg-type]
                                     parts=parts))
    ds.prepare(progress)
    return ds.root


@hookimpl
def register_datasets(register: Register) -> None:
    register("synthworld", SynthWorld, params=SynthWorldParams,
             summary="embedded synthetic 3D world rendered into ImageNet/ALOI/GOT-10k/PASCAL3D+/video layouts")
