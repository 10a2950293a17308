"""Test kit for the evaluation plugins: a VOC2007 tree in the released layout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

#: (class, (xmin, ymin, xmax, ymax) 1-based inclusive, difficult)
Obj = tuple[str, tuple[int, int, int, int], bool]

COLOURS = {"aeroplane": (230, 30, 30), "chair": (30, 200, 40), "diningtable": (40, 60, 220),
           "dog": (220, 200, 30), "person": (200, 40, 200), "cat": (30, 210, 210)}


def _xml(image_id: str, size: tuple[int, int], objects: Sequence[Obj]) -> str:
    w, h = size
    parts = [f"<annotation>\n\t<folder>VOC2007</folder>\n\t<filename>{image_id}.jpg</filename>\n"
             "\t<source>\n\t\t<database>The VOC2007 Database</database>\n\t</source>\n"
             f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n"
             "\t</size>\n\t<segmented>0</segmented>\n"]
    for cls, (x1, y1, x2, y2), difficult in objects:
        parts.append(f"\t<object>\n\t\t<name>{cls}</name>\n\t\t<pose>Unspecified</pose>\n"
                     f"\t\t<truncated>0</truncated>\n\t\t<difficult>{int(difficult)}</difficult>\n"
                     f"\t\t<bndbox>\n\t\t\t<xmin>{x1}</xmin>\n\t\t\t<ymin>{y1}</ymin>\n"
                     f"\t\t\t<xmax>{x2}</xmax>\n\t\t\t<ymax>{y2}</ymax>\n\t\t</bndbox>\n\t</object>\n")
    parts.append("</annotation>\n")
    return "".join(parts)


def write_voc(root: Path, subsets: Mapping[str, Mapping[str, Sequence[Obj]]],
              classes: Sequence[str], size: tuple[int, int] = (32, 24), seed: int = 0) -> Path:
    """`root/VOCdevkit/VOC2007` with JPEGs (objects painted in their class colour on noise),
    XMLs, `ImageSets/Main/{subset}.txt` and `{cls}_{subset}.txt` (1 / -1 / 0 = difficult only)."""
    base = root / "VOCdevkit" / "VOC2007"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    for subset, images in subsets.items():
        ids = sorted(images)
        (base / "ImageSets/Main" / f"{subset}.txt").write_text("".join(f"{i}\n" for i in ids))
        for cls in classes:
            lines = []
            for i in ids:
                objs = [o for o in images[i] if o[0] == cls]
                label = 1 if any(not o[2] for o in objs) else (0 if objs else -1)
                lines.append(f"{i} {label:2d}\n")
            (base / "ImageSets/Main" / f"{cls}_{subset}.txt").write_text("".join(lines))
        for i in ids:
            arr = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
            for cls, (x1, y1, x2, y2), _ in images[i]:
                arr[y1 - 1:y2, x1 - 1:x2] = COLOURS.get(cls, (128, 128, 128))
            Image.fromarray(arr).save(base / "JPEGImages" / f"{i}.jpg", quality=95)
            (base / "Annotations" / f"{i}.xml").write_text(_xml(i, size, images[i]))
    return base


def standard_voc(root: Path, per_subset: int = 8) -> Path:
    """Three classes, `per_subset` images each in trainval and test; one object per image
    cycling through the classes, a second (difficult) object on some."""
    classes = ["chair", "diningtable", "dog"]
    subsets: dict[str, dict[str, list[Obj]]] = {}
    n = 0
    for subset in ("trainval", "test"):
        images: dict[str, list[Obj]] = {}
        for k in range(per_subset):
            n += 1
            objs: list[Obj] = [(classes[k % 3], (3, 3, 20, 18), False)]
            if k % 4 == 3:
                objs.append((classes[(k + 1) % 3], (22, 10, 30, 22), True))
            images[f"{n:06d}"] = objs
        subsets[subset] = images
    return write_voc(root, subsets, classes)
