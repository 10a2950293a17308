"""Read and write the authors' `alldata.pth` feature files, so RIS can be cross-checked.

The format is a torch-saved dict `{'feat': N x D, 'instance': N trajectory ids,
'classes': N labels}`; sslc adds the optional `paths` (each row's source image) and
`boxes` (N x 4, NaN where a row has no box).

sslc writes `feat`, numeric ids and `boxes` as numpy arrays and text ids as lists of str,
as the authors' extraction scripts did, because their `measure_invariances.py` does numpy
arithmetic on `feat` (`feat >= thresh` with a numpy `thresh` fails on a torch tensor).
Plain `torch.load(path, weights_only=True)` refuses numpy arrays, so `load_alldata` (and
anyone who wants a safe load) allows exactly numpy's array/scalar reconstruction
functions and dtype classes (`numpy_safe_globals()`), never `weights_only=False`.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_core.errors import DataError, SslcError
from ssl_core.kit.atomic import torch_save

__all__ = ["AllData", "load_alldata", "numpy_safe_globals", "save_alldata"]

#: globals a numpy-holding file may name; anything else is refused
_NUMPY_GLOBALS = re.compile(
    r"^numpy(\._core|\.core)?\.(multiarray\.(_reconstruct|scalar)|ndarray|dtype)$"
    r"|^numpy\.dtypes\.\w+DType$"
)
_KNOWN = ("feat", "instance", "classes", "paths", "boxes")
_REEXPORT_HINT = "re-export it with `sslc probe --checkpoint ... --save-features FILE`"


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


def numpy_safe_globals() -> list[Any]:
    """What `torch.serialization.safe_globals` needs to load numpy arrays and scalars.

    numpy's array and scalar reconstruction functions under both module names (files
    written under numpy 1 say `numpy.core`, numpy 2 says `numpy._core`), `ndarray`,
    `dtype` and numpy's dtype classes: plain data types, no code.
    """
    core = getattr(np, "_core", None) or importlib.import_module("numpy.core")
    multiarray = core.multiarray
    allowed: list[Any] = [np.ndarray, np.dtype]
    for prefix in ("numpy.core", "numpy._core"):
        allowed.append((multiarray._reconstruct, f"{prefix}.multiarray._reconstruct"))
        allowed.append((multiarray.scalar, f"{prefix}.multiarray.scalar"))
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed


def save_alldata(
    path: str | os.PathLike[str],
    feat: Any,
    instance: Sequence[Any] | Any,
    classes: Sequence[Any] | Any | None,
    paths: Sequence[str] | None = None,
    boxes: Any | None = None,
) -> Path:
    """Write an alldata.pth atomically, with `feat` as a numpy array (see the module doc)."""
    target = Path(path)
    feat_arr = _feat_array(feat, target, DataError)
    n = feat_arr.shape[0]
    out: dict[str, Any] = {"feat": np.ascontiguousarray(feat_arr)}
    out["instance"] = _ids_for_saving(instance, n, "instance", target)
    if classes is not None:
        out["classes"] = _ids_for_saving(classes, n, "classes", target)
    if paths is not None:
        path_list = [str(p) for p in paths]
        _check_len(len(path_list), n, "paths", target)
        out["paths"] = path_list
    if boxes is not None:
        out["boxes"] = np.ascontiguousarray(_boxes_array(boxes, n, target))
    torch_save(target, out)
    return target


def load_alldata(path: str | os.PathLike[str]) -> AllData:
    """Read an alldata.pth written by sslc or by the authors' feature scripts.

    Every problem with the file is one DataError naming it: missing, empty, not a
    torch.save file, not the alldata dict, or rows that do not line up.
    """
    source = Path(path)
    if not source.exists():
        raise DataError(f"feature file not found: {source}",
                        "extract features first (sslc probe --save-features), or check the path")
    if source.is_dir():
        raise DataError(f"feature file {source} is a directory",
                        "give the alldata.pth file itself, not the folder holding it")
    if source.stat().st_size == 0:
        raise DataError(f"feature file {source} is empty",
                        f"it was not written completely; {_REEXPORT_HINT}")
    raw = _torch_load(source)
    if not isinstance(raw, dict):
        raise DataError(
            f"{source} is not a feature dump: it holds a {type(raw).__name__}, not the alldata dict",
            "expected {'feat': N x D, 'instance': N ids, 'classes': N labels}",
        )
    for key in ("feat", "instance"):
        if key not in raw:
            raise DataError(
                f"{source} is not a feature dump: no '{key}' key (keys: {_keys(raw)})",
                "an alldata.pth needs 'feat' (N x D features) and 'instance' (N trajectory ids); "
                "a model checkpoint goes to --checkpoint",
            )
    feat = _feat_array(raw["feat"], source, DataError)
    n = feat.shape[0]
    instance = _ids_loaded(raw["instance"], n, "instance", source)
    classes = _ids_loaded(raw["classes"], n, "classes", source) if "classes" in raw else None
    paths = None
    if raw.get("paths") is not None:
        paths = [str(p) for p in _as_list(raw["paths"])]
        _check_len(len(paths), n, "paths", source)
    boxes = None
    if raw.get("boxes") is not None:
        boxes = _boxes_array(raw["boxes"], n, source)
    extra = {k: v for k, v in raw.items() if k not in _KNOWN}
    return AllData(
        feat=feat, instance=instance, classes=classes, paths=paths, boxes=boxes, extra=extra
    )


def _keys(raw: dict[Any, Any]) -> str:
    names = sorted(map(str, raw))
    if not names:
        return "none"
    return ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")


def _torch_load(source: Path) -> Any:
    """The file through the one weights-only reader, numpy allowed; failures become DataErrors."""
    from ssl_core.models.checkpoints import UnreadableTorchFile, load_weights_only

    try:
        return load_weights_only(source, numpy_safe_globals(),
                                 allowed=lambda name: bool(_NUMPY_GLOBALS.match(name)))
    except UnreadableTorchFile as err:
        if err.reason == "refused":
            raise DataError(
                f"{source} needs code outside numpy to load ({', '.join(err.refused)}); "
                "sslc loads feature files with weights_only=True only",
                "re-save it as a dict of tensors / numpy arrays / lists of str",
            ) from None
        why = "it is neither a zip archive nor a pickle" if err.reason == "not_torch" else err.detail
        raise DataError(f"{source} is not a feature dump: cannot read it as a torch.save file ({why})",
                        f"the file is truncated or of another kind; {_REEXPORT_HINT}") from None


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, torch.Tensor | np.ndarray):
        return value.tolist()
    return list(value)


def _check_len(got: int, n: int, key: str, where: Path) -> None:
    if got != n:
        raise DataError(
            f"{where}: '{key}' has {got} entries but 'feat' has {n} rows",
            f"'{key}' needs one entry per feature row",
        )


def _feat_array(value: Any, where: Path, err: type[SslcError]) -> np.ndarray:
    try:
        arr = _to_numpy(value)
    except (TypeError, ValueError) as exc:
        raise err(
            f"{where}: 'feat' is not a numeric matrix ({exc})", "store an N x D float array"
        ) from exc
    if arr.ndim != 2 or arr.dtype.kind not in "fiu":
        raise err(
            f"{where}: 'feat' must be an N x D numeric matrix, got shape {arr.shape} dtype {arr.dtype}",
            "store one pooled feature vector per row",
        )
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32 if arr.dtype.kind == "f" else np.float64)
    return arr


def _ids_for_saving(ids: Any, n: int, key: str, where: Path) -> np.ndarray | list[str]:
    """Integer / float ids become numpy arrays (int64 / float64), anything else a list of str."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    if not isinstance(ids, np.ndarray):
        values = list(ids)
        _check_len(len(values), n, key, where)
        if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
            return np.asarray(values, dtype=np.int64)
        if all(isinstance(v, float | np.floating) for v in values):
            return np.asarray(values, dtype=np.float64)
        return [str(v) for v in values]
    if ids.ndim != 1:
        raise DataError(f"{where}: '{key}' must be 1-D, got shape {ids.shape}", "one id per row")
    _check_len(len(ids), n, key, where)
    if ids.dtype.kind in "iub":
        return ids.astype(np.int64)
    if ids.dtype.kind == "f":
        return ids.astype(np.float64)
    return [str(v) for v in ids.tolist()]


def _ids_loaded(value: Any, n: int, key: str, where: Path) -> np.ndarray | list:
    if isinstance(value, torch.Tensor | np.ndarray):
        arr = _to_numpy(value)
        if arr.ndim != 1:
            raise DataError(
                f"{where}: '{key}' must be 1-D, got shape {arr.shape}", "one id per feature row"
            )
        _check_len(len(arr), n, key, where)
        return arr
    try:
        values = list(value)
    except TypeError as exc:
        raise DataError(
            f"{where}: '{key}' is a {type(value).__name__}, not a sequence",
            "one id per feature row",
        ) from exc
    _check_len(len(values), n, key, where)
    return values


def _boxes_array(value: Any, n: int, where: Path) -> np.ndarray:
    if isinstance(value, list | tuple):  # rows without a box may be None
        value = [[np.nan] * 4 if row is None else row for row in value]
    try:
        arr = _to_numpy(value).astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{where}: 'boxes' is not a numeric N x 4 array ({exc})", "NaN where no box"
        ) from exc
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise DataError(
            f"{where}: 'boxes' must be N x 4, got shape {arr.shape}",
            "one box per row, NaN where a row has no box",
        )
    _check_len(arr.shape[0], n, "boxes", where)
    return arr
