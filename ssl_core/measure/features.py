"""Feature extraction for invariance probes and downstream evaluators, with an on-disk cache.

Features are the encoder's globally pooled pre-FC activations for every row of a
ProbeSet (or of any list of ImageRecords an evaluator asks for: `ImageRows`; those may
ask for one of the encoder's feature maps instead, `Preprocessing.layer`), computed
with the authors' preprocessing (crop the box, Resize, ToTensor, ImageNet Normalize;
evaluators may ask for resize-shorter-side + center crop instead). Extraction dominates
the cost of probing and evaluating, so results are cached under a key that covers
everything they depend on: the encoder's identity, every image's path/box and file
size/mtime, and the preprocessing (not a probe's trajectories or labels: two probes over
the same images share an entry).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.progress import Progress
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from torchvision import transforms as T

from ssl_core.errors import ComponentError, DataError
from ssl_core.interfaces import Encoder, ImageRecord, Preprocessing, ProbeSet
from ssl_core.kit import progress as sslc_progress
from ssl_core.kit.atomic import atomic_path
from ssl_core.kit.imageio import IMAGENET_MEAN, IMAGENET_STD, crop_box, load_rgb
from ssl_core.kit.memory import BudgetedCache, ensure_fits
from ssl_core.kit.paths import cache_dir
from ssl_core.kit.progress import say
from ssl_core.kit.transfer import device_constant

#: bump when the preprocessing code changes in a way that changes pixel values
PREPROCESS_VERSION = 2  # 2: 16-bit images scaled instead of clipped


def build_geometry(image_size: tuple[int, int], resize: int | None = None) -> T.Compose:
    """Resize to (h, w) with bilinear; with `resize`, the shorter side is resized to it and
    the centre (h, w) is cropped instead (MoCo's linear-evaluation val transform: 256, then
    224). PIL in, PIL out: the pixels before ToTensor."""
    bilinear = T.InterpolationMode.BILINEAR
    return T.Compose([T.Resize(tuple(image_size), interpolation=bilinear)] if resize is None
                     else [T.Resize(int(resize), interpolation=bilinear), T.CenterCrop(tuple(image_size))])


def build_transform(image_size: tuple[int, int], mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD, resize: int | None = None) -> T.Compose:
    """`build_geometry`, ToTensor, Normalize: the authors' preprocessing."""
    return T.Compose([*build_geometry(image_size, resize).transforms, T.ToTensor(), T.Normalize(mean, std)])


def normalize_pixels(pixels: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 as ToTensor then Normalize give, bit for bit (the same
    operations in the same order)."""
    m = device_constant(mean, pixels.device).view(1, -1, 1, 1)
    s = device_constant(std, pixels.device).view(1, -1, 1, 1)
    return pixels.to(torch.float32).div(255).sub_(m).div_(s)


@dataclass(frozen=True)
class ImageRows:
    """Any images (or boxes) to featurise, in order, and how: what evaluators ask for.

    `name` only labels progress bars and messages; it is not part of the cache key, so
    two evaluators asking for the same images with the same preprocessing share features.
    """

    name: str
    records: Sequence[ImageRecord]
    preprocessing: Preprocessing


FeatureSource = ProbeSet | ImageRows


def _source_records(source: FeatureSource) -> list[ImageRecord]:
    if isinstance(source, ProbeSet):
        return [item.record for item in source.items]
    return list(source.records)


def _source_preprocessing(source: FeatureSource) -> Preprocessing:
    if isinstance(source, ProbeSet):
        return Preprocessing((int(source.image_size[0]), int(source.image_size[1])))
    return source.preprocessing


def _source_label(source: FeatureSource) -> str:
    return f"probe {source.probe!r}" if isinstance(source, ProbeSet) else repr(source.name)


class RowImages(TorchDataset):
    """The preprocessed image of every row of a ProbeSet or ImageRows, in row order."""

    def __init__(self, source: FeatureSource, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        self.records: list[ImageRecord] = _source_records(source)
        pre = _source_preprocessing(source)
        self.image_size = (int(pre.image_size[0]), int(pre.image_size[1]))
        self.resize = pre.resize
        self.mean, self.std = tuple(mean), tuple(std)
        self.geometry = build_geometry(self.image_size, pre.resize)

    def __len__(self) -> int:
        return len(self.records)

    def pixels(self, index: int) -> torch.Tensor:
        """Row `index` cropped and resized, uint8 (3, H, W): everything but the normalisation."""
        record = self.records[index]
        img = self.geometry(crop_box(load_rgb(record.path), record.box, record.path))
        if record.transform is not None:  # at the network's input size, before normalising
            img = record.transform(img)
        return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()

    def __getitem__(self, index: int) -> torch.Tensor:
        return normalize_pixels(self.pixels(index)[None], self.mean, self.std)[0]

    def memo_key(self) -> str:
        """What the pixels depend on: the images (paths, boxes, file stats) and the geometry."""
        return json.dumps([images_fingerprint(self.records), self.image_size, self.resize])


class ProbeImages(RowImages):
    """The preprocessed image of every ProbeSet row, in row order."""

    def __init__(self, probe_set: ProbeSet, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__(probe_set, mean, std)


class _LoaderItems(TorchDataset):
    """Wraps ProbeImages so a DataError in a worker reaches the main process intact.

    DataLoader re-raises worker exceptions with the worker's traceback in the message;
    carrying the error as data lets extract_features raise the original clean message.
    """

    def __init__(self, images: RowImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str, str]:
        try:
            return self.images.pixels(index), "", ""
        except DataError as exc:
            h, w = self.images.image_size
            return torch.zeros(3, h, w, dtype=torch.uint8), exc.message, exc.hint or ""


class PreparedPixels(BudgetedCache[torch.Tensor]):
    """The uint8 pixels of recently featurised image sets (512 MiB by default).

    Probing or evaluating several models reads the same images with the same preprocessing
    for each; decoding and resizing them is a quarter of extraction on CPU. Keeping the
    pixels (a 64 px image is 12 KB) lets every model after the first skip it. In memory
    only, per process; a set larger than the budget is not kept.
    """

    def __init__(self, budget: int = 512 << 20) -> None:
        super().__init__(budget)


#: this process's prepared pixels (extract_features reads and fills it)
PREPARED = PreparedPixels()


def _pixel_batches(images: RowImages, batch_size: int, num_workers: int,
                   pin: bool) -> Iterator[torch.Tensor]:
    """uint8 batches of every row in order: from `PREPARED` when this process prepared the
    same images before, else decoded (by `num_workers` processes) and kept there."""
    key = images.memo_key()
    kept = PREPARED.get(key)
    if kept is not None:
        for start in range(0, len(kept), batch_size):
            yield kept[start:start + batch_size]
        return
    loader = DataLoader(_LoaderItems(images), batch_size=batch_size, shuffle=False,
                        num_workers=num_workers, persistent_workers=False, pin_memory=pin)
    h, w = images.image_size
    keep = len(images) * 3 * h * w <= PREPARED.budget
    batches = []
    for batch, messages, hints in loader:
        for msg, hint in zip(messages, hints, strict=True):
            if msg:
                raise DataError(msg, hint or None)
        if keep:
            batches.append(batch)
        yield batch
    if keep:
        PREPARED.put(key, torch.cat(batches))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


#: `Preprocessing.dtype` -> the array dtype features are returned and cached as
FEATURE_DTYPES: dict[str, type[np.floating[Any]]] = {"float32": np.float32, "float16": np.float16}


def _feature_dtype(pre: Preprocessing) -> type[np.floating[Any]]:
    try:
        return FEATURE_DTYPES[pre.dtype]
    except KeyError:
        raise ComponentError(f"unknown feature dtype {pre.dtype!r}",
                             f"use one of {', '.join(FEATURE_DTYPES)}") from None


def feature_map(encoder: Encoder | torch.nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
    """The `layer` entry of `encoder.feature_maps(x)` (through `Encoder.feature_map`, which
    may stop at that layer), checked to be a 4-D map."""
    maps_fn = getattr(encoder, "feature_maps", None)
    if maps_fn is None:
        raise ComponentError(f"encoder {type(encoder).__name__} has no feature_maps(); cannot "
                             f"give its {layer!r} maps", "use an sslc Encoder (e.g. resnet50)")
    one_fn = getattr(encoder, "feature_map", None)
    try:
        out = one_fn(x, layer) if one_fn is not None else maps_fn(x)[layer]
    except KeyError:
        raise ComponentError(f"encoder {type(encoder).__name__} has no feature map {layer!r}",
                             f"set the evaluator's `layer` to one of: {', '.join(maps_fn(x))}") from None
    if out.dim() != 4:
        maps = maps_fn(x)
        spatial = [k for k, v in maps.items() if v.dim() == 4]
        raise ComponentError(f"encoder {type(encoder).__name__}'s {layer!r} output has shape "
                             f"{tuple(out.shape)}, not N x C x h x w",
                             f"pick a spatial map: {', '.join(spatial) or '(none)'}")
    return out


@contextmanager
def tf32(allowed: bool) -> Iterator[None]:
    """Switch TF32 convolutions and matmuls on or off, restoring the previous setting.

    cuDNN allows TF32 by default on Ampere and later GPUs; its 10-bit mantissa moves
    features by ~1e-3 relative, enough to change top-K rankings. The authors' numbers
    are fp32, so probing runs in full fp32 unless asked.
    """
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = allowed
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def extract_features(
    encoder: Encoder | torch.nn.Module,
    probe_set: FeatureSource,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    progress: bool | Progress = True,
    description: str | None = None,
    allow_tf32: bool = False,
    channels_last: bool | None = None,
) -> np.ndarray:
    """Pooled features (N x D float32) of every row of a ProbeSet or ImageRows, in row order;
    for ImageRows whose preprocessing names a `layer`, that feature map (N x C x h x w),
    and in the preprocessing's `dtype`.

    The encoder runs in eval mode under inference_mode, in full fp32 unless
    `allow_tf32`; its training flag and device are restored afterwards so callers can
    keep training it. `progress` may be a live rich Progress to add the task to (one
    live display at a time), True for a bar of its own, or False for none.
    `channels_last` (None: on CPU only) runs the encoder in NHWC memory format: oneDNN's
    CPU convolutions are about 1.7x faster in it, 1.3x end to end with images decoded
    beside (benchmarks/bench_feature_extraction.py); the features are the same up to float
    rounding.
    """
    label = _source_label(probe_set)
    images = RowImages(probe_set)
    if len(images) == 0:
        raise DataError(f"{label} has no images",
                        "check the dataset root and the dataset type")
    pre = _source_preprocessing(probe_set)
    layer, dtype = pre.layer, _feature_dtype(pre)
    if layer == "pooled":
        dim = int(getattr(encoder, "feature_dim", 0) or 0)
        ensure_fits(np.dtype(dtype).itemsize * dim * len(images),
                    f"the features of {label} ({len(images)} rows x {dim})",
                    "use a smaller dataset, or an encoder with fewer feature dimensions")
    dev = torch.device(device) if device is not None else default_device()
    was_training = encoder.training
    first = next(iter(encoder.parameters()), None)
    old_device = first.device if first is not None else dev
    nhwc = dev.type == "cpu" if channels_last is None else channels_last
    old_format = _memory_format(encoder)
    encoder.eval().to(dev)
    if nhwc:
        encoder.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    result: np.ndarray | None = None  # allocated once the first batch gives the row shape
    filled = 0
    bar: Any = (nullcontext(progress) if isinstance(progress, Progress)
                else sslc_progress.progress_bar() if progress else nullcontext(None))
    try:
        with bar as prog, torch.inference_mode(), tf32(allow_tf32):
            task = None
            if prog is not None:
                default = (f"features {probe_set.probe}" if isinstance(probe_set, ProbeSet)
                           else f"features {probe_set.name}")
                task = prog.add_task(description or default, total=len(images), info="")
            for batch in _pixel_batches(images, batch_size, num_workers, dev.type == "cuda"):
                x = normalize_pixels(batch.to(dev, non_blocking=True), images.mean, images.std)
                if nhwc:
                    x = x.contiguous(memory_format=torch.channels_last)
                out = (encoder(x).flatten(1) if layer == "pooled"
                       else feature_map(encoder, x, layer))
                arr = out.float().cpu().numpy()
                if result is None:
                    result = _allocate(len(images), arr.shape[1:], dtype, label, layer)
                chunk = result[filled:filled + len(arr)]
                chunk[...] = arr
                if dtype is np.float16 and not np.isfinite(chunk).all() and np.isfinite(arr).all():
                    raise ComponentError(f"the {layer} features of {label} exceed the float16 "
                                         "range (|x| > 65504)", "ask for dtype float32")
                filled += len(arr)
                if prog is not None and task is not None:
                    prog.advance(task, len(batch))
    finally:
        encoder.train(was_training)
        encoder.to(old_device)
        if nhwc and old_format is not torch.channels_last:
            encoder.to(memory_format=old_format)  # type: ignore[call-overload]
    assert result is not None and filled == len(result)
    return result


def _memory_format(module: torch.nn.Module) -> torch.memory_format:
    """channels_last when the module's first 4-d weight is stored NHWC, else contiguous."""
    weight = next((p for p in module.parameters() if p.dim() == 4), None)
    if weight is not None and not weight.is_contiguous() and weight.is_contiguous(
            memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _allocate(rows: int, shape: Sequence[int], dtype: type[np.floating[Any]], label: str,
              layer: str) -> np.ndarray:
    """The output array; feature maps are checked against the free memory first (their
    size is known only once the encoder has run on one batch)."""
    if layer != "pooled":
        dims = " x ".join(str(int(d)) for d in shape)
        ensure_fits(int(np.dtype(dtype).itemsize * rows * int(np.prod(shape))),
                    f"the {layer} feature maps of {label} ({rows} rows x {dims}, "
                    f"{np.dtype(dtype).name})",
                    "lower the evaluator's image_size, pick an earlier `layer` or dtype "
                    "float16, or evaluate fewer images")
    return np.empty((rows, *shape), dtype=dtype)


# -- cache --------------------------------------------------------------------------------


def _file_stat(path: Path) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # extraction will report the missing file
    return [st.st_size, st.st_mtime_ns]


def images_fingerprint(records: Sequence[ImageRecord]) -> str:
    """sha256 over every record's path, box, file size/mtime and transform, in order: what
    its pixels depend on (labels and groups do not change features, so they are left out)."""
    h = hashlib.sha256()
    for rec in records:
        row = [str(rec.path), list(rec.box) if rec.box is not None else None, _file_stat(rec.path)]
        if rec.transform is not None:  # only then: keys of untransformed images stay as they were
            row.append(rec.transform.key)
        h.update(json.dumps(row).encode())
        h.update(b"\n")
    return h.hexdigest()


def rows_key_parts(encoder_id: str, rows: ImageRows, encoder: torch.nn.Module | None = None,
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                   allow_tf32: bool = False) -> dict[str, Any]:
    """Everything the features of `rows` depend on, as a JSON-able mapping.

    `layer` and `dtype` enter only when they differ from pooled float32, so the keys of
    pooled features (and the caches written before maps existed) stay as they were."""
    pre = rows.preprocessing
    preprocess: dict[str, Any] = {"image_size": list(pre.image_size), "resize": pre.resize,
                                  "mean": list(mean), "std": list(std),
                                  "version": PREPROCESS_VERSION}
    if pre.layer != "pooled":
        preprocess["layer"] = pre.layer
    if pre.dtype != "float32":
        preprocess["dtype"] = pre.dtype
    return {
        "precision": "tf32" if allow_tf32 else "fp32",
        "encoder_id": encoder_id,
        "encoder_class": None if encoder is None else f"{type(encoder).__module__}.{type(encoder).__qualname__}",
        "rows": len(rows.records),
        "images": images_fingerprint(rows.records),
        "preprocess": preprocess,
    }


def feature_key_parts(encoder_id: str, source: FeatureSource, encoder: torch.nn.Module | None = None,
                      allow_tf32: bool = False) -> dict[str, Any]:
    """Everything the features of a ProbeSet or ImageRows depend on: the images and the
    preprocessing, not what a probe makes of them (trajectories, labels), so probes and
    evaluators reading the same images share one entry."""
    rows = source if isinstance(source, ImageRows) else ImageRows(
        source.probe, _source_records(source), _source_preprocessing(source))
    return rows_key_parts(encoder_id, rows, encoder, allow_tf32=allow_tf32)


class FeatureCache:
    """Feature matrices on disk, one `.npy` per key; written atomically, read without pickle."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "features"
        self.hits = 0
        self.misses = 0
        self.writable = True

    @staticmethod
    def key(key_parts: Mapping[str, Any] | Sequence[Any] | str) -> str:
        blob = json.dumps(key_parts, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed and overwritten

    def store(self, key: str, features: np.ndarray, key_parts: Any = None) -> Path | None:
        """Write an entry; a cache that cannot be written is switched off with a warning,
        never an error: the features in hand are what matters."""
        if not self.writable:
            return None
        path = self.path_for(key)
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.asarray(features), allow_pickle=False)
            if key_parts is not None:
                meta = path.with_suffix(".json")
                with atomic_path(meta) as tmp, open(tmp, "w") as fh:
                    json.dump(key_parts, fh, indent=2, sort_keys=True, default=str)
        except OSError as exc:
            self.writable = False
            say(f"[yellow]warning:[/yellow] feature cache {self.root} is not writable "
                f"({exc.strerror or exc}); continuing without caching (set SSLC_CACHE_DIR to a "
                "writable folder to cache features)")
            return None
        return path

    def get_or_compute(self, key_parts: Mapping[str, Any] | Sequence[Any] | str,
                       compute_fn: Callable[[], np.ndarray],
                       dtype: type[np.floating[Any]] = np.float32) -> np.ndarray:
        """The cached array for `key_parts`, or compute_fn()'s result (as `dtype`), stored
        for next time."""
        key = self.key(key_parts)
        cached = self.load(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        features = np.ascontiguousarray(compute_fn(), dtype=dtype)
        self.store(key, features, key_parts)
        return features


def features_for(
    encoder: Encoder | torch.nn.Module,
    probe_set: FeatureSource,
    encoder_id: str,
    *,
    cache: FeatureCache | Literal[False] | None = None,
    **extract_kwargs: Any,
) -> np.ndarray:
    """Features of a ProbeSet or ImageRows, from the cache when the same encoder saw the
    same images with the same preprocessing.

    `encoder_id` must change whenever the weights change (a checkpoint's content digest
    plus its load options, or a run's checkpoint digest). `cache=None` uses the default
    cache under `sslc` cache dir; `cache=False` always recomputes and stores nothing.
    """
    if cache is False:
        return extract_features(encoder, probe_set, **extract_kwargs)
    store = cache if cache is not None else FeatureCache()
    tf32_on = bool(extract_kwargs.get("allow_tf32", False))
    parts = feature_key_parts(encoder_id, probe_set, encoder, allow_tf32=tf32_on)
    dtype = _feature_dtype(_source_preprocessing(probe_set))
    return store.get_or_compute(parts, lambda: extract_features(encoder, probe_set, **extract_kwargs),
                                dtype)


def rows_metadata(source: FeatureSource | Sequence[ImageRecord]) -> tuple[list[str], np.ndarray]:
    """Each row's image path and box (N x 4 float, NaN where the row has no box)."""
    records = (_source_records(source) if isinstance(source, ProbeSet | ImageRows)
               else list(source))
    paths = [str(rec.path) for rec in records]
    boxes = np.full((len(paths), 4), np.nan, dtype=np.float64)
    for i, rec in enumerate(records):
        if rec.box is not None:
            boxes[i] = np.asarray(rec.box, dtype=np.float64)
    return paths, boxes


def shared_feature_cache(enabled: bool = True) -> FeatureCache | None:
    """The feature cache every command shares (under the cache dir), or None when off or
    when its folder is not writable (with a warning): `sslc run`, `probe` and `evaluate`."""
    from ssl_core.kit.paths import cache_dir
    from ssl_core.kit.preflight import cache_usable

    root = cache_dir() / "features"
    return FeatureCache(root) if enabled and cache_usable(root, "feature cache") else None
