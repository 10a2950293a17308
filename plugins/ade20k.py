"""`ade20k`: ADE20K SceneParsing (ADEChallengeData2016) in its released layout.

`images/{training,validation}/ADE_{train,val}_{n:08d}.jpg`, per-pixel class annotations
`annotations/{training,validation}/ADE_..._{n:08d}.png` (uint8: 0 = unlabelled "other
objects", ignored in evaluation; 1..N = the classes) and the class list `objectInfo150.txt`
(tab-separated `Idx Ratio Train Val Name`). `root` is ADEChallengeData2016 or its parent.

A segmentation evaluator reads `record.meta["mask"]` (the PNG's path), `dataset.num_classes`,
`dataset.class_names` (`class_names[i - 1]` is label i) and `dataset.ignore_index` (0).
"""

from __future__ import annotations

import csv
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image

from ssl_core import DataError, Dataset, ImageRecord, Params, Register, hookimpl

RELEASE = "ADEChallengeData2016"
SPLITS = ("training", "validation")
#: the label that marks unlabelled pixels: never a class, ignored by the metrics
IGNORE_LABEL = 0
#: class lists looked for, in order: the release's, and semantic-segmentation-pytorch's csv
CLASS_LISTS = ("objectInfo150.txt", "objectInfo150.csv")


def find_release(root: Path) -> Path:
    """root itself, or root/ADEChallengeData2016, whichever holds images/ and annotations/."""
    for cand in (root, root / RELEASE):
        if (cand / "images").is_dir() and (cand / "annotations").is_dir():
            return cand
    if not root.exists():
        raise DataError(f"ADE20K root {root} does not exist",
                        f"point `root` at {RELEASE} (or the folder ADEChallengeData2016.zip was unzipped in)")
    raise DataError(f"no ADE20K layout under {root}: expected images/ and annotations/ in {root} "
                    f"or {root / RELEASE}",
                    f"unzip ADEChallengeData2016.zip and point `root` at the {RELEASE} folder")


def read_class_list(path: Path) -> list[str]:
    """Class names by index from `objectInfo150.txt` (tab-separated) or a csv with an `Idx`
    and a `Name` column; the first of comma-separated synonyms ("building, edifice")."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise DataError(f"cannot read the ADE20K class list {path}: {exc}", "check the file") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    delim = "\t" if lines and "\t" in lines[0] else ","
    rows = list(csv.reader(lines, delimiter=delim))
    if not rows:
        raise DataError(f"the ADE20K class list {path} is empty", "it lists `Idx ... Name` per class")
    header = [h.strip().lower() for h in rows[0]]
    if "idx" not in header or "name" not in header:
        raise DataError(f"{path}:1: expected a header with `Idx` and `Name` columns, got {lines[0]!r}",
                        "use the objectInfo150.txt shipped in ADEChallengeData2016")
    i_idx, i_name = header.index("idx"), header.index("name")
    names: dict[int, str] = {}
    for n, row in enumerate(rows[1:], 2):
        try:
            idx = int(row[i_idx].strip())
            name = row[i_name].split(";")[0].strip()
        except (IndexError, ValueError):
            raise DataError(f"{path}:{n}: expected an integer `Idx` and a `Name`, got {lines[n - 1]!r}",
                            "every line after the header describes one class") from None
        names[idx] = name.split(",")[0].strip()
    if sorted(names) != list(range(1, len(names) + 1)):
        raise DataError(f"{path}: class indices must be 1..{len(names)} once each",
                        "label 0 is the unlabelled pixels; the classes are numbered from 1")
    return [names[i] for i in range(1, len(names) + 1)]


class Ade20kParams(Params):
    root: Path
    class_list: Path | None = None


class Ade20k(Dataset):
    """Images with their class-annotation PNGs (`meta["mask"]`), sorted by file name."""

    subsets: ClassVar[tuple[str, ...]] = SPLITS
    ignore_index: int = IGNORE_LABEL

    def __init__(self, params: Ade20kParams) -> None:
        self.params = params
        self.root = Path(params.root).expanduser()
        self.stats: dict[str, int] = {}
        self._checked: set[str] = set()

    @cached_property
    def base(self) -> Path:
        return find_release(self.root)

    @cached_property
    def class_list_file(self) -> Path:
        if self.params.class_list is not None:
            path = Path(self.params.class_list).expanduser()
            path = path if path.is_absolute() else self.base / path
            if not path.is_file():
                raise DataError(f"ADE20K class list {path} does not exist",
                                "set `class_list` to objectInfo150.txt, or leave it out to use the one "
                                f"in {self.base}")
            return path
        candidates = [self.base / n for n in CLASS_LISTS]
        candidates += sorted(p for p in self.base.glob("objectInfo*.*")
                             if p.suffix in (".txt", ".csv") and p not in candidates)
        for path in candidates:
            if path.is_file():
                return path
        raise DataError(f"no class list in {self.base}: expected {CLASS_LISTS[0]}",
                        "ADEChallengeData2016.zip ships objectInfo150.txt (also in the "
                        "CSAILVision/sceneparsing repository); put it there or set `class_list`")

    @cached_property
    def class_names(self) -> list[str]:
        """Name of label i at index i - 1."""
        return read_class_list(self.class_list_file)

    @property
    def num_classes(self) -> int:
        """Number of classes (label 0, unlabelled, not counted)."""
        return len(self.class_names)

    @cached_property
    def scene_categories(self) -> dict[str, str]:
        """image stem -> scene category, from `sceneCategories.txt` when there."""
        path = self.base / "sceneCategories.txt"
        if not path.is_file():
            return {}
        out = {}
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = parts[1]
        return out

    def _pairs(self, subset: str) -> list[tuple[Path, Path]]:
        images = self.base / "images" / subset
        annotations = self.base / "annotations" / subset
        for folder in (images, annotations):
            if not folder.is_dir():
                raise DataError(f"ADE20K folder {folder} does not exist",
                                f"unzip ADEChallengeData2016.zip again: it holds images/{subset} and "
                                f"annotations/{subset}")
        out = []
        for img in sorted(images.iterdir()):
            if img.suffix.lower() not in (".jpg", ".jpeg") or not img.is_file():
                continue
            png = annotations / f"{img.stem}.png"
            if not png.is_file():
                raise DataError(f"ADE20K image {img} has no annotation: {png} does not exist",
                                "re-extract the annotations, or remove the image")
            out.append((img, png))
        if not out:
            raise DataError(f"no .jpg images in {images}", f"check `root` (it should hold images/{subset})")
        return out

    def _check_sizes(self, subset: str, pairs: list[tuple[Path, Path]]) -> None:
        """Each annotation PNG has its image's size and is single-channel (headers only)."""
        for img, png in pairs:
            try:
                with Image.open(img) as a, Image.open(png) as b:
                    isize, psize, mode = a.size, b.size, b.mode
            except OSError as exc:
                raise DataError(f"cannot read ADE20K image or annotation {img} / {png}: {exc}",
                                "the file is damaged; re-extract it") from None
            if isize != psize:
                raise DataError(f"ADE20K annotation {png} is {psize[0]}x{psize[1]} but its image {img} "
                                f"is {isize[0]}x{isize[1]}",
                                "an annotation PNG must have its image's size; re-extract the pair")
            if mode not in ("L", "P", "I", "I;16"):
                raise DataError(f"ADE20K annotation {png} has mode {mode}, not a single-channel label map",
                                "annotations hold one class id per pixel (uint8 PNG)")
        self._checked.add(subset)

    def prepare(self, progress: Any | None = None) -> None:
        """Check both splits (pairs, sizes) and read the class list."""
        _ = self.num_classes
        for subset in SPLITS:
            if (self.base / "images" / subset).is_dir():
                self._check_sizes(subset, self._pairs(subset))

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        subset = subset or self.subsets[0]
        if subset not in self.subsets:
            raise DataError(f"ade20k has no subset {subset!r}", f"use one of: {', '.join(self.subsets)}")
        pairs = self._pairs(subset)
        scenes = self.scene_categories
        out = [ImageRecord(path=img, group=img.stem,
                           meta={"mask": png, "id": img.stem,
                                 **({"scene": scenes[img.stem]} if img.stem in scenes else {})})
               for img, png in pairs]
        self.stats[f"{subset}_images"] = len(out)
        return out

    def classes(self, subset: str | None = None) -> list[str]:
        return list(self.class_names)


@hookimpl
def register_datasets(register: Register) -> None:
    register("ade20k", Ade20k, params=Ade20kParams,
             summary="ADE20K SceneParsing (ADEChallengeData2016): images and per-pixel class PNGs")
