"""ALOI (Amsterdam Library of Object Images) reader and its three invariance probes.

Layouts, one folder of object folders per subset (folder names overridable)::

    aloi_red2_view/{obj}/{obj}_r{angle}.png             subset "view", meta {"angle"}
    aloi_red2_ill/{obj}/{obj}_l{light}c{camera}.png     subset "ill", meta {"light", "camera"}
    aloi_red2_col/{obj}/{obj}_i{lamp}.png               subset "col", meta {"lamp": 110..250}

The official tarballs (`aloi_red2_view.tar`, `_ill`, `_col`) unpack to `png2/{obj}/...`
(`png` and `png4` for the other resolutions), so a folder extracted from one reads
`aloi_red2_view/png2/{obj}/...`: that level is descended into. `root` may be the folder
holding the three subset folders, a data root holding `aloi/` with them, one subset folder
itself, or its `png2` level; a root holding a single subset is told apart by its name and,
failing that, by the file names in its first object folder.

Real ALOI folders hold only these files, so names are parsed strictly: any other
(non-hidden) file is an error naming it, rather than being skipped silently.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from ssl_core import (
    DataError,
    Dataset,
    ImageRecord,
    InvarianceProbe,
    Params,
    ProbeItem,
    ProbeSet,
    Register,
    hookimpl,
)

SUBSET_PATTERNS = {
    "view": re.compile(r"(?P<obj>\d+)_r(?P<angle>\d+)\.png", re.IGNORECASE),
    "ill": re.compile(r"(?P<obj>\d+)_l(?P<light>\d+)c(?P<camera>\d+)\.png", re.IGNORECASE),
    "col": re.compile(r"(?P<obj>\d+)_i(?P<lamp>\d+)\.png", re.IGNORECASE),
}
EXAMPLES = {"view": "{obj}_r{angle}.png, e.g. 1_r0.png", "ill": "{obj}_l{1..8}c{1..3}.png, e.g. 1_l1c1.png",
            "col": "{obj}_i{110..250}.png, e.g. 1_i110.png"}
#: the resolution levels the official tarballs unpack to (full size, half, quarter)
LEVELS = ("png", "png2", "png4")
_OPTION = {"view": "view_dir", "ill": "ill_dir", "col": "col_dir"}


class AloiParams(Params):
    root: Path
    view_dir: str = "aloi_red2_view"
    ill_dir: str = "aloi_red2_ill"
    col_dir: str = "aloi_red2_col"
    resolution: Literal["png", "png2", "png4"] | None = None


def _object_dirs(folder: Path) -> list[Path]:
    """The numeric sub-folders of `folder` (object folders), unsorted."""
    try:
        return [d for d in folder.iterdir() if d.name.isdigit() and d.is_dir()]
    except OSError:
        return []


class Aloi(Dataset):
    """ALOI's view / illumination-direction / illumination-colour layouts; group = label = object id."""

    subsets: ClassVar[tuple[str, ...]] = ("view", "ill", "col")

    def __init__(self, params: AloiParams) -> None:
        self.params = params
        given = Path(params.root).expanduser()
        names = self._names().values()
        if not any((given / n).is_dir() for n in names) and any((given / "aloi" / n).is_dir() for n in names):
            given = given / "aloi"
        self.root = given

    def _names(self) -> dict[str, str]:
        p = self.params
        return {"view": p.view_dir, "ill": p.ill_dir, "col": p.col_dir}

    # -- where each subset's object folders are ---------------------------------------
    def _holds_subset_folders(self) -> bool:
        return any((self.root / n).is_dir() for n in self._names().values())

    def _level(self, folder: Path) -> Path:
        """`folder`, or its png/png2/png4 level when the images sit one level down."""
        levels = [lv for lv in LEVELS if (folder / lv).is_dir()]
        wanted = self.params.resolution
        if wanted is not None and levels:
            if wanted not in levels:
                raise DataError(f"ALOI folder {folder} has no {wanted}/ level (it has "
                                f"{', '.join(lv + '/' for lv in levels)})",
                                f"set `resolution` to one of {', '.join(levels)}, or leave it out")
            return folder / wanted
        if len(levels) > 1:
            raise DataError(f"ALOI folder {folder} holds several resolutions: "
                            f"{', '.join(lv + '/' for lv in levels)}",
                            f"set `resolution: {levels[0]}` (or another) to pick one")
        return folder / levels[0] if levels else folder

    def _single_subset(self) -> tuple[tuple[str, ...], Path] | None:
        """(subsets, object-folder level) when `root` is not the parent of the subset
        folders but a folder of object folders itself (one tarball's folder, its png
        level, or the png2/ that all three tarballs merge into when extracted together)."""
        level = self._level(self.root)
        objects = _object_dirs(level)
        if not objects:
            return None
        for folder in (self.root, self.root.parent):
            for subset, name in self._names().items():
                if folder.name == name:
                    return (subset,), level
        first = min(objects, key=lambda d: int(d.name))
        found = {subset for f in first.iterdir() for subset, pattern in SUBSET_PATTERNS.items()
                 if pattern.fullmatch(f.name)}
        return (tuple(s for s in self.subsets if s in found), level) if found else None

    def locate(self, subset: str) -> Path | None:
        """The folder holding `subset`'s object folders, or None when root lacks that subset."""
        names = self._names()
        if subset not in names:
            raise DataError(f"ALOI has no subset {subset!r}", f"use one of: {', '.join(self.subsets)}")
        if self._holds_subset_folders():
            folder = self.root / names[subset]
            return self._level(folder) if folder.is_dir() else None
        single = self._single_subset()
        if single is not None and subset in single[0]:
            return single[1]
        return None

    def folder(self, subset: str) -> Path:
        """The folder holding `subset`'s object folders; a DataError says why when there is none."""
        found = self.locate(subset)
        if found is not None:
            return found
        names = self._names()
        if not self.root.is_dir():
            raise DataError(f"ALOI root {self.root} does not exist",
                            f"set `root` to the folder holding {', '.join(n + '/' for n in names.values())} "
                            "(or to a data root holding aloi/)")
        single = None if self._holds_subset_folders() else self._single_subset()
        if single is not None:
            held = ", ".join(repr(s) for s in single[0])
            raise DataError(
                f"ALOI root {self.root} holds only the {held} images, not {subset!r} "
                f"(read from a {names[subset]}/ folder)",
                f"point `root` at the folder holding {names[single[0][0]]}/ and {names[subset]}/ "
                "(the folder the tarballs were extracted into)",
            )
        raise DataError(
            f"ALOI layout folder {self.root / names[subset]} does not exist",
            f"point `root` at the folder that holds it (or at a data root holding aloi/); "
            f"if your copy names it differently (full-size ALOI uses e.g. aloi_view), "
            f"set `{_OPTION[subset]}`",
        )

    # -- the Dataset interface --------------------------------------------------------
    def prepare(self, progress: Any | None = None) -> None:
        if not self.root.is_dir():
            self.folder("view")  # raises "does not exist"
        present = [s for s in self.subsets if self.locate(s) is not None]
        if not present:
            self.folder("view")
        for subset in present:
            self.records(subset)

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        if subset is None:
            single = None if self._holds_subset_folders() else self._single_subset()
            subset = single[0][0] if single is not None else self.subsets[0]
        folder = self.folder(subset)
        pattern = SUBSET_PATTERNS[subset]
        others = [p for s, p in SUBSET_PATTERNS.items() if s != subset]
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
                            f"expected {folder}/<obj>/{EXAMPLES[subset]} (or the same under a "
                            "png2/ level, as the tarballs extract)")
        out = []
        for d in sorted(objects, key=lambda p: int(p.name)):
            obj = int(d.name)
            rows = []
            for f in d.iterdir():
                if f.name.startswith("."):
                    continue
                m = pattern.fullmatch(f.name)
                if m is None:  # another subset's image of this object: the tarballs extracted together
                    other = next((o for o in (p.fullmatch(f.name) for p in others) if o), None)
                    if other is not None and int(other["obj"]) == obj:
                        continue
                if m is None or int(m["obj"]) != obj:
                    raise DataError(f"unexpected file {f} in ALOI {subset} layout",
                                    f"files in {d} must be named {EXAMPLES[subset].replace('{obj}', str(obj))}"
                                    " ; remove or move other files")
                meta = {k: int(v) for k, v in m.groupdict().items() if k != "obj"}
                rows.append((tuple(meta.values()), f, meta))
            rows.sort(key=lambda r: r[0])
            out += [ImageRecord(path=f, label=str(obj), group=str(obj), meta=meta) for _, f, meta in rows]
        return out


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
def register_datasets(register: Register) -> None:
    register("aloi", Aloi, params=AloiParams,
             summary="ALOI red2 layouts: view (72 angles), ill (8 lights x 3 cameras), col (12 lamp voltages)")


@hookimpl
def register_invariance_probes(register: Register) -> None:
    for cls in (AloiViewpoint, AloiIlluminationDirection, AloiIlluminationColor):
        register(cls.name, cls, params=AloiProbeParams,
                 summary=f"ALOI {cls.invariance}: one trajectory per object, class = object id")
