"""Test kit for the scene datasets: tiny MS-COCO and ADE20K trees in their released layouts,
written without the renderer (objects painted as rectangles on noise)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

#: (category name, [x, y, w, h], iscrowd)
Ann = tuple[str, tuple[float, float, float, float], int]

COCO_CATEGORIES = {1: "person", 3: "car", 62: "chair", 67: "dining table"}  # COCO's own ids


def _noise(size: tuple[int, int], seed: int) -> np.ndarray:
    w, h = size
    return np.random.default_rng(seed).integers(0, 90, (h, w, 3), dtype=np.uint8)


def write_coco(root: Path, splits: Mapping[str, Mapping[int, Sequence[Ann]]],
               size: tuple[int, int] = (40, 30), images: bool = True) -> Path:
    """`root/annotations/instances_{split}.json` and `root/{split}/{id:012d}.jpg` as the
    2017 zips extract; {split: {image id: annotations}}. Returns root."""
    ids_by_name = {v: k for k, v in COCO_CATEGORIES.items()}
    ann_id = 1000
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    w, h = size
    for split, by_image in splits.items():
        doc: dict = {"info": {"description": "test"}, "licenses": [], "images": [], "annotations": [],
                     "categories": [{"id": i, "name": n, "supercategory": "x"}
                                    for i, n in COCO_CATEGORIES.items()]}
        for image_id in sorted(by_image, reverse=True):  # the json's order is not the reader's
            name = f"{image_id:012d}.jpg"
            doc["images"].append({"id": image_id, "file_name": name, "width": w, "height": h})
            arr = _noise(size, image_id)
            for cat, (x, y, bw, bh), crowd in by_image[image_id]:
                ann_id += 1
                doc["annotations"].append({
                    "id": ann_id, "image_id": image_id, "category_id": ids_by_name[cat],
                    "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": crowd,
                    "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]})
                arr[int(y):int(y + bh), int(x):int(x + bw)] = (200, 60 + 40 * ids_by_name[cat] % 190, 40)
            if images:
                (root / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr).save(root / split / name, quality=90)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    return root


def standard_coco(root: Path) -> Path:
    """train2017: 4 images (one with a crowd box, one without annotations, one with a tie);
    val2017: 2 images."""
    return write_coco(root, {
        "train2017": {
            9: [("car", (2, 3, 10, 8), 0), ("person", (15, 2, 4, 12), 0), ("person", (22, 4, 5, 11), 0)],
            25: [("chair", (1, 1, 6, 6), 0), ("dining table", (8, 8, 20, 10), 0),
                 ("person", (0, 0, 40, 30), 1)],
            30: [],
            42: [("dining table", (5, 5, 30, 20), 0), ("chair", (3, 10, 2, 3), 0)],
        },
        "val2017": {
            139: [("car", (0, 0, 20, 10), 0)],
            285: [("chair", (10, 10, 8, 8), 0), ("chair", (25, 5, 8, 8), 0)],
        },
    })


#: ADE classes of the fixture (objectInfo150.txt's format: Idx, Ratio, Train, Val, Name)
ADE_CLASS_LINES = ("Idx\tRatio\tTrain\tVal\tName\n1\t0.1576\t11664\t1172\twall\n"
                   "2\t0.1072\t6046\t612\tbuilding, edifice\n3\t0.0878\t8265\t796\tsky\n"
                   "4 \t0.0621\t9336\t917\tfloor, flooring\n5\t0.0480\t6678\t641\ttree \n")


def write_ade(root: Path, counts: Mapping[str, int] | None = None, size: tuple[int, int] = (24, 16),
              class_list: str | None = ADE_CLASS_LINES) -> Path:
    """`root/ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_..._{n:08d}`:
    JPEGs and uint8 PNGs whose top rows are label 0, the rest stripes of labels 1..5."""
    base = root / "ADEChallengeData2016"
    counts = counts or {"training": 3, "validation": 2}
    w, h = size
    for split, n in counts.items():
        tag = "train" if split == "training" else "val"
        for d in ("images", "annotations"):
            (base / d / split).mkdir(parents=True, exist_ok=True)
        for i in range(1, n + 1):
            stem = f"ADE_{tag}_{i:08d}"
            labels = np.zeros((h, w), dtype=np.uint8)
            labels[2:] = 1 + (np.arange(w)[None, :] // 5 + i) % 5
            Image.fromarray(_noise(size, i)).save(base / "images" / split / f"{stem}.jpg", quality=90)
            Image.fromarray(labels, mode="L").save(base / "annotations" / split / f"{stem}.png")
    if class_list is not None:
        (base / "objectInfo150.txt").write_text(class_list)
    (base / "sceneCategories.txt").write_text("ADE_train_00000001 airport_terminal\n")
    return base
