"""ALOI (Amsterdam Library of Object Images) reader and its three invariance probes.

Layouts (folder names overridable, e.g. for the full-size `aloi_view`):

- `aloi_red2_view/{obj}/{obj}_r{angle}.png`    subset "view", meta {"angle": int}
- `aloi_red2_ill/{obj}/{obj}_l{light}c{camera}.png`  subset "ill", meta {"light", "camera"}
- `aloi_red2_col/{obj}/{obj}_i{lamp}.png`      subset "col", meta {"lamp": 110..250}

Real ALOI folders hold only these files, so names are parsed strictly: any other
(non-hidden) file is an error naming it, rather than being skipped silently.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from ssl_core import Dataset, ImageRecord, InvarianceProbe, Params, ProbeItem, ProbeSet, hookimpl
from ssl_core.errors import DataError

SUBSET_PATTERNS = {
    "view": re.compile(r"(?P<obj>\d+)_r(?P<angle>\d+)\.png", re.IGNORECASE),
    "ill": re.compile(r"(?P<obj>\d+)_l(?P<light>\d+)c(?P<camera>\d+)\.png", re.IGNORECASE),
    "col": re.compile(r"(?P<obj>\d+)_i(?P<lamp>\d+)\.png", re.IGNORECASE),
}
EXAMPLES = {"view": "{obj}_r{angle}.png, e.g. 1_r0.png", "ill": "{obj}_l{1..8}c{1..3}.png, e.g. 1_l1c1.png",
            "col": "{obj}_i{110..250}.png, e.g. 1_i110.png"}


class AloiParams(Params):
    root: Path
    view_dir: str = "aloi_red2_view"
    ill_dir: str = "aloi_red2_ill"
    col_dir: str = "aloi_red2_col"


class Aloi(Dataset):
    """ALOI's view / illumination-direction / illumination-colour layouts; group = label = object id."""

    subsets = ("view", "ill", "col")

    def __init__(self, params: AloiParams) -> None:
        self.params = params
        given = Path(params.root).expanduser()
        names = (params.view_dir, params.ill_dir, params.col_dir)
        if not any((given / n).is_dir() for n in names) and any((given / "aloi" / n).is_dir() for n in names):
            given = given / "aloi"
        self.root = given

    def folder(self, subset: str) -> Path:
        name = {"view": self.params.view_dir, "ill": self.params.ill_dir, "col": self.params.col_dir}
        if subset not in name:
            raise DataError(f"ALOI has no subset {subset!r}", f"use one of: {', '.join(self.subsets)}")
        return self.root / name[subset]

    def prepare(self, progress: Any | None = None) -> None:
        if not self.root.is_dir():
            raise DataError(f"ALOI root {self.root} does not exist",
                            "set `root` to the folder holding aloi_red2_view/, aloi_red2_ill/, "
                            "aloi_red2_col/ (or to a data root holding aloi/)")
        present = [s for s in self.subsets if self.folder(s).is_dir()]
        if not present:
            self.folder_missing("view")
        for subset in present:
            self.records(subset)

    def folder_missing(self, subset: str) -> None:
        option = {"view": "view_dir", "ill": "ill_dir", "col": "col_dir"}[subset]
        raise DataError(
            f"ALOI layout folder {self.folder(subset)} does not exist",
            f"point `root` at the folder that holds it (or at a data root holding aloi/); "
            f"if your copy names it differently (full-size ALOI uses e.g. aloi_view), set `{option}`",
        )

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        subset = subset or self.subsets[0]
        folder = self.folder(subset)
        if not folder.is_dir():
            self.folder_missing(subset)
        pattern = SUBSET_PATTERNS[subset]
        objects = []
        for d in folder.iterdir():
            if d.name.startswith("."):
                continue
            if not d.is_dir() or not d.name.isdigit():
                raise DataError(f"unexpected entry {d} in ALOI folder {folder}",
                                "ALOI holds one folder per object, named by its number (1 .. 1000); "
                                "move other files out of it")
            objects.append(d)
        if not objects:
            raise DataError(f"ALOI folder {folder} holds no object folders",
                            f"expected {folder}/<obj>/{EXAMPLES[subset]}")
        out = []
        for d in sorted(objects, key=lambda p: int(p.name)):
            obj = int(d.name)
            rows = []
            for f in d.iterdir():
                if f.name.startswith("."):
                    continue
                m = pattern.fullmatch(f.name)
                if m is None or int(m["obj"]) != obj:
                    raise DataError(f"unexpected file {f} in ALOI {subset} layout",
                                    f"files in {d} must be named {EXAMPLES[subset].replace('{obj}', str(obj))}"
                                    " ; remove or move other files")
                meta = {k: int(v) for k, v in m.groupdict().items() if k != "obj"}
                rows.append((tuple(meta.values()), f, meta))
            rows.sort(key=lambda r: r[0])
            out += [ImageRecord(path=f, label=str(obj), group=str(obj), meta=meta) for _, f, meta in rows]
        return out

    def describe(self) -> dict[str, Any]:
        return {"type": "aloi", "root": str(self.root),
                "folders": [self.params.view_dir, self.params.ill_dir, self.params.col_dir]}


class AloiProbeParams(Params):
    image_size: int = 128
    max_objects: int | None = None


class _AloiProbe(InvarianceProbe):
    """Each object folder is one trajectory whose class is the object id, as the authors did."""

    dataset_type: ClassVar[str] = "aloi"
    subset: ClassVar[str]
    name: ClassVar[str]

    def __init__(self, params: AloiProbeParams | None = None) -> None:
        self.params = params or AloiProbeParams()

    def build(self, dataset: Dataset) -> ProbeSet:
        if self.subset not in getattr(dataset, "subsets", ()):
            raise DataError(f"probe {self.name!r} needs an ALOI dataset with subset {self.subset!r}, "
                            f"got {type(dataset).__name__} with subsets {tuple(dataset.subsets)}",
                            "use a dataset of type 'aloi' for this probe")
        records = dataset.records(self.subset)
        if self.params.max_objects is not None:
            keep = sorted({int(r.group) for r in records if r.group is not None})[: self.params.max_objects]
            allowed = {str(k) for k in keep}
            records = [r for r in records if r.group in allowed]
        items = [ProbeItem(record=r, trajectory=str(r.group), label=str(r.group)) for r in records]
        size = self.params.image_size
        return ProbeSet(probe=self.name, items=items, image_size=(size, size))


class AloiViewpoint(_AloiProbe):
    name = "aloi-viewpoint"
    subset = "view"
    invariance = "viewpoint"


class AloiIlluminationDirection(_AloiProbe):
    name = "aloi-illumination-direction"
    subset = "ill"
    invariance = "illumination direction"


class AloiIlluminationColor(_AloiProbe):
    name = "aloi-illumination-color"
    subset = "col"
    invariance = "illumination colour"


@hookimpl
def register_datasets(register: Any) -> None:
    register("aloi", Aloi, params=AloiParams,
             summary="ALOI red2 layouts: view (72 angles), ill (8 lights x 3 cameras), col (12 lamp voltages)")


@hookimpl
def register_invariance_probes(register: Any) -> None:
    for cls in (AloiViewpoint, AloiIlluminationDirection, AloiIlluminationColor):
        register(cls.name, cls, params=AloiProbeParams,
                 summary=f"ALOI {cls.invariance}: one trajectory per object, class = object id")
