"""`voc2007` and `voc2007-cropped-boxes`: PASCAL VOC2007 in its released layout.

`VOCdevkit/VOC2007/{JPEGImages/*.jpg, Annotations/*.xml, ImageSets/Main/{cls}_{subset}.txt}`,
as `VOCtrainval_06-Nov-2007.tar` and `VOCtest_06-Nov-2007.tar` both extract. `root` may be
the VOC2007 folder, the VOCdevkit folder or the folder the tars were extracted in.

`voc2007`: one record per image, its per-class targets from the class lists
(`meta["targets"]`: 1 present, -1 absent, 0 difficult). `voc2007-cropped-boxes`: one
record per annotated object (from the XMLs), cropped to its box, labelled with its class.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ssl_core import DataError, Dataset, ImageRecord, Params, Register, check_boxes, hookimpl

LIST_SUBSETS = ("trainval", "test", "train", "val")
#: the paper's co-occurring pair (Table 2, footnote 2)
TABLE_VS_CHAIR = ("chair", "diningtable")


def find_voc2007(root: Path) -> Path:
    """The VOC2007 folder under `root` (root itself, root/VOC2007 or root/VOCdevkit/VOC2007)."""
    for cand in (root, root / "VOC2007", root / "VOCdevkit" / "VOC2007"):
        if (cand / "ImageSets" / "Main").is_dir():
            return cand
    if not root.exists():
        raise DataError(f"VOC2007 root {root} does not exist",
                        "point `root` at VOCdevkit/VOC2007, VOCdevkit, or the folder holding VOCdevkit")
    raise DataError(f"no VOC2007 layout under {root}: expected ImageSets/Main in {root}, "
                    f"{root / 'VOC2007'} or {root / 'VOCdevkit' / 'VOC2007'}",
                    "extract VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar into one folder "
                    "(both give VOCdevkit/VOC2007/) and point `root` there")


class VocLayout:
    """Reads the class lists of one VOC2007 folder; checks the files they name exist."""

    def __init__(self, root: Path) -> None:
        self.base = find_voc2007(root)
        self.main = self.base / "ImageSets" / "Main"

    @cached_property
    def class_lists(self) -> dict[str, dict[str, Path]]:
        """subset -> {class: list file}, from the `{cls}_{subset}.txt` names."""
        out: dict[str, dict[str, Path]] = {}
        for path in sorted(self.main.glob("*_*.txt")):
            cls, _, subset = path.stem.rpartition("_")
            if cls and subset in LIST_SUBSETS:
                out.setdefault(subset, {})[cls] = path
        return out

    def subsets(self) -> tuple[str, ...]:
        return tuple(s for s in LIST_SUBSETS if s in self.class_lists)

    def classes(self, subset: str) -> list[str]:
        lists = self.class_lists.get(subset)
        if not lists:
            found = ", ".join(self.subsets()) or "none"
            raise DataError(f"VOC2007 at {self.base} has no {subset!r} class lists "
                            f"(ImageSets/Main/<class>_{subset}.txt); subsets found: {found}",
                            "extract both VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar "
                            "into the same folder")
        return sorted(lists)

    def targets(self, subset: str, classes: list[str]) -> dict[str, dict[str, int]]:
        """image id -> {class: 1 | -1 | 0}, for every image of the subset's lists, sorted by id."""
        per_class: dict[str, dict[str, int]] = {}
        for cls in classes:
            path = self.class_lists[subset][cls]
            labels: dict[str, int] = {}
            for n, line in enumerate(path.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or parts[1] not in ("1", "-1", "0"):
                    raise DataError(f"{path}:{n}: expected `<image id> <1|-1|0>`, got {line.strip()!r}",
                                    "VOC class lists hold one image id and its label per line")
                labels[parts[0]] = int(parts[1])
            per_class[cls] = labels
        ids = sorted(set().union(*(set(v) for v in per_class.values())))
        for cls, labels in per_class.items():
            missing = [i for i in ids if i not in labels]
            if missing:
                raise DataError(f"{self.class_lists[subset][cls]} lacks image {missing[0]!r} "
                                f"(and {len(missing) - 1} more) listed for other classes",
                                "every class list of a subset names the same images; re-extract the tar")
        return {i: {cls: per_class[cls][i] for cls in classes} for i in ids}

    def image_ids(self, subset: str) -> list[str]:
        """`ImageSets/Main/{subset}.txt`, or the ids of the subset's class lists."""
        listing = self.main / f"{subset}.txt"
        if listing.is_file():
            return [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
        return sorted(self.targets(subset, self.classes(subset)))

    def jpeg(self, image_id: str, listed_in: Path) -> Path:
        path = self.base / "JPEGImages" / f"{image_id}.jpg"
        if not path.is_file():
            raise DataError(f"{listed_in} names image {image_id!r}, but {path} does not exist",
                            "re-extract the VOC2007 tars, or remove the id from the list")
        return path

    def xml(self, image_id: str, listed_in: Path) -> Path:
        path = self.base / "Annotations" / f"{image_id}.xml"
        if not path.is_file():
            raise DataError(f"{listed_in} names image {image_id!r}, but its annotation {path} "
                            "does not exist", "re-extract the VOC2007 tars, or remove the id from the list")
        return path


def parse_objects(path: Path) -> list[dict[str, Any]]:
    """Objects of a VOC XML: name, difficult, truncated, bndbox (1-based, inclusive) and the
    image's (width, height) from <size> ((0, 0) when the XML has none)."""
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise DataError(f"cannot parse VOC annotation {path}: {exc}",
                        "the file is truncated or not XML; re-extract it") from None
    out = []
    try:
        size = (int(tree.getroot().findtext("size/width") or 0),
                int(tree.getroot().findtext("size/height") or 0))
    except ValueError:
        size = (0, 0)  # not known: boxes are then not clipped
    for k, obj in enumerate(tree.getroot().iter("object")):
        name = (obj.findtext("name") or "").strip()
        bnd = obj.find("bndbox")
        try:
            if bnd is None:
                raise ValueError("no bndbox")
            box = tuple(float(bnd.findtext(t) or "nan") for t in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError as exc:
            raise DataError(f"{path}: object {k} ({name or 'unnamed'}) has a bad bndbox ({exc})",
                            "a VOC object holds <bndbox> with numeric xmin, ymin, xmax, ymax") from None
        out.append({"name": name, "box": box, "image_size": size,
                    "difficult": (obj.findtext("difficult") or "0").strip() == "1",
                    "truncated": (obj.findtext("truncated") or "0").strip() == "1"})
    return out


def _object_namer(xml: Path) -> Callable[[int], str]:
    return lambda i: f"{xml}, object {i}"


class Voc2007Params(Params):
    root: Path
    table_vs_chair: bool = False


class _VocDataset(Dataset):
    """What both VOC readers share: the located tree, its subsets, counts of what was read."""

    subsets: ClassVar[tuple[str, ...]] = ("trainval", "test")

    def __init__(self, params: Voc2007Params | Voc2007BoxesParams) -> None:
        self.root = Path(params.root).expanduser()
        self.stats: dict[str, int] = {}

    @cached_property
    def layout(self) -> VocLayout:
        return VocLayout(self.root)

    def prepare(self, progress: Any | None = None) -> None:
        for subset in self.layout.subsets():
            if subset in self.subsets:
                self.records(subset)


class Voc2007(_VocDataset):
    """Whole images with 1/-1/0 targets per class (`meta["targets"]`), sorted by image id."""

    def __init__(self, params: Voc2007Params) -> None:
        super().__init__(params)
        self.params = params

    def classes(self, subset: str | None = None) -> list[str]:
        subset = subset or self.subsets[0]
        found = self.layout.classes(subset)
        if not self.params.table_vs_chair:
            return found
        absent = [c for c in TABLE_VS_CHAIR if c not in found]
        if absent:
            raise DataError(f"table_vs_chair needs the class lists of {', '.join(absent)} "
                            f"in {self.layout.main}", "this option is for the VOC2007 classes")
        return list(TABLE_VS_CHAIR)

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        subset = subset or self.subsets[0]
        if subset not in LIST_SUBSETS:
            raise DataError(f"voc2007 has no subset {subset!r}", f"use one of: {', '.join(LIST_SUBSETS)}")
        classes = self.classes(subset)
        targets = self.layout.targets(subset, classes)
        listed_in = self.layout.class_lists[subset][classes[0]]
        out = []
        skipped = 0
        for image_id, t in targets.items():
            if self.params.table_vs_chair and subset == "test" \
                    and sorted(c for c in TABLE_VS_CHAIR if t[c] != -1) not in (["chair"], ["diningtable"]):
                skipped += 1  # neither, or both (a difficult one counts as present)
                continue
            self.layout.xml(image_id, listed_in)
            out.append(ImageRecord(path=self.layout.jpeg(image_id, listed_in), group=image_id,
                                   meta={"id": image_id, "targets": t}))
        self.stats[f"{subset}_images"] = len(out)
        self.stats[f"{subset}_skipped_table_and_chair"] = skipped
        if not out:
            raise DataError(f"voc2007 subset {subset!r} at {self.layout.base} has no images",
                            "check the class lists in ImageSets/Main")
        return out


class Voc2007BoxesParams(Params):
    root: Path
    include_difficult: bool = False


class Voc2007CroppedBoxes(_VocDataset):
    """One record per annotated object, cropped to its box; label = its class."""

    def __init__(self, params: Voc2007BoxesParams) -> None:
        super().__init__(params)
        self.params = params

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        subset = subset or self.subsets[0]
        if subset not in LIST_SUBSETS:
            raise DataError(f"voc2007-cropped-boxes has no subset {subset!r}",
                            f"use one of: {', '.join(LIST_SUBSETS)}")
        classes = set(self.layout.classes(subset))
        listing = self.layout.main / f"{subset}.txt"
        listed_in = listing if listing.is_file() else self.layout.class_lists[subset][min(classes)]
        out: list[ImageRecord] = []
        counts = {"difficult": 0, "other_class": 0, "bad_box": 0}
        clipped = 0
        for image_id in self.layout.image_ids(subset):
            jpeg = self.layout.jpeg(image_id, listed_in)
            xml = self.layout.xml(image_id, listed_in)
            objects = parse_objects(xml)
            # VOC boxes are 1-based and inclusive: pixels x1..x2 are (x1 - 1, x2) 0-based;
            # checked as read: not finite, inverted or wholly outside the image are skipped
            # (counted, never scored as black crops), partly outside clipped to the image
            checked = check_boxes(
                np.array([[o["box"][0] - 1, o["box"][1] - 1, o["box"][2], o["box"][3]]
                          for o in objects], dtype=np.float64).reshape(-1, 4),
                _object_namer(xml),
                size=np.array([o["image_size"] for o in objects], dtype=np.float64).reshape(-1, 2),
                on_bad="skip")
            for k, obj in enumerate(objects):
                if obj["name"] not in classes:
                    counts["other_class"] += 1
                elif obj["difficult"] and not self.params.include_difficult:
                    counts["difficult"] += 1
                elif checked.bad[k]:
                    counts["bad_box"] += 1
                else:
                    x1, y1, x2, y2 = (float(v) for v in checked.boxes[k])
                    box = (x1, y1, x2, y2)
                    clipped += box != (obj["box"][0] - 1, obj["box"][1] - 1, *obj["box"][2:])
                    out.append(ImageRecord(path=jpeg, label=obj["name"], group=f"{image_id}/{k}",
                                           box=box,
                                           meta={"id": image_id, "object": k,
                                                 "difficult": obj["difficult"],
                                                 "truncated": obj["truncated"]}))
        self.stats.update({f"{subset}_objects": len(out), f"{subset}_clipped_box": clipped,
                           **{f"{subset}_skipped_{k}": v for k, v in counts.items()}})
        if not out:
            skipped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items())
            raise DataError(f"voc2007-cropped-boxes subset {subset!r} at {self.layout.base} has no "
                            f"usable object (skipped: {skipped})",
                            "check Annotations/*.xml and the class lists")
        return out


@hookimpl
def register_datasets(register: Register) -> None:
    register("voc2007", Voc2007, params=Voc2007Params,
             summary="PASCAL VOC2007 images with 1/-1/0 targets per class (VOCdevkit layout)")
    register("voc2007-cropped-boxes", Voc2007CroppedBoxes, params=Voc2007BoxesParams,
             summary="every annotated VOC2007 object cropped to its own image, one label each")
