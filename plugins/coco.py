"""`coco` and `coco-boxes`: MS-COCO in its released layout.

`annotations/instances_{split}.json` (images, annotations with `bbox` [x, y, w, h],
`category_id`, `iscrowd`; categories) and the images in `{split}/` (as train2017.zip
and val2017.zip extract; `images/{split}/` is accepted too). `root` is the folder holding
`annotations/` (or the folder holding `coco/`).

`coco`: one record per image, labelled with its most frequent category, every box in
`meta`. `coco-boxes`: the paper's "COCO boxes" (Table 2): every non-crowd box its own
record, to be cropped to the box.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ssl_core import DataError, Dataset, ImageRecord, Params, Register, check_boxes, hookimpl

#: the released splits, in the order `subsets` lists them (others found on disk follow)
KNOWN_SPLITS = ("train2017", "val2017", "train2014", "val2014")


@dataclass(frozen=True)
class CocoImage:
    """One image of an instances json and its annotations, as read."""

    id: int
    path: Path
    width: int
    height: int
    annotations: tuple[dict[str, Any], ...]


def find_coco(root: Path) -> Path:
    """The COCO folder: root itself or root/coco, whichever holds `annotations/`."""
    for cand in (root, root / "coco"):
        if (cand / "annotations").is_dir():
            return cand
    if not root.exists():
        raise DataError(f"COCO root {root} does not exist",
                        "point `root` at the folder holding annotations/ and train2017/")
    raise DataError(f"no COCO layout under {root}: expected {root / 'annotations'} "
                    f"(or {root / 'coco' / 'annotations'})",
                    "unzip annotations_trainval2017.zip, train2017.zip and val2017.zip into one "
                    "folder and point `root` there")


class CocoLayout:
    """Reads the instances json files of one COCO folder; checks the images they name exist."""

    def __init__(self, root: Path, orphan_annotations: str = "skip") -> None:
        self.root = root
        self.orphan_annotations = orphan_annotations
        #: split -> what was left out or changed when read (kept in the datasets' stats)
        self.counts: dict[str, dict[str, int]] = {}
        self._images: dict[str, list[CocoImage]] = {}
        self._names: dict[str, dict[int, str]] = {}

    @cached_property
    def base(self) -> Path:
        return find_coco(self.root)

    def splits(self) -> tuple[str, ...]:
        """Splits with an `annotations/instances_{split}.json`, released ones first."""
        found = {p.name[len("instances_"):-len(".json")]
                 for p in (self.base / "annotations").glob("instances_*.json")}
        return tuple(s for s in KNOWN_SPLITS if s in found) + tuple(sorted(found - set(KNOWN_SPLITS)))

    def annotation_file(self, split: str) -> Path:
        path = self.base / "annotations" / f"instances_{split}.json"
        if not path.is_file():
            found = ", ".join(self.splits()) or "none"
            raise DataError(f"COCO at {self.base} has no {path.name} (splits found: {found})",
                            "unzip annotations_trainval2017.zip (it holds annotations/instances_*.json) "
                            "into the COCO folder")
        return path

    def image_dir(self, split: str) -> Path:
        for cand in (self.base / split, self.base / "images" / split):
            if cand.is_dir():
                return cand
        raise DataError(f"COCO image folder {self.base / split} does not exist "
                        f"(nor {self.base / 'images' / split})",
                        f"unzip {split}.zip into {self.base}")

    def images(self, split: str) -> list[CocoImage]:
        """Every image of the split's json, sorted by id, its annotations attached; each
        named image file must exist (read and checked once per split)."""
        if split not in self._images:
            self._images[split] = self._read(split)
        return self._images[split]

    def category_names(self, split: str) -> dict[int, str]:
        """category_id -> name, from the split's json."""
        self.images(split)
        return self._names[split]

    def _read(self, split: str) -> list[CocoImage]:
        path = self.annotation_file(split)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read COCO annotations {path}: {exc}",
                            "the file is truncated or not JSON; unzip it again") from None
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list)
                                                for k in ("images", "annotations", "categories")):
            raise DataError(f"{path} is not a COCO instances file: it needs lists `images`, "
                            "`annotations` and `categories`",
                            "point `root` at the folder holding annotations/instances_<split>.json")
        try:
            names = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
            folder = self.image_dir(split)
            first: dict[int, dict[str, Any]] = {}
            for im in doc["images"]:
                iid = int(im["id"])
                if iid in first:
                    raise DataError(
                        f"{path}: images {first[iid]['file_name']} and {im['file_name']} share id "
                        f"{iid}; one image's boxes would be put on the other",
                        "the json is damaged: give every image its own id, or unzip it again")
                first[iid] = im
            anns: list[dict[str, Any]] = []
            orphans = 0
            for k, ann in enumerate(doc["annotations"]):
                cat = int(ann["category_id"])
                if cat not in names:
                    raise DataError(f"{path}: annotation {ann.get('id', k)} has category_id {cat}, "
                                    "which `categories` does not list", "the json is damaged; unzip it again")
                iid = int(ann["image_id"])
                if iid not in first:
                    if self.orphan_annotations == "error":
                        raise DataError(f"{path}: annotation {ann.get('id', k)} names image_id "
                                        f"{iid}, which `images` does not list",
                                        "unzip the json again, or set `orphan_annotations: skip` "
                                        "to leave such annotations out (counted in the stats)")
                    orphans += 1
                    continue
                x, y, w, h = (float(v) for v in ann["bbox"])
                anns.append({"id": int(ann.get("id", k)), "category": names[cat], "category_id": cat,
                             "bbox": [x, y, w, h], "area": float(ann.get("area", w * h)),
                             "iscrowd": int(ann.get("iscrowd", 0)), "image_id": iid})
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: malformed COCO entry ({type(exc).__name__}: {exc})",
                            "images need id and file_name; annotations id, image_id, category_id "
                            "and bbox [x, y, w, h]") from None
        by_image, bad, clipped = self._checked(anns, first)
        self.counts[split] = {"skipped_orphan_annotations": orphans, "skipped_bad_boxes": bad,
                              "clipped_boxes": clipped}
        try:
            images = [CocoImage(iid, folder / str(im["file_name"]), int(im.get("width", 0)),
                                int(im.get("height", 0)), tuple(by_image.get(iid, ())))
                      for iid, im in first.items()]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: malformed COCO entry ({type(exc).__name__}: {exc})",
                            "images need id and file_name; annotations id, image_id, category_id "
                            "and bbox [x, y, w, h]") from None
        images.sort(key=lambda im: im.id)
        missing = [im.path for im in images if not im.path.is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(f"{path} names image {missing[0].name}, but {missing[0]} does not exist{more}",
                            f"unzip {split}.zip into {self.base}, or point `root` at the COCO folder "
                            "that holds both")
        self._names[split] = names
        return images


    @staticmethod
    def _checked(anns: list[dict[str, Any]], images: dict[int, dict[str, Any]]
                 ) -> tuple[dict[int, list[dict[str, Any]]], int, int]:
        """Annotations by image, boxes checked against their image's size (`check_boxes`):
        not finite, inverted or wholly outside are left out and counted; partly outside are
        clipped. Zero-size boxes are kept (coco-boxes counts them as `empty`)."""
        xyxy = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                          a["bbox"][1] + a["bbox"][3]] for a in anns], dtype=np.float64).reshape(-1, 4)
        sizes = np.array([[float(images[a["image_id"]].get("width") or 0),
                           float(images[a["image_id"]].get("height") or 0)] for a in anns],
                         dtype=np.float64).reshape(-1, 2)
        empty = np.array([a["bbox"][2] == 0 or a["bbox"][3] == 0 for a in anns], dtype=bool)
        rows = xyxy.copy()
        rows[empty] = np.nan  # not checked: an empty box is counted where it is dropped
        checked = check_boxes(rows, lambda i: f"annotation {anns[i]['id']}", size=sizes,
                              on_bad="skip")
        by_image: dict[int, list[dict[str, Any]]] = {}
        for i, a in enumerate(anns):
            if checked.bad[i]:
                continue
            if not empty[i] and (checked.boxes[i] != xyxy[i]).any():
                x1, y1, x2, y2 = (float(v) for v in checked.boxes[i])
                a = {**a, "bbox": [x1, y1, x2 - x1, y2 - y1]}
            by_image.setdefault(a["image_id"], []).append(a)
        return by_image, checked.skipped, checked.clipped


class _CocoDataset(Dataset):
    """What both COCO readers share: the located tree and its splits."""

    def __init__(self, params: CocoParams | CocoBoxesParams) -> None:
        self.root = Path(params.root).expanduser()
        self.layout = CocoLayout(self.root, params.orphan_annotations)
        self.stats: dict[str, int] = {}
        try:  # the splits on disk; the released names until the tree is there
            found = self.layout.splits()
        except DataError:
            found = ()
        self.subsets = found or KNOWN_SPLITS[:2]  # type: ignore[misc]

    def _split(self, subset: str | None) -> str:
        subset = subset or self.subsets[0]
        if subset not in self.subsets:
            raise DataError(f"COCO at {self.root} has no subset {subset!r}",
                            f"use one of: {', '.join(self.subsets)}")
        return subset

    def prepare(self, progress: Any | None = None) -> None:
        """Read every split's json and check that each image it names exists."""
        splits = self.layout.splits()
        if not splits:
            raise DataError(f"no annotations/instances_<split>.json in {self.layout.base}",
                            "unzip annotations_trainval2017.zip into the COCO folder")
        for split in splits:
            self.layout.images(split)

    def classes(self, subset: str | None = None) -> list[str]:
        return sorted(set(self.layout.category_names(self._split(subset)).values()))


class CocoParams(Params):
    root: Path
    orphan_annotations: Literal["skip", "error"] = Field(
        "skip", description="annotations naming an image the json does not list: left out and "
                            "counted (skip), or refused (error)")


class Coco(_CocoDataset):
    """Whole images, sorted by id; label = the most frequent non-crowd category (the first
    annotated one on ties, None without annotations), every box in `meta`."""

    def __init__(self, params: CocoParams) -> None:
        super().__init__(params)
        self.params = params

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        split = self._split(subset)
        out = []
        for im in self.layout.images(split):
            anns = im.annotations
            counts = Counter(a["category"] for a in anns if not a["iscrowd"])
            label = max(counts, key=lambda c: counts[c]) if counts else None  # first among ties
            out.append(ImageRecord(
                path=im.path, label=label, group=im.path.stem,
                meta={"id": im.id, "width": im.width, "height": im.height,
                      "boxes": [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                 a["bbox"][1] + a["bbox"][3]] for a in anns],
                      "categories": [a["category"] for a in anns],
                      "iscrowd": [a["iscrowd"] for a in anns],
                      "annotation_ids": [a["id"] for a in anns]}))
        self.stats[f"{split}_images"] = len(out)
        self.stats[f"{split}_unannotated"] = sum(r.label is None for r in out)
        self.stats.update({f"{split}_{k}": v for k, v in self.layout.counts[split].items()})
        if not out:
            raise DataError(f"{self.layout.annotation_file(split)} lists no images",
                            "check that the file is a COCO instances json")
        return out


class CocoBoxesParams(Params):
    root: Path
    orphan_annotations: Literal["skip", "error"] = Field(
        "skip", description="annotations naming an image the json does not list: left out and "
                            "counted (skip), or refused (error)")
    min_size: float = Field(0.0, ge=0, description="drop boxes whose width or height (pixels) is smaller")
    max_per_image: int | None = Field(None, ge=1, description="keep only the largest boxes of each image")


class CocoBoxes(_CocoDataset):
    """Every non-crowd box as its own record (`box` = (x1, y1, x2, y2) in pixel edges),
    label = its category; sorted by image id, then annotation order."""

    def __init__(self, params: CocoBoxesParams) -> None:
        super().__init__(params)
        self.params = params

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        split = self._split(subset)
        out: list[ImageRecord] = []
        counts = {"crowd": 0, "empty": 0, "small": 0, "over_max_per_image": 0}
        for im in self.layout.images(split):
            kept = []
            for a in im.annotations:
                x, y, w, h = a["bbox"]
                if a["iscrowd"]:
                    counts["crowd"] += 1
                elif not (w > 0 and h > 0):
                    counts["empty"] += 1
                elif min(w, h) < self.params.min_size:
                    counts["small"] += 1
                else:
                    kept.append(a)
            if self.params.max_per_image is not None and len(kept) > self.params.max_per_image:
                largest = sorted(kept, key=lambda a: -a["bbox"][2] * a["bbox"][3])
                chosen = {id(a) for a in largest[: self.params.max_per_image]}
                counts["over_max_per_image"] += len(kept) - len(chosen)
                kept = [a for a in kept if id(a) in chosen]
            for a in kept:
                x, y, w, h = a["bbox"]
                out.append(ImageRecord(path=im.path, label=a["category"], group=f"{im.id}/{a['id']}",
                                       box=(x, y, x + w, y + h),
                                       meta={"image_id": im.id, "annotation_id": a["id"],
                                             "category_id": a["category_id"], "area": a["area"]}))
        self.stats.update({f"{split}_boxes": len(out),
                           **{f"{split}_skipped_{k}": v for k, v in counts.items()},
                           **{f"{split}_{k}": v for k, v in self.layout.counts[split].items()}})
        if not out:
            read = self.layout.counts[split]
            skipped = ", ".join(f"{v} {k}" for k, v in (
                *counts.items(), ("bad (not finite, inverted or outside)", read["skipped_bad_boxes"]),
                ("naming a missing image", read["skipped_orphan_annotations"])))
            raise DataError(f"{self.layout.annotation_file(split)} has no usable box: skipped "
                            f"{skipped}", "lower `min_size` if boxes were too small, or check "
                            "the file")
        return out


@hookimpl
def register_datasets(register: Register) -> None:
    register("coco", Coco, params=CocoParams,
             summary="MS-COCO images (annotations/instances_*.json + train2017/), label = main category")
    register("coco-boxes", CocoBoxes, params=CocoBoxesParams,
             summary="every non-crowd COCO box as its own record, cropped to the box (the paper's COCO boxes)")
