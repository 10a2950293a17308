"""PASCAL3D+ release 1.1 reader (native layout) and its two invariance probes.

Layout (the PASCAL3D+_release1.1 folder)::

    Images/{cls}_imagenet/{id}.JPEG        Images/{cls}_pascal/{id}.jpg
    Annotations/{cls}_imagenet/{id}.mat    Annotations/{cls}_pascal/{id}.mat
    Image_sets/{cls}_imagenet_train.txt    Image_sets/{cls}_imagenet_val.txt

Each .mat holds a MATLAB struct `record` whose `objects(k)` have `class`, `bbox`
([x1 y1 x2 y2]), `viewpoint` (`azimuth_coarse`, `elevation_coarse`, ...; empty for
objects without a viewpoint), `truncated`, `occluded`, `difficult`.

The probes follow the authors' released extract_pascal3d_features.py: the ImageNet
part (train list then val list, per class), then the PASCAL VOC part (per class, from
an `Image_sets/{cls}_pascal.txt` list of `id box_index` lines, which the release does
not ship; without it every annotated image of `Annotations/{cls}_pascal/`), the first
object of each image, azimuth bin = (azimuth_coarse mod 180) // 30, elevation bin =
(elevation_coarse mod 90) // 30.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import scipy.io
from pydantic import field_validator
from scipy.io.matlab import mat_struct

from ssl_core import (
    ComponentError,
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

CLASSES = ("aeroplane", "bicycle", "boat", "bottle", "bus", "car", "chair", "diningtable",
           "motorbike", "sofa", "train", "tvmonitor")
#: imagenet_*: ids from the Image_sets lists; pascal: the authors' own
#: Image_sets/{cls}_pascal.txt (`id box_index` lines) when present, else every
#: Annotations/{cls}_pascal/*.mat; pascal_list: that list, required
SUBSETS = ("imagenet_train", "imagenet_val", "pascal", "pascal_list")
RELEASE_DIR = "PASCAL3D+_release1.1"

Subset = Literal["imagenet_train", "imagenet_val", "pascal", "pascal_list"]


# -- reading one annotation file ------------------------------------------------------------


@dataclass(frozen=True)
class Pascal3DObject:
    index: int  # 0-based position in record.objects
    cls: str
    bbox: tuple[float, float, float, float]
    azimuth_coarse: float | None
    elevation_coarse: float | None
    truncated: bool
    occluded: bool
    difficult: bool


def _scalar(value: Any) -> float | None:
    """A MATLAB scalar as float; None for [] or a missing field."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.size == 0 or arr.dtype.kind not in "biuf":
        return None
    return float(arr.ravel()[0])


def _flag(value: Any) -> bool:
    v = _scalar(value)
    return bool(v) if v is not None else False


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    arr = np.asarray(value)
    if arr.size == 1 and arr.dtype.kind in "US":
        return str(arr.ravel()[0])
    return None


@dataclass(frozen=True)
class Pascal3DAnnotation:
    objects: list[Pascal3DObject]
    image_size: tuple[int, int] | None  # (width, height) from record.imgsize
    filename: str | None  # record.filename, the image's file name


def read_annotation(path: Path) -> Pascal3DAnnotation:
    """All objects of one .mat, with the image's size and file name when the record has them."""
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except FileNotFoundError:
        raise DataError(f"PASCAL3D+ annotation file not found: {path}",
                        "the image list names an id whose .mat is missing; re-extract "
                        "Annotations/") from None
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError...
        raise DataError(f"cannot read PASCAL3D+ annotation {path}: {exc}",
                        "the file is truncated or not a MATLAB .mat file; re-extract it") from None
    record = mat.get("record")
    if not isinstance(record, mat_struct):
        raise DataError(f"{path}: no MATLAB struct 'record'",
                        "PASCAL3D+ annotations hold a struct named record with a field objects")
    if not hasattr(record, "objects"):
        raise DataError(f"{path}: 'record' has no field 'objects'",
                        "PASCAL3D+ annotations list their objects in record.objects")
    raw = record.objects
    if isinstance(raw, mat_struct):
        raw_objects = [raw]
    elif isinstance(raw, np.ndarray):
        raw_objects = list(raw.ravel())
    else:
        raise DataError(f"{path}: 'record.objects' is not a struct array",
                        "record.objects must be a MATLAB struct (array)")
    objects = []
    for k, obj in enumerate(raw_objects):
        where = f"record.objects({k + 1})"
        if not isinstance(obj, mat_struct):
            raise DataError(f"{path}: '{where}' is not a struct",
                            "record.objects must be a MATLAB struct array")
        cls = _text(getattr(obj, "class", None))
        if cls is None:
            raise DataError(f"{path}: '{where}.class' is missing or not text",
                            "each object needs a class name")
        bbox = np.asarray(getattr(obj, "bbox", []), dtype=object).ravel()
        try:
            box = tuple(float(v) for v in bbox)
        except (TypeError, ValueError):
            box = ()
        if len(box) != 4 or not np.isfinite(box).all():
            raise DataError(f"{path}: '{where}.bbox' must be 4 numbers [x1 y1 x2 y2], got "
                            f"{getattr(obj, 'bbox', None)!r}", "fix or re-extract the annotation")
        vp = getattr(obj, "viewpoint", None)
        az = _scalar(getattr(vp, "azimuth_coarse", None)) if isinstance(vp, mat_struct) else None
        el = _scalar(getattr(vp, "elevation_coarse", None)) if isinstance(vp, mat_struct) else None
        if az is None or el is None:
            az = el = None
        objects.append(Pascal3DObject(
            index=k, cls=cls, bbox=box,  # type: ignore[arg-type]
            azimuth_coarse=az, elevation_coarse=el,
            truncated=_flag(getattr(obj, "truncated", None)),
            occluded=_flag(getattr(obj, "occluded", None)),
            difficult=_flag(getattr(obj, "difficult", None)),
        ))
    size = np.asarray(getattr(record, "imgsize", []), dtype=object).ravel()
    image_size = None
    if len(size) >= 2:
        try:
            image_size = (int(size[0]), int(size[1]))
        except (TypeError, ValueError):
            image_size = None
    filename = _text(getattr(record, "filename", None))
    if filename is not None and (not filename or "/" in filename or "\\" in filename):
        filename = None
    return Pascal3DAnnotation(objects, image_size, filename)


# -- the dataset ------------------------------------------------------------------------------


def find_release_dir(root: Path) -> Path:
    """root itself when it holds Annotations/ and Images/, else root/PASCAL3D+_release1.1."""
    root = Path(root).expanduser()
    for cand in (root, root / RELEASE_DIR):
        if (cand / "Annotations").is_dir() and (cand / "Images").is_dir():
            return cand
    if not root.exists():
        raise DataError(f"PASCAL3D+ root {root} does not exist",
                        f"set root to the {RELEASE_DIR} folder or a data root containing it")
    raise DataError(
        f"PASCAL3D+ layout not found: expected {root / 'Annotations'} and {root / 'Images'} "
        f"(or the same under {root / RELEASE_DIR})",
        f"set root to the {RELEASE_DIR} folder (the one holding Annotations/, Images/, "
        "Image_sets/)",
    )


class Pascal3DParams(Params):
    root: Path
    subsets: list[Subset] = ["imagenet_train", "imagenet_val", "pascal"]
    classes: list[str] | None = None

    @field_validator("subsets")
    @classmethod
    def _one_pascal_source(cls, value: list[Subset]) -> list[Subset]:
        if not value:
            raise ValueError(f"subsets is empty; pick from {', '.join(SUBSETS)}")
        if "pascal" in value and "pascal_list" in value:
            raise ValueError("'pascal' already reads Image_sets/{cls}_pascal.txt when it is "
                             "present: give 'pascal' or 'pascal_list', not both")
        return value


class Pascal3DDataset(Dataset):
    """PASCAL3D+ read in place: one record per annotated object of the folder's class.

    Record order (what the probes' trajectory numbering follows): the ImageNet part
    class by class (sorted), each class's train list then val list in file order;
    then the PASCAL part class by class; objects of an image in annotation order.
    """

    subsets: ClassVar[tuple[str, ...]] = ("all", *SUBSETS)

    def __init__(self, params: Pascal3DParams) -> None:
        self.params = params
        self.given_root = Path(params.root)
        self.chosen_subsets: list[str] = [s for s in SUBSETS if s in params.subsets]
        self.requested_classes = list(params.classes) if params.classes is not None else None
        self._release: Path | None = None
        #: what the last records() found: objects of another class than the folder's,
        #: and where each class's PASCAL part came from (list, annotations, or missing)
        self.stats: dict[str, int] = {}

    @property
    def root(self) -> Path:  # type: ignore[override]
        if self._release is None:
            self._release = find_release_dir(self.given_root)
        return self._release

    # -- classes and lists --------------------------------------------------------------
    def classes_on_disk(self) -> list[str]:
        """Classes with an Annotations/{cls}_imagenet or {cls}_pascal folder, sorted."""
        found = set()
        for d in (self.root / "Annotations").iterdir():
            cls, sep, source = d.name.rpartition("_")
            if d.is_dir() and sep and source in ("imagenet", "pascal"):
                found.add(cls)
        return sorted(found)

    def classes(self) -> list[str]:
        """The requested classes (checked), else every class present on disk, sorted."""
        on_disk = self.classes_on_disk()
        if self.requested_classes is None:
            if not on_disk:
                raise DataError(f"no class folders in {self.root / 'Annotations'}",
                                "expected folders like Annotations/car_imagenet")
            return on_disk
        for cls in self.requested_classes:
            if cls not in on_disk:
                close = difflib.get_close_matches(cls, on_disk or list(CLASSES), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise DataError(
                    f"pascal3d: class {cls!r} has no folder "
                    f"{self.root / 'Annotations' / (cls + '_imagenet')}",
                    hint + f"classes present: {', '.join(on_disk) or '(none)'}",
                )
        return sorted(set(self.requested_classes))

    def _list_file(self, name: str) -> list[str]:
        path = self.root / "Image_sets" / name
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise DataError(f"PASCAL3D+ image list not found: {path}",
                            "re-extract Image_sets/, or drop that subset from `subsets`") from None
        return [ln.strip() for ln in lines if ln.strip()]

    def _pascal_list(self, cls: str) -> Iterator[tuple[str, int | None]]:
        """The authors' `{cls}_pascal.txt`: `image_id box_index` (0-based) a line."""
        for i, line in enumerate(self._list_file(f"{cls}_pascal.txt")):
            parts = line.split()
            try:
                yield parts[0], int(parts[1])
            except (IndexError, ValueError):
                raise DataError(
                    f"{self.root / 'Image_sets' / (cls + '_pascal.txt')}, line {i + 1}: "
                    f"expected 'image_id box_index', got {line!r}",
                    "each line names an image and the 0-based index of its object") from None

    def _entries(self, cls: str, subset: str,
                 stats: Counter[str]) -> Iterator[tuple[str, int | None]]:
        """(image id, listed object index or None for every object) of one class/subset."""
        if subset in ("imagenet_train", "imagenet_val"):
            for image_id in self._list_file(f"{cls}_{subset}.txt"):
                yield image_id, None
        elif subset == "pascal_list" or (
                subset == "pascal" and (self.root / "Image_sets" / f"{cls}_pascal.txt").is_file()):
            stats["pascal_classes_from_list"] += 1
            yield from self._pascal_list(cls)
        else:  # pascal without a list: every annotated image, sorted
            folder = self.root / "Annotations" / f"{cls}_pascal"
            if not folder.is_dir():
                # the class has no PASCAL images here: its ImageNet part is read alone
                stats["pascal_classes_missing"] += 1
                return
            stats["pascal_classes_from_annotations"] += 1
            for mat in sorted(folder.glob("*.mat")):
                yield mat.stem, None

    def _subset_records(self, cls: str, subset: str, stats: Counter[str]) -> Iterator[ImageRecord]:
        source = "imagenet" if subset.startswith("imagenet") else "pascal"
        ext = "JPEG" if source == "imagenet" else "jpg"
        ann_dir = self.root / "Annotations" / f"{cls}_{source}"
        img_dir = self.root / "Images" / f"{cls}_{source}"
        for image_id, listed in self._entries(cls, subset, stats):
            mat_path = ann_dir / f"{image_id}.mat"
            ann = read_annotation(mat_path)
            objects = ann.objects
            image = img_dir / (ann.filename or f"{image_id}.{ext}")
            if listed is not None:
                if not 0 <= listed < len(objects):
                    raise DataError(f"{mat_path}: the list names object {listed} but the file "
                                    f"has {len(objects)}", "fix Image_sets/{cls}_pascal.txt")
                chosen = [objects[listed]]  # the authors use the listed object as is
            else:
                chosen = [o for o in objects if o.cls == cls]
                stats["objects_of_other_class"] += len(objects) - len(chosen)
            for obj in chosen:
                yield ImageRecord(
                    path=image,
                    label=cls,
                    group=image_id,
                    box=obj.bbox,
                    meta={
                        "azimuth_coarse": obj.azimuth_coarse,
                        "elevation_coarse": obj.elevation_coarse,
                        "truncated": obj.truncated,
                        "occluded": obj.occluded,
                        "difficult": obj.difficult,
                        "object_index": obj.index,
                        "object_class": obj.cls,
                        "subset": subset,
                        "part": source,
                        "listed": listed is not None,
                        "image_size": ann.image_size,
                        "annotation": str(mat_path),
                    },
                )

    def prepare(self, progress: Any | None = None) -> None:
        """Check the layout, the classes and every list file the chosen subsets need."""
        for cls in self.classes():
            for subset in self.chosen_subsets:
                next(iter(self._entries(cls, subset, Counter())), None)

    def records(self, subset: str | None = None) -> list[ImageRecord]:
        wanted: list[str]
        if subset in (None, "all"):
            wanted = list(self.chosen_subsets)
        elif subset in SUBSETS:
            wanted = [subset]
        else:
            raise ComponentError(f"pascal3d has no subset {subset!r}",
                                 f"subsets are: all, {', '.join(SUBSETS)}")
        classes = self.classes()
        stats: Counter[str] = Counter()
        out: list[ImageRecord] = []
        imagenet = [s for s in wanted if s.startswith("imagenet")]
        pascal = [s for s in wanted if s.startswith("pascal")]
        for part in (imagenet, pascal):
            for cls in classes:
                for s in part:
                    out.extend(self._subset_records(cls, s, stats))
        self.stats = dict(stats)
        return out


# -- the probes ---------------------------------------------------------------------------------


def azimuth_bin(azimuth: float) -> int:
    """(azimuth_coarse mod 180) // 30: six bins, an azimuth and its mirror share one."""
    return int((azimuth % 180) // 30)


def elevation_bin(elevation: float) -> int:
    """(elevation_coarse mod 90) // 30: three bins."""
    return int((elevation % 90) // 30)


class Pascal3DProbeParams(Params):
    image_size: int = 224
    objects: Literal["first", "all"] = "first"


def _box_visible(box: tuple[float, float, float, float], size: tuple[int, int] | None) -> bool:
    if size is None:
        return True
    w, h = size
    x1, y1, x2, y2 = box
    cx1, cx2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
    cy1, cy2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
    return round(cx2) - round(cx1) >= 1 and round(cy2) - round(cy1) >= 1


class _Pascal3DProbe(InvarianceProbe):
    dataset_type: ClassVar[str] = "pascal3d"
    name: ClassVar[str] = ""

    def __init__(self, params: Pascal3DProbeParams | None = None) -> None:
        self.params = params or Pascal3DProbeParams()
        self.stats: dict[str, int] = {}
        self.first_without_viewpoint: str | None = None

    def usable(self, dataset: Dataset, stats: Counter[str]) -> list[ImageRecord]:
        """The records the authors used, in dataset order, with a viewpoint and a
        croppable box: every object a `{cls}_pascal.txt` list names; the first object of
        each ImageNet image (their `objects[0]`); for a PASCAL image read without a list,
        its first object (of the folder's class) that has a viewpoint and a visible box."""
        if not isinstance(dataset, Pascal3DDataset):
            raise ComponentError(
                f"probe {self.name} needs a pascal3d dataset, got {type(dataset).__name__}",
                "give the probe a dataset of type pascal3d",
            )
        first_only = self.params.objects == "first"
        seen: set[tuple[str, str, str | None]] = set()
        out = []
        for rec in dataset.records():
            one_per_image = first_only and not rec.meta["listed"]
            key = (rec.meta["subset"], str(rec.label), rec.group)
            if one_per_image:
                if key in seen:
                    stats["skipped_not_first_object"] += 1
                    continue
                if rec.meta["part"] == "imagenet":
                    seen.add(key)  # objects[0], usable or not
            if rec.meta["azimuth_coarse"] is None:
                stats["skipped_without_viewpoint"] += 1
                self.first_without_viewpoint = self.first_without_viewpoint or rec.meta["annotation"]
                continue
            if rec.box is None or not _box_visible(rec.box, rec.meta.get("image_size")):
                stats["skipped_empty_box"] += 1
                continue
            if one_per_image:
                seen.add(key)
            out.append(rec)
        stats.update(dataset.stats)
        stats.setdefault("objects_of_other_class", 0)
        return out

    def trajectory(self, rec: ImageRecord, counters: dict[str, list[int]]) -> str:
        raise NotImplementedError

    def build(self, dataset: Dataset) -> ProbeSet:
        stats: Counter[str] = Counter()
        counters: dict[str, list[int]] = {}
        items = [ProbeItem(rec, trajectory=self.trajectory(rec, counters), label=str(rec.label))
                 for rec in self.usable(dataset, stats)]
        stats["rows"] = len(items)
        for part in ("imagenet", "pascal"):  # how many rows each part gave (the report shows it)
            stats[f"rows_{part}"] = sum(1 for it in items if it.record.meta["part"] == part)
        self.stats = dict(stats)
        if not items:
            example = (f"; e.g. {self.first_without_viewpoint} has no "
                       "record.objects(k).viewpoint.azimuth_coarse/elevation_coarse"
                       if self.first_without_viewpoint else "")
            raise DataError(f"{self.name}: no object with a viewpoint in {dataset.root} "
                            f"({stats['skipped_without_viewpoint']} objects without one{example})",
                            "PASCAL3D+ release 1.1 annotations carry viewpoints; check the dataset "
                            "root, classes and subsets")
        size = self.params.image_size
        return ProbeSet(probe=self.name, items=items, image_size=(size, size), stats=self.stats)


class ViewpointInstanceProbe(_Pascal3DProbe):
    """Viewpoint+instance: within a class, the j-th object of every azimuth bin forms
    trajectory j (`{cls}/traj{j}`), so a trajectory holds different instances seen
    from different coarse azimuths. j counts objects in dataset record order."""

    name: ClassVar[str] = "pascal3d-viewpoint-instance"
    invariance: ClassVar[str] = "viewpoint+instance"

    def trajectory(self, rec: ImageRecord, counters: dict[str, list[int]]) -> str:
        cls = str(rec.label)
        counts = counters.setdefault(cls, [0] * 6)
        b = azimuth_bin(rec.meta["azimuth_coarse"])
        j = counts[b]
        counts[b] += 1
        return f"{cls}/traj{j}"


class InstanceProbe(_Pascal3DProbe):
    """Instance: trajectory = (class, azimuth bin, elevation bin), `{cls}/az{a}_el{e}`:
    same category and coarse viewpoint, different instances."""

    name: ClassVar[str] = "pascal3d-instance"
    invariance: ClassVar[str] = "instance"

    def trajectory(self, rec: ImageRecord, counters: dict[str, list[int]]) -> str:
        a = azimuth_bin(rec.meta["azimuth_coarse"])
        e = elevation_bin(rec.meta["elevation_coarse"])
        return f"{rec.label}/az{a}_el{e}"


# -- registration -------------------------------------------------------------------------------


@hookimpl
def register_datasets(register: Register) -> None:
    register("pascal3d", Pascal3DDataset, params=Pascal3DParams,
             summary="PASCAL3D+ release 1.1 objects with coarse viewpoints (one record per object)")


@hookimpl
def register_invariance_probes(register: Register) -> None:
    register("pascal3d-viewpoint-instance", ViewpointInstanceProbe, params=Pascal3DProbeParams,
             summary="viewpoint+instance: j-th object of every azimuth bin of a class")
    register("pascal3d-instance", InstanceProbe, params=Pascal3DProbeParams,
             summary="instance: same class and coarse azimuth/elevation bin")
