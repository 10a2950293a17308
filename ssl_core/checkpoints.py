"""Load an encoder's trunk weights from any checkpoint a researcher is likely to have.

Formats (detected automatically; `format=` overrides):

- ``moco``: official MoCo v1/v2 ``{'epoch', 'arch', 'state_dict', 'optimizer'}`` with
  keys ``module.encoder_q.*`` (``module.`` only when trained with DataParallel/DDP);
  the projection head ``fc.*``, the key encoder and the queue are ignored.
- ``torchvision``: a supervised torchvision ResNet state dict (trunk + ``fc.*``),
  possibly wrapped in ``{'state_dict': ...}`` or ``{'model': ...}``.
- ``plain``: trunk keys under an optional prefix (``trunk.``, ``backbone.``,
  ``module.``, VISSL's ``trunk._feature_blocks.``), as PIRL-style exports have.
- ``sslc``: sslc's own training checkpoints (``sslc_format: 1``, ``encoder`` config,
  ``encoder_state_dict``).

``prefix_map`` (``{"old.": "new."}``) rewrites key prefixes before detection, for
anything else. Files are always read with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ssl_core.errors import CheckpointError, ComponentError
from ssl_core.interfaces import Encoder
from ssl_core.registry import Registry

FORMATS: tuple[str, ...] = ("auto", "moco", "torchvision", "plain", "sslc")
SSLC_FORMAT_VERSION = 1

#: (bottleneck?, blocks per stage) -> torchvision architecture name
_ARCH_BY_BLOCKS: dict[tuple[bool, tuple[int, ...]], str] = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
    (True, (3, 8, 36, 3)): "resnet152",
}
_MOCO_Q = re.compile(r"^(module\.)?encoder_q\.")
_OPTIONS_HINT = (
    "pass --format auto|moco|torchvision|plain|sslc, or --prefix-map OLD=NEW to rename key "
    "prefixes onto torchvision trunk keys (conv1.weight, layer1.0.conv1.weight, ...), "
    "and --arch when the architecture cannot be inferred; see docs/probing.md"
)


@dataclass
class LoadReport:
    """What a checkpoint load did: which keys were taken, missing, unexpected or ignored."""

    path: str
    format: str
    arch: str
    encoder_config: dict[str, Any]
    prefix: str
    loaded: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self, limit: int = 8) -> list[str]:
        """A short human summary (the CLI prints it)."""
        out = [f"loaded {self.loaded} tensors from {self.path} "
               f"(format {self.format}, arch {self.arch}"
               + (f", prefix {self.prefix!r} stripped" if self.prefix else "") + ")"]
        for name, keys in (("missing", self.missing), ("unexpected", self.unexpected),
                           ("ignored", self.ignored)):
            if keys:
                shown = ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)"
                                                   if len(keys) > limit else "")
                out.append(f"{name} keys ({len(keys)}): {shown}")
        return out


def checkpoint_digest(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """sha256 of the file's bytes: the identity of its weights for the feature cache."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(chunk_size):
                h.update(chunk)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}",
                              "check the --checkpoint path") from None
    return h.hexdigest()


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """torch.load with weights_only=True, turning every failure into a CheckpointError."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}", "check the --checkpoint path")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        refused = _unsafe_globals(p)
        if refused:
            raise CheckpointError(
                f"checkpoint {p} holds Python objects that weights_only loading refuses: "
                f"{', '.join(refused[:5])}",
                "if you trust the file, load it yourself with weights_only=False and re-save "
                "only its tensors, e.g. torch.save({'state_dict': ckpt['state_dict']}, "
                "'clean.pth')",
            ) from None
        raise CheckpointError(
            f"{p} is not a readable torch checkpoint ({type(exc).__name__}: {first})",
            "pass a file written by torch.save (a .pth/.pt/.pth.tar state dict or checkpoint)",
        ) from None


def _unsafe_globals(path: Path) -> list[str]:
    """The non-tensor globals a pickle needs (empty when the file is not a torch pickle)."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:
        return []


def apply_prefix_map(state: Mapping[str, Any], prefix_map: Mapping[str, str]) -> dict[str, Any]:
    """Rename keys: the longest matching OLD prefix is replaced by NEW; others are kept."""
    olds = sorted(prefix_map, key=len, reverse=True)
    out: dict[str, Any] = {}
    for key, value in state.items():
        for old in olds:
            if key.startswith(old):
                key = prefix_map[old] + key[len(old):]
                break
        out[key] = value
    return out


def _tensor_dict(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _unwrap(obj: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The state dict inside a checkpoint and the top-level keys that were not it."""
    for wrapper in ("state_dict", "model", "model_state_dict"):
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping) and _tensor_dict(inner):
            return _tensor_dict(inner), [str(k) for k in obj if k != wrapper]
    tensors = _tensor_dict(obj)
    return tensors, [str(k) for k in obj if k not in tensors]


def _trunk_prefix(keys: set[str]) -> str | None:
    """The prefix P with P+'conv1.weight' and P+'layer1.0.conv1.weight' both present.

    '' wins when present (the keys are already trunk keys), then the shortest prefix.
    """
    found = []
    for k in keys:
        if k.endswith("conv1.weight"):
            p = k[: -len("conv1.weight")]
            if p + "layer1.0.conv1.weight" in keys:
                found.append(p)
    if not found:
        return None
    return min(found, key=lambda p: (p != "", len(p), p))


def _strip(state: Mapping[str, torch.Tensor], prefix: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Keys under `prefix`, prefix removed, minus a classifier/projection head `fc.*`."""
    trunk: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for k, v in state.items():
        if not k.startswith(prefix):
            ignored.append(k)
            continue
        short = k[len(prefix):]
        if short.startswith("fc."):
            ignored.append(k)
        else:
            trunk[short] = v
    return trunk, ignored


def infer_arch(state: Mapping[str, torch.Tensor]) -> tuple[str | None, dict[str, Any]]:
    """ResNet depth from block counts (bottleneck = layer1.0.conv3), small_input from conv1."""
    bottleneck = "layer1.0.conv3.weight" in state
    blocks = []
    for stage in range(1, 5):
        idx = {int(m.group(1)) for k in state if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
        blocks.append(max(idx) + 1 if idx else 0)
    arch = _ARCH_BY_BLOCKS.get((bottleneck, tuple(blocks)))
    if arch is None and any(blocks):
        # a partial trunk (stages missing): the first architecture consistent with what is there
        arch = next((name for (bn, counts), name in _ARCH_BY_BLOCKS.items() if bn == bottleneck
                     and all(b in (0, c) for b, c in zip(blocks, counts, strict=True))), None)
    params: dict[str, Any] = {}
    conv1 = state.get("conv1.weight")
    if isinstance(conv1, torch.Tensor) and conv1.dim() == 4 and conv1.shape[-1] == 3:
        params["small_input"] = True
    return arch, params


@dataclass
class _Parsed:
    format: str
    trunk: dict[str, torch.Tensor]
    prefix: str
    ignored: list[str]
    arch: str | None = None
    params: dict[str, Any] = field(default_factory=dict)


def _unknown(path: Path, obj: Any, detail: str) -> CheckpointError:
    if isinstance(obj, Mapping):
        keys = list(obj)[:12]
        shown = ", ".join(map(str, keys)) + (", ..." if len(obj) > 12 else "")
        what = f"top-level keys: {shown}"
    else:
        what = f"it holds a {type(obj).__name__}, not a dict"
    return CheckpointError(
        f"unknown checkpoint layout in {path}: {detail}; {what}; "
        f"known formats: {', '.join(FORMATS[1:])}",
        _OPTIONS_HINT,
    )


def parse_checkpoint(obj: Any, path: Path, format: str = "auto",
                     prefix_map: Mapping[str, str] | None = None) -> _Parsed:
    """Find the trunk's state dict (torchvision key names) inside a loaded checkpoint."""
    if format not in FORMATS:
        raise CheckpointError(f"unknown checkpoint format {format!r}",
                              f"use one of: {', '.join(FORMATS)}")
    if not isinstance(obj, Mapping):
        raise _unknown(path, obj, "not a dict")
    if format == "sslc" or (format == "auto" and "sslc_format" in obj):
        version = obj.get("sslc_format")
        if version != SSLC_FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: sslc_format is {version!r}, this sslc reads format {SSLC_FORMAT_VERSION}",
                "use the sslc version that wrote it, or pass --format to read it as another layout")
        enc = obj.get("encoder")
        state = obj.get("encoder_state_dict")
        if not isinstance(enc, Mapping) or not isinstance(enc.get("type"), str) \
                or not isinstance(state, Mapping):
            raise _unknown(path, obj, "an sslc checkpoint needs 'encoder' {type: ...} and "
                                      "'encoder_state_dict'")
        trunk = _tensor_dict(state)
        if prefix_map:
            trunk = apply_prefix_map(trunk, prefix_map)
        params = {k: v for k, v in enc.items() if k != "type"}
        return _Parsed("sslc", trunk, "", [], enc["type"], params)

    state, outer = _unwrap(obj)
    if not state:
        raise _unknown(path, obj, "no tensors found")
    if prefix_map:
        state = apply_prefix_map(state, prefix_map)
    arch = obj.get("arch") if isinstance(obj.get("arch"), str) else None
    keys = set(state)
    has_moco = any(_MOCO_Q.match(k) for k in keys)
    if format == "moco" or (format == "auto" and has_moco):
        if not has_moco:
            raise _unknown(path, obj, "format moco needs keys 'module.encoder_q.*' or "
                                      "'encoder_q.*', found none")
        prefix = "module.encoder_q." if any(k.startswith("module.encoder_q.") for k in keys) \
            else "encoder_q."
        trunk, ignored = _strip(state, prefix)
        return _Parsed("moco", trunk, prefix, ignored, arch)

    trunk_prefix = _trunk_prefix(keys)
    if trunk_prefix is None:
        sample = ", ".join(sorted(keys)[:6])
        raise _unknown(path, obj, f"no ResNet trunk keys (conv1.weight with layer1.0.conv1.weight "
                                  f"under one prefix) among {len(keys)} tensors such as {sample}")
    if format == "auto":
        format = "torchvision" if trunk_prefix == "" and "fc.weight" in keys else "plain"
    trunk, ignored = _strip(state, trunk_prefix)
    return _Parsed(format, trunk, trunk_prefix, ignored, arch)


def _align(trunk: dict[str, torch.Tensor], encoder_keys: set[str]) -> dict[str, torch.Tensor]:
    """Put the encoder's own prefix on trunk keys if its modules live under one."""
    if "conv1.weight" in encoder_keys or "conv1.weight" not in trunk:
        return trunk
    for k in encoder_keys:
        if k.endswith("conv1.weight") and k[: -len("conv1.weight")] + "layer1.0.conv1.weight" \
                in encoder_keys:
            p = k[: -len("conv1.weight")]
            return {p + key: v for key, v in trunk.items()}
    return trunk


def _is_optional(key: str) -> bool:
    # BN step counters are absent from checkpoints written by old PyTorch versions
    return key.endswith("num_batches_tracked")


def load_encoder(
    path: str | os.PathLike[str],
    *,
    format: str = "auto",
    arch: str | None = None,
    prefix_map: Mapping[str, str] | None = None,
    strict: bool = True,
    encoder_params: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> tuple[Encoder, LoadReport]:
    """Build the registered encoder the checkpoint was trained with and load its trunk.

    `arch` (a registered encoder name) overrides the architecture from the checkpoint or
    inferred from its shapes; `encoder_params` override inferred parameters. With
    `strict`, any trunk tensor the checkpoint lacks is an error; unexpected and ignored
    keys are only reported.
    """
    p = Path(path)
    parsed = parse_checkpoint(read_checkpoint(p), p, format, prefix_map)
    inferred_arch, inferred_params = infer_arch(parsed.trunk)
    chosen = arch or parsed.arch or inferred_arch
    if chosen is None:
        raise CheckpointError(
            f"cannot infer the architecture of {p} (format {parsed.format})",
            "pass --arch with a registered encoder name, e.g. --arch resnet50")
    if registry is None:
        from ssl_core.plugins import get_registry

        registry = get_registry()
    spec = registry.get("encoder", chosen, where="--arch")
    params: dict[str, Any] = dict(parsed.params)
    if parsed.format != "sslc":
        params.update({k: v for k, v in inferred_params.items() if k in spec.params.model_fields})
    params.update(encoder_params or {})
    config = {"type": chosen, **params}
    try:
        encoder = registry.create("encoder", config, where="--arch")
    except ComponentError as exc:
        raise CheckpointError(f"cannot build encoder {chosen!r} for {p}: {exc.message}",
                              exc.hint or _OPTIONS_HINT) from None

    expected = encoder.state_dict()
    trunk = _align(parsed.trunk, set(expected))
    mismatched = [f"{k} {tuple(v.shape)} vs encoder {tuple(expected[k].shape)}"
                  for k, v in trunk.items() if k in expected and v.shape != expected[k].shape]
    if mismatched:
        raise CheckpointError(
            f"{p}: {len(mismatched)} tensor shapes do not match encoder {chosen!r}: "
            + "; ".join(mismatched[:4]) + (" ..." if len(mismatched) > 4 else ""),
            f"the checkpoint was trained with another architecture (inferred "
            f"{inferred_arch or 'unknown'}{', small_input' if inferred_params else ''}); "
            "pass the right --arch",
        )
    usable = {k: v for k, v in trunk.items() if k in expected}
    missing = [k for k in expected if k not in usable and not _is_optional(k)]
    unexpected = sorted(k for k in trunk if k not in expected)
    report = LoadReport(path=str(p), format=parsed.format, arch=chosen, encoder_config=config,
                        prefix=parsed.prefix, loaded=len(usable), missing=missing,
                        unexpected=unexpected, ignored=sorted(parsed.ignored))
    if not usable:
        raise CheckpointError(
            f"{p}: none of its {len(parsed.trunk)} tensors match encoder {chosen!r} "
            f"(format {parsed.format}, e.g. {', '.join(sorted(parsed.trunk)[:4])})",
            _OPTIONS_HINT)
    if strict and missing:
        raise CheckpointError(
            f"{p}: {len(missing)} trunk tensors of {chosen!r} are missing from the checkpoint "
            f"(format {parsed.format}): {', '.join(missing[:6])}"
            + (" ..." if len(missing) > 6 else ""),
            "pick the right --format/--prefix-map/--arch, or load non-strictly (--no-strict) "
            "to keep the missing tensors at their random initialisation",
        )
    encoder.load_state_dict(usable, strict=False)
    encoder.eval()
    return encoder, report
