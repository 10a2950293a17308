"""Read and write the authors' `alldata.pth` feature files, so RIS can be cross-checked.

The format is a torch-saved dict `{'feat': N x D, 'instance': N trajectory ids,
'classes': N labels}`; sslc adds the optional `paths` (each row's source image) and
`boxes` (N x 4, NaN where a row has no box). sslc writes tensors and lists of str only, so
`torch.load(path, weights_only=True)` reads its files. The authors' own files hold numpy
arrays (and numpy scalars in extra keys such as `azimuth`); those are read by allowing
exactly numpy's array/scalar reconstruction functions, never with `weights_only=False`.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_core.atomic import torch_save
from ssl_core.errors import CheckpointError, DataError, SslcError

__all__ = ["AllData", "load_alldata", "save_alldata"]

#: globals the authors' numpy-holding files need, and nothing else
_NUMPY_GLOBALS = re.compile(
    r"^numpy(\._core|\.core)?\.(multiarray\.(_reconstruct|scalar)|ndarray|dtype)$"
    r"|^numpy\.dtypes\.\w+DType$"
)
_KNOWN = ("feat", "instance", "classes", "paths", "boxes")


@dataclass
class AllData:
    """The content of one alldata.pth file, as numpy arrays and python lists."""

    feat: np.ndarray  # N x D, float32 or float64
    instance: np.ndarray | list  # N trajectory ids
    classes: np.ndarray | list | None  # N labels; None when the file has no 'classes'
    paths: list[str] | None = None
    boxes: np.ndarray | None = None  # N x 4 float, NaN where no box
    extra: dict[str, Any] = field(default_factory=dict)  # other keys (e.g. 'azimuth')

    def __len__(self) -> int:
        return int(self.feat.shape[0])


def save_alldata(
    path: str | os.PathLike[str],
    feat: Any,
    instance: Sequence[Any] | Any,
    classes: Sequence[Any] | Any | None,
    paths: Sequence[str] | None = None,
    boxes: Any | None = None,
) -> Path:
    """Write an alldata.pth file atomically; it loads with `torch.load(weights_only=True)`."""
    target = Path(path)
    feat_arr = _feat_array(feat, target)
    n = feat_arr.shape[0]
    out: dict[str, Any] = {"feat": torch.from_numpy(np.ascontiguousarray(feat_arr))}
    out["instance"] = _ids_for_saving(instance, n, "instance", target)
    if classes is not None:
        out["classes"] = _ids_for_saving(classes, n, "classes", target)
    if paths is not None:
        path_list = [str(p) for p in paths]
        _check_len(len(path_list), n, "paths", target, DataError)
        out["paths"] = path_list
    if boxes is not None:
        out["boxes"] = torch.from_numpy(
            np.ascontiguousarray(_boxes_array(boxes, n, target, DataError))
        )
    torch_save(target, out)
    return target


def load_alldata(path: str | os.PathLike[str]) -> AllData:
    """Read an alldata.pth written by sslc or by the authors' feature scripts."""
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(
            f"feature file not found: {source}",
            hint="extract features first, or check the path",
        )
    raw = _torch_load(source)
    if not isinstance(raw, dict):
        raise CheckpointError(
            f"{source} holds a {type(raw).__name__}, not the alldata dict",
            hint="expected {'feat': N x D, 'instance': N ids, 'classes': N labels}",
        )
    for key in ("feat", "instance"):
        if key not in raw:
            raise CheckpointError(
                f"{source} has no '{key}' key (keys: {sorted(map(str, raw))})",
                hint="an alldata.pth needs 'feat' (N x D features) and 'instance' (N trajectory ids)",
            )
    feat = _feat_array(raw["feat"], source, key_error=True)
    n = feat.shape[0]
    instance = _ids_loaded(raw["instance"], n, "instance", source)
    classes = _ids_loaded(raw["classes"], n, "classes", source) if "classes" in raw else None
    paths = None
    if raw.get("paths") is not None:
        paths = [str(p) for p in _as_list(raw["paths"])]
        _check_len(len(paths), n, "paths", source, CheckpointError)
    boxes = None
    if raw.get("boxes") is not None:
        boxes = _boxes_array(raw["boxes"], n, source, CheckpointError)
    extra = {k: v for k, v in raw.items() if k not in _KNOWN}
    return AllData(
        feat=feat, instance=instance, classes=classes, paths=paths, boxes=boxes, extra=extra
    )


def _torch_load(source: Path) -> Any:
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as first:
        try:
            needed = torch.serialization.get_unsafe_globals_in_checkpoint(source)
        except Exception as exc:  # noqa: BLE001 - any failure here means an unreadable file
            raise CheckpointError(
                f"cannot read {source}: {exc}", hint="is it a torch.save file?"
            ) from first
        refused = [name for name in needed if not _NUMPY_GLOBALS.match(name)]
        if refused:
            raise CheckpointError(
                f"{source} needs code outside numpy to load ({', '.join(refused)}); "
                "sslc loads feature files with weights_only=True only",
                hint="re-save it as a dict of tensors / numpy arrays / lists of str",
            ) from first
        allowed: list[Any] = [(_resolve(name), name) for name in needed]
        # Rebuilding a dtype makes an instance of its class (numpy >= 1.25), which torch also
        # checks: allow numpy's dtype classes as well (plain data types, no code).
        dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25
        allowed += (
            [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")] if dtypes else []
        )
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(source, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(
                f"cannot read {source}: {exc}", hint="is it a torch.save file?"
            ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read {source}: {exc}",
            hint="the file is truncated or not a torch.save file; re-extract the features",
        ) from exc


def _resolve(name: str) -> Any:
    module, _, attr = name.rpartition(".")
    if module.startswith("numpy.core"):  # numpy 1.x names; numpy 2 keeps them in numpy._core
        try:
            return getattr(
                importlib.import_module(module.replace("numpy.core", "numpy._core", 1)), attr
            )
        except ImportError:
            pass
    return getattr(importlib.import_module(module), attr)


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return list(value)


def _check_len(got: int, n: int, key: str, where: Path, err: type[SslcError]) -> None:
    if got != n:
        raise err(
            f"{where}: '{key}' has {got} entries but 'feat' has {n} rows",
            hint=f"'{key}' needs one entry per feature row",
        )


def _feat_array(value: Any, where: Path, key_error: bool = False) -> np.ndarray:
    err = CheckpointError if key_error else DataError
    try:
        arr = _to_numpy(value)
    except (TypeError, ValueError) as exc:
        raise err(
            f"{where}: 'feat' is not a numeric matrix ({exc})", hint="store an N x D float array"
        ) from exc
    if arr.ndim != 2 or arr.dtype.kind not in "fiu":
        raise err(
            f"{where}: 'feat' must be an N x D numeric matrix, got shape {arr.shape} dtype {arr.dtype}",
            hint="store one pooled feature vector per row",
        )
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32 if arr.dtype.kind == "f" else np.float64)
    return arr


def _ids_for_saving(ids: Any, n: int, key: str, where: Path) -> Any:
    """Integer / float ids become tensors, anything else a list of str."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids) if isinstance(ids, np.ndarray) else None
    if arr is None:
        values = list(ids)
        _check_len(len(values), n, key, where, DataError)
        if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
            return torch.tensor(np.asarray(values, dtype=np.int64))
        if all(isinstance(v, float | np.floating) for v in values):
            return torch.tensor(np.asarray(values, dtype=np.float64))
        return [str(v) for v in values]
    if arr.ndim != 1:
        raise DataError(
            f"{where}: '{key}' must be 1-D, got shape {arr.shape}", hint="one id per row"
        )
    _check_len(len(arr), n, key, where, DataError)
    if arr.dtype.kind in "iub":
        return torch.from_numpy(arr.astype(np.int64))
    if arr.dtype.kind == "f":
        return torch.from_numpy(arr.astype(np.float64))
    return [str(v) for v in arr.tolist()]


def _ids_loaded(value: Any, n: int, key: str, where: Path) -> np.ndarray | list:
    if isinstance(value, torch.Tensor | np.ndarray):
        arr = _to_numpy(value)
        if arr.ndim != 1:
            raise CheckpointError(
                f"{where}: '{key}' must be 1-D, got shape {arr.shape}",
                hint="one id per feature row",
            )
        _check_len(len(arr), n, key, where, CheckpointError)
        return arr
    try:
        values = list(value)
    except TypeError as exc:
        raise CheckpointError(
            f"{where}: '{key}' is a {type(value).__name__}, not a sequence",
            hint="one id per feature row",
        ) from exc
    _check_len(len(values), n, key, where, CheckpointError)
    return values


def _boxes_array(value: Any, n: int, where: Path, err: type[SslcError]) -> np.ndarray:
    if isinstance(value, list | tuple):  # rows without a box may be None
        value = [[np.nan] * 4 if row is None else row for row in value]
    try:
        arr = _to_numpy(value).astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise err(
            f"{where}: 'boxes' is not a numeric N x 4 array ({exc})", hint="NaN where no box"
        ) from exc
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise err(
            f"{where}: 'boxes' must be N x 4, got shape {arr.shape}",
            hint="one box per row, NaN where a row has no box",
        )
    _check_len(arr.shape[0], n, "boxes", where, err)
    return arr
