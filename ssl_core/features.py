"""Feature extraction for invariance probes, with an on-disk cache.

Features are the encoder's globally pooled pre-FC activations for every row of a
ProbeSet, computed with the authors' preprocessing (crop the box, Resize, ToTensor,
ImageNet Normalize). Extraction dominates the cost of probing, so results are cached
under a key that covers everything they depend on: the encoder's identity, every
image's path/box/trajectory/label and file size/mtime, and the preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from torchvision import transforms as T

from ssl_core import progress as sslc_progress
from ssl_core.atomic import atomic_path
from ssl_core.errors import DataError
from ssl_core.imageio import IMAGENET_MEAN, IMAGENET_STD, crop_box, load_rgb
from ssl_core.interfaces import Encoder, ImageRecord, ProbeSet
from ssl_core.memory import ensure_fits
from ssl_core.paths import cache_dir
from ssl_core.progress import console, is_quiet

#: bump when the preprocessing code changes in a way that changes pixel values
PREPROCESS_VERSION = 2  # 2: 16-bit images scaled instead of clipped


def build_transform(image_size: tuple[int, int], mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> T.Compose:
    """Resize to (h, w) with bilinear, ToTensor, Normalize: the authors' preprocessing."""
    return T.Compose([
        T.Resize(tuple(image_size), interpolation=T.InterpolationMode.BILINEAR),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


class ProbeImages(TorchDataset):
    """The preprocessed image of every ProbeSet row, in row order."""

    def __init__(self, probe_set: ProbeSet, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        self.records: list[ImageRecord] = [item.record for item in probe_set.items]
        self.image_size = (int(probe_set.image_size[0]), int(probe_set.image_size[1]))
        self.transform = build_transform(self.image_size, mean, std)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> torch.Tensor:
        record = self.records[index]
        img = crop_box(load_rgb(record.path), record.box, record.path)
        return self.transform(img)


class _LoaderItems(TorchDataset):
    """Wraps ProbeImages so a DataError in a worker reaches the main process intact.

    DataLoader re-raises worker exceptions with the worker's traceback in the message;
    carrying the error as data lets extract_features raise the original clean message.
    """

    def __init__(self, images: ProbeImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str, str]:
        try:
            return self.images[index], "", ""
        except DataError as exc:
            h, w = self.images.image_size
            return torch.zeros(3, h, w), exc.message, exc.hint or ""


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
    probe_set: ProbeSet,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    description: str | None = None,
    allow_tf32: bool = False,
) -> np.ndarray:
    """Pooled features (N x D float32) of every ProbeSet row, in row order.

    The encoder runs in eval mode under inference_mode, in full fp32 unless
    `allow_tf32`; its training flag and device are restored afterwards so callers can
    keep training it.
    """
    if len(probe_set.items) == 0:
        raise DataError(f"probe {probe_set.probe!r} has no images",
                        "check the dataset root and the probe's dataset type")
    dim = int(getattr(encoder, "feature_dim", 0) or 0)
    # the batches and their concatenation are alive together at the end
    ensure_fits(2 * 4 * dim * len(probe_set.items),
                f"the features of probe {probe_set.probe!r} ({len(probe_set.items)} rows x {dim})",
                "probe a smaller dataset, or use an encoder with fewer feature dimensions")
    dev = torch.device(device) if device is not None else default_device()
    images = ProbeImages(probe_set)
    loader = DataLoader(
        _LoaderItems(images),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        persistent_workers=False,
        pin_memory=dev.type == "cuda",
    )
    was_training = encoder.training
    first = next(iter(encoder.parameters()), None)
    old_device = first.device if first is not None else dev
    encoder.eval().to(dev)
    chunks: list[np.ndarray] = []
    bar = sslc_progress.progress_bar() if progress else nullcontext(None)
    try:
        with bar as prog, torch.inference_mode(), tf32(allow_tf32):
            task = None
            if prog is not None:
                task = prog.add_task(description or f"features {probe_set.probe}",
                                     total=len(images), info="")
            for batch, messages, hints in loader:
                for msg, hint in zip(messages, hints, strict=True):
                    if msg:
                        raise DataError(msg, hint or None)
                out = encoder(batch.to(dev, non_blocking=True))
                chunks.append(out.flatten(1).float().cpu().numpy())
                if prog is not None and task is not None:
                    prog.advance(task, len(batch))
    finally:
        encoder.train(was_training)
        encoder.to(old_device)
    return np.ascontiguousarray(np.concatenate(chunks, axis=0), dtype=np.float32)


# -- cache --------------------------------------------------------------------------------


def probe_set_fingerprint(probe_set: ProbeSet) -> str:
    """sha256 over every row's path, box, trajectory, label and file size/mtime, in order."""
    h = hashlib.sha256()
    h.update(json.dumps([probe_set.probe, list(probe_set.image_size)]).encode())
    for item in probe_set.items:
        rec = item.record
        try:
            st = os.stat(rec.path)
            stat = [st.st_size, st.st_mtime_ns]
        except OSError:
            stat = None  # extraction will report the missing file
        row = [str(rec.path), list(rec.box) if rec.box is not None else None,
               str(item.trajectory), str(item.label), stat]
        h.update(json.dumps(row).encode())
        h.update(b"\n")
    return h.hexdigest()


def feature_key_parts(encoder_id: str, probe_set: ProbeSet, encoder: torch.nn.Module | None = None,
                      mean: Sequence[float] = IMAGENET_MEAN,
                      std: Sequence[float] = IMAGENET_STD,
                      allow_tf32: bool = False) -> dict[str, Any]:
    """Everything the features of `probe_set` depend on, as a JSON-able mapping."""
    return {
        "precision": "tf32" if allow_tf32 else "fp32",
        "encoder_id": encoder_id,
        "encoder_class": None if encoder is None else f"{type(encoder).__module__}.{type(encoder).__qualname__}",
        "probe": probe_set.probe,
        "rows": len(probe_set.items),
        "probe_set": probe_set_fingerprint(probe_set),
        "preprocess": {"image_size": list(probe_set.image_size), "mean": list(mean),
                       "std": list(std), "version": PREPROCESS_VERSION},
    }


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
            if not is_quiet():
                console.print(f"[yellow]warning:[/yellow] feature cache {self.root} is not "
                              f"writable ({exc.strerror or exc}); continuing without caching "
                              "(set SSLC_CACHE_DIR to a writable folder to cache features)",
                              highlight=False)
            return None
        return path

    def get_or_compute(self, key_parts: Mapping[str, Any] | Sequence[Any] | str,
                       compute_fn: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached matrix for `key_parts`, or compute_fn()'s result, stored for next time."""
        key = self.key(key_parts)
        cached = self.load(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        features = np.ascontiguousarray(compute_fn(), dtype=np.float32)
        self.store(key, features, key_parts)
        return features


def features_for(
    encoder: Encoder | torch.nn.Module,
    probe_set: ProbeSet,
    encoder_id: str,
    *,
    cache: FeatureCache | Literal[False] | None = None,
    **extract_kwargs: Any,
) -> np.ndarray:
    """Features of `probe_set`, from the cache when the same encoder saw the same images.

    `encoder_id` must change whenever the weights change (a checkpoint's content digest
    plus its load options, or a run's checkpoint digest). `cache=None` uses the default
    cache under `sslc` cache dir; `cache=False` always recomputes and stores nothing.
    """
    if cache is False:
        return extract_features(encoder, probe_set, **extract_kwargs)
    store = cache if cache is not None else FeatureCache()
    parts = feature_key_parts(encoder_id, probe_set, encoder,
                              allow_tf32=bool(extract_kwargs.get("allow_tf32", False)))
    return store.get_or_compute(parts, lambda: extract_features(encoder, probe_set, **extract_kwargs))


def rows_metadata(probe_set: ProbeSet) -> tuple[list[str], np.ndarray]:
    """Each row's image path and box (N x 4 float, NaN where the row has no box)."""
    paths = [str(item.record.path) for item in probe_set.items]
    boxes = np.full((len(paths), 4), np.nan, dtype=np.float64)
    for i, item in enumerate(probe_set.items):
        if item.record.box is not None:
            boxes[i] = np.asarray(item.record.box, dtype=np.float64)
    return paths, boxes
