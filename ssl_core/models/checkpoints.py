"""Load an encoder's trunk weights from any checkpoint a researcher is likely to have.

The core reads the file (always `weights_only=True`), opens `state_dict`-style
wrappers or flattens nested mappings, and applies `prefix_map` (`{"old.": "new."}`).
Then, with `format="auto"`, each registered CheckpointFormat (a training framework's
layout, registered by the plugin that knows it) is asked to pick the trunk's tensors;
when none claims the file it is read as `plain`: the tensors as they are. Finally
each registered Encoder's `anchor_keys` locate the trunk under any prefix and its
`infer_params` tells which encoder (and which parameters) the weights fit.

The core's own layouts are `plain` and `sslc` (sslc's training checkpoints:
`sslc_format`, `encoder` config, `encoder_state_dict`). Files that hold several models
(DINO's `teacher` and `student`, MoCo v3's `base_encoder` and `momentum_encoder`) are
narrowed to one by a key (`checkpoint_key`; by default the one the framework evaluates,
see DEFAULT_CHECKPOINT_KEYS). safetensors files are read as well as torch.save files.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ssl_core.errors import CheckpointError, ComponentError
from ssl_core.interfaces import Encoder
from ssl_core.plugin.registry import CORE_CHECKPOINT_FORMATS, Registry, checkpoint_formats
from ssl_core.results.layout import CHECKPOINT

#: the version of sslc's own checkpoint layout, written by the trainer and `sslc export`
SSLC_FORMAT_VERSION = 1
_WRAPPERS = ("state_dict", "model", "model_state_dict")
#: when a file holds several copies of a network, the one its framework evaluates: DINO,
#: DINOv2, iBOT and EsViT evaluate the `teacher`; MoCo v3 its `base_encoder`
DEFAULT_CHECKPOINT_KEYS: tuple[str, ...] = ("teacher", "base_encoder")


class _AttributeDict(dict):  # type: ignore[type-arg]
    """Lightning's hyperparameter dict (a dict with attribute access), read as a plain dict:
    weights-only loading fills only exact dicts."""

    def __new__(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[misc]
        return {}


#: the non-tensor objects the field's checkpoints carry beside their weights, allowed for
#: weights-only loading: DINO / timm / MoCo save their `argparse.Namespace` args, Lightning
#: (solo-learn, lightly) its AttributeDict hyperparameters and paths. Nothing else is
#: unpickled: a file needing any other global is refused.
HARMLESS_GLOBALS: tuple[Any, ...] = (
    argparse.Namespace,
    (pathlib.PosixPath, "pathlib.PosixPath"),
    (pathlib.PurePosixPath, "pathlib.PurePosixPath"),
    (pathlib.PosixPath, "pathlib._local.PosixPath"),  # Python >= 3.13 pickles paths so
    (pathlib.PurePosixPath, "pathlib._local.PurePosixPath"),
    (_AttributeDict, "lightning.fabric.utilities.data.AttributeDict"),
    (_AttributeDict, "lightning_fabric.utilities.data.AttributeDict"),
    (_AttributeDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (_AttributeDict, "lightning.pytorch.utilities.parsing.AttributeDict"),
)
_HARMLESS_NAMES = frozenset(
    g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in HARMLESS_GLOBALS)
_OPTIONS_HINT = (
    "pass --format (see `sslc plugins` for the checkpoint formats), --prefix-map OLD=NEW "
    "to rename key prefixes onto the encoder's own keys, and --arch when the architecture "
    "cannot be inferred; see docs/probing.md"
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


class UnreadableTorchFile(Exception):
    """Why `load_weights_only` could not read a file; each caller words it for its users.

    `reason` is "not_torch" (not a torch.save file at all), "refused" (it needs the
    globals in `refused`, which weights-only loading does not allow) or "damaged".
    """

    def __init__(self, reason: str, detail: str = "", refused: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail
        self.refused = list(refused)


def load_weights_only(path: Path, safe_globals: Sequence[Any] = (),
                      allowed: Callable[[str], bool] = lambda name: False) -> Any:
    """The one place sslc unpickles a file: `torch.load(weights_only=True)`, with only
    `safe_globals` allowed beyond tensors; failures are diagnosed as UnreadableTorchFile.

    `allowed(name)` says which globals a refusal should not blame (those `safe_globals`
    covers), so the caller can name what is really missing."""
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds on junk
        if not _looks_like_torch_file(path):
            raise UnreadableTorchFile("not_torch") from None
        refused = [g for g in _unsafe_globals(path) if not allowed(g)]
        if refused:
            raise UnreadableTorchFile("refused", refused=refused) from None
        raise UnreadableTorchFile("damaged", f"{type(exc).__name__}: {_first_line(exc)}") from None


def checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """The checkpoint file `path` names: a file, or a run's model directory
    (`RUN_DIR/models/NAME`, as `sslc run` writes it) holding its checkpoint."""
    p = Path(path).expanduser()
    if p.is_dir():
        inside = p / CHECKPOINT
        if inside.is_file():
            return inside
        raise CheckpointError(f"{p} is a directory, not a checkpoint file, and holds no {CHECKPOINT}",
                              "pass a checkpoint file (e.g. checkpoint.pth.tar), or "
                              "RUN_DIR/models/<model name> of a run that trained the model")
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}", "check the path")
    return p


def _is_safetensors(path: Path) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 1 << 27


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is a damaged safetensors file ({exc})",
                              "re-download or re-save it; a partial copy reads like this") from None


def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """A checkpoint's contents (weights only), every failure a CheckpointError naming it:
    training checkpoints and checkpoints to probe both come through here. safetensors
    files are read too; torch files may carry the HARMLESS_GLOBALS besides tensors."""
    p = checkpoint_file(path)
    if _is_safetensors(p):
        return _read_safetensors(p)
    try:
        return load_weights_only(p, HARMLESS_GLOBALS, lambda name: name in _HARMLESS_NAMES)
    except UnreadableTorchFile as err:
        if err.reason == "not_torch":
            what = "it is empty" if p.stat().st_size == 0 else "it was not written by torch.save"
            raise CheckpointError(f"{p} is not a torch checkpoint ({what})",
                                  "pass a file written by torch.save (.pth, .pt, .pth.tar) or a "
                                  ".safetensors file") from None
        if err.reason == "refused":
            raise CheckpointError(
                f"checkpoint {p} holds Python objects that weights_only loading refuses: "
                f"{', '.join(err.refused[:5])}",
                "if you trust the file, load it yourself with weights_only=False and re-save "
                "only its tensors, e.g. torch.save({'state_dict': ckpt['state_dict']}, "
                "'clean.pth')",
            ) from None
        raise CheckpointError(f"{p} is a damaged torch file ({err.detail})",
                              "re-download or re-save it; a partial copy reads like this") from None


def _first_line(exc: BaseException) -> str:
    """The informative line of a torch.load error (weights-only errors lead with a banner)."""
    text = str(exc).strip() or type(exc).__name__
    lines = [ln for ln in text.splitlines() if "WeightsUnpickler error" in ln] or text.splitlines()
    return lines[0].strip()[:200]


def _looks_like_torch_file(path: Path) -> bool:
    """torch.save writes a zip archive (or, before 1.6, a pickle starting with 0x80)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


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


def _flatten(obj: Mapping[Any, Any], prefix: str = "", depth: int = 8) -> dict[str, torch.Tensor]:
    """Every tensor in nested mappings, keyed by its dotted path (`a.b.c.weight`)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            out[key] = v
        elif isinstance(v, Mapping) and depth > 0:
            out.update(_flatten(v, key + ".", depth - 1))
    return out


def unwrap(obj: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict inside a checkpoint and the file's other (non-tensor) top-level entries.

    A `state_dict` / `model` / `model_state_dict` wrapper is opened; otherwise every
    nested mapping is flattened, so trunks deep inside (VISSL's
    `classy_state_dict.base_model.model.trunk...`) are found by their keys.
    """
    for wrapper in _WRAPPERS:
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping):
            tensors = _flatten(inner)
            if tensors:
                return tensors, {str(k): v for k, v in obj.items() if k != wrapper}
    tensors = _flatten(obj)
    meta = {str(k): v for k, v in obj.items() if not isinstance(v, torch.Tensor | Mapping)}
    return tensors, meta


def split_arch(arch: str) -> tuple[str, dict[str, Any]]:
    """`TYPE:NAME` (e.g. `timm:vit_small_patch16_224`) is encoder TYPE with its `name`
    parameter NAME; a bare name is an encoder with no parameters given."""
    kind, sep, name = arch.partition(":")
    return (kind, {"name": name}) if sep and name else (kind, {})


def select_key(state: Mapping[str, torch.Tensor], key: str | None
               ) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of one of the models a file holds, and the prefix they sat under.

    `key` names a path component (`teacher`, `student`, `base_encoder`): the tensors
    under its shallowest occurrence are kept, that prefix removed. Without `key`, the
    first of DEFAULT_CHECKPOINT_KEYS the file has is used, or everything when none."""
    wanted = (key,) if key else DEFAULT_CHECKPOINT_KEYS
    for name in wanted:
        prefixes = set()
        for k in state:
            parts = k.split(".")
            if name in parts[:-1]:
                prefixes.add(".".join(parts[: parts.index(name) + 1]) + ".")
        if prefixes:
            prefix = min(prefixes, key=lambda q: (q.count("."), len(q), q))
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, prefix
    if key:
        tops = sorted({k.split(".")[0] for k in state})
        shown = ", ".join(tops[:12]) + (", ..." if len(tops) > 12 else "")
        raise CheckpointError(f"the checkpoint holds no {key!r} entry (its top-level keys: "
                              f"{shown})", "pass --checkpoint-key with one of those keys, "
                              "or leave it out")
    return dict(state), ""


def _locate_by_keys(state: Mapping[str, torch.Tensor], own: Sequence[str]) -> tuple[str, int]:
    """The prefix under which most of an encoder's own keys sit in `state` (then shortest)."""
    if not own:
        return "", 0
    first = own[0]
    found = {k[: -len(first)] for k in state if k.endswith(first)} | {""}
    keys = set(state)
    scored = [(sum(p + k in keys for k in own), p) for p in found]
    best = max(scored, key=lambda sp: (sp[0], -len(sp[1]), sp[1] == ""))
    return best[1], best[0]


@dataclass
class _Trunk:
    """Where a registered encoder's trunk sits in a state dict."""

    encoder: str
    params: dict[str, Any]
    prefix: str
    state: dict[str, torch.Tensor]
    ignored: list[str]


def _prefixes(keys: set[str], anchors: tuple[str, ...]) -> list[str]:
    """Prefixes P with P + every anchor present: '' first, then the shortest."""
    if not anchors:
        return [""]
    first = anchors[0]
    found = {k[: -len(first)] for k in keys if k.endswith(first)}
    found = {p for p in found if all(p + a in keys for a in anchors[1:])}
    return sorted(found, key=lambda p: (p != "", len(p), p))


def _strip(state: Mapping[str, torch.Tensor], prefix: str, heads: tuple[str, ...]
           ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Keys under `prefix`, prefix removed, minus the encoder's heads (e.g. a classifier)."""
    trunk: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for k, v in state.items():
        short = k[len(prefix):] if k.startswith(prefix) else None
        if short is None or short.startswith(heads):
            ignored.append(k)
        else:
            trunk[short] = v
    return trunk, ignored


def find_trunk(state: Mapping[str, torch.Tensor], registry: Registry, arch: str | None = None,
               hint_arch: str | None = None) -> _Trunk | None:
    """The registered encoder whose trunk `state` holds, its prefix and inferred params.

    `arch` restricts the search to one encoder (its anchors, or the whole state when it
    declares none); `hint_arch` (a checkpoint's own `arch` entry) is tried first.
    """
    names = [arch] if arch else registry.names("encoder")
    if hint_arch in names:
        names = [hint_arch, *[n for n in names if n != hint_arch]]
    keys = set(state)
    best: _Trunk | None = None
    for name in names:
        cls = registry.get("encoder", name, where="--arch").cls
        anchors = tuple(getattr(cls, "anchor_keys", ()))
        heads = tuple(getattr(cls, "head_prefixes", ()))
        for prefix in _prefixes(keys, anchors):
            trunk, ignored = _strip(state, prefix, heads)
            infer = getattr(cls, "infer_params", None)
            params = infer(trunk) if callable(infer) else None
            if params is None and not arch:
                continue
            found = _Trunk(name, params or {}, prefix, trunk, ignored)
            if best is None or (prefix != "", len(prefix)) < (best.prefix != "", len(best.prefix)):
                best = found
            break
    return best


@dataclass
class _Parsed:
    format: str
    state: dict[str, torch.Tensor]
    prefix: str
    meta: dict[str, Any]
    encoder_config: dict[str, Any] | None = None  # sslc's own files say what they hold
    dropped: list[str] = field(default_factory=list)  # keys the format did not pick


def _unknown(path: Path, obj: Any, detail: str, registry: Registry) -> CheckpointError:
    if isinstance(obj, Mapping):
        keys = list(obj)[:12]
        shown = ", ".join(map(str, keys)) + (", ..." if len(obj) > 12 else "")
        what = f"top-level keys: {shown}"
    else:
        what = f"it holds a {type(obj).__name__}, not a dict"
    return CheckpointError(
        f"unknown checkpoint layout in {path}: {detail}; {what}; "
        f"known formats: {', '.join(checkpoint_formats(registry)[1:])}",
        _OPTIONS_HINT,
    )


def parse_checkpoint(obj: Any, path: Path, registry: Registry, format: str = "auto",
                     prefix_map: Mapping[str, str] | None = None,
                     checkpoint_key: str | None = None) -> _Parsed:
    """The tensors a checkpoint's layout says belong to the encoder (a prefix removed);
    `checkpoint_key` picks one of several models a file holds (see `select_key`)."""
    known = checkpoint_formats(registry)
    if format not in known:
        raise CheckpointError(f"unknown checkpoint format {format!r}",
                              f"use one of: {', '.join(known)}")
    if not isinstance(obj, Mapping):
        raise _unknown(path, obj, "not a dict", registry)
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
                                      "'encoder_state_dict'", registry)
        trunk = _flatten(state)
        if prefix_map:
            trunk = apply_prefix_map(trunk, prefix_map)
        return _Parsed("sslc", trunk, "", {}, dict(enc))

    state, meta = unwrap(obj)
    if not state:
        raise _unknown(path, obj, "no tensors found", registry)
    if prefix_map:
        state = apply_prefix_map(state, prefix_map)
    try:  # a --prefix-map steers by hand: no default key then
        chosen, key_prefix = (dict(state), "") if prefix_map and not checkpoint_key \
            else select_key(state, checkpoint_key)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc.message}", exc.hint) from None
    outside = [k for k in state if not k.startswith(key_prefix)] if key_prefix else []
    names = registry.names("checkpoint-format") if format == "auto" else \
        ([format] if format not in CORE_CHECKPOINT_FORMATS else [])
    for name in names:
        fmt = registry.create("checkpoint-format", {"type": name}, where="--format")
        picked = fmt.select(chosen, meta)
        if picked is not None:
            under = key_prefix + picked[1]  # a format may rename keys under its prefix
            return _Parsed(name, picked[0], under, meta,
                           dropped=[k for k in state if not k.startswith(under)])
        if format != "auto":
            raise _unknown(path, obj, f"it is not in the {name!r} layout", registry)
    return _Parsed("plain", chosen, key_prefix, meta, dropped=outside)


def _build(registry: Registry, arch: str, params: Mapping[str, Any], path: Path) -> Encoder:
    try:
        encoder: Encoder = registry.create("encoder", {"type": arch, **params}, where="--arch")
    except ComponentError as exc:
        raise CheckpointError(f"cannot build encoder {arch!r} for {path}: {exc.message}",
                              exc.hint or _OPTIONS_HINT) from None
    return encoder


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
    checkpoint_key: str | None = None,
) -> tuple[Encoder, LoadReport]:
    """Build the registered encoder the checkpoint was trained with and load its trunk.

    `arch` (a registered encoder name, or `TYPE:NAME` for an encoder's `name` parameter,
    e.g. `timm:vit_small_patch16_224`) overrides the architecture from the checkpoint or
    inferred from its keys; `encoder_params` override inferred parameters. When the
    named encoder's anchors do not find its trunk, the encoder is built first and its
    own keys locate the trunk under any prefix. `checkpoint_key` picks one of several
    models a file holds (`teacher`, `student`, ...). With `strict`, any trunk tensor the
    checkpoint lacks is an error; unexpected and ignored keys are only reported.
    """
    if registry is None:
        from ssl_core.plugin.host import get_registry

        registry = get_registry()
    arch_params: dict[str, Any] = {}
    if arch:
        arch, arch_params = split_arch(arch)
    given = {**arch_params, **(encoder_params or {})}
    p = checkpoint_file(path)
    parsed = parse_checkpoint(read_checkpoint(p), p, registry, format, prefix_map,
                              checkpoint_key)
    params: dict[str, Any] = {}
    located: Encoder | None = None
    if parsed.encoder_config is not None:  # sslc's own file names its encoder
        chosen = arch or parsed.encoder_config["type"]
        params = {k: v for k, v in parsed.encoder_config.items() if k != "type"}
        trunk, prefix, ignored = parsed.state, "", []
    else:
        hint = parsed.meta.get("arch") if isinstance(parsed.meta.get("arch"), str) else None
        found = find_trunk(parsed.state, registry, arch=arch, hint_arch=hint)
        if arch and (found is None or not found.params):  # named, but not inferred
            located = _build(registry, arch, given, p)
            own_prefix, hits = _locate_by_keys(parsed.state, list(located.state_dict()))
            if hits:
                heads = tuple(getattr(type(located), "head_prefixes", ()))
                state, dropped = _strip(parsed.state, own_prefix, heads)
                found = _Trunk(arch, {}, own_prefix, state, dropped)
            elif found is None:
                located = None
        if found is None:
            sample = ", ".join(sorted(parsed.state)[:6])
            raise CheckpointError(
                f"cannot tell which encoder {p} holds (format {parsed.format}): no registered "
                f"encoder recognises its {len(parsed.state)} tensors, such as {sample}",
                _OPTIONS_HINT)
        chosen, params = found.encoder, dict(found.params)
        trunk, prefix = found.state, parsed.prefix + found.prefix
        ignored = [parsed.prefix + k for k in found.ignored] + parsed.dropped
    spec = registry.get("encoder", chosen, where="--arch")
    params = {k: v for k, v in params.items() if k in spec.params.model_fields}
    params.update(given)
    config = {"type": chosen, **params}
    encoder = located or _build(registry, chosen, params, p)

    expected = encoder.state_dict()
    mismatched = [f"{k} {tuple(v.shape)} vs encoder {tuple(expected[k].shape)}"
                  for k, v in trunk.items() if k in expected and v.shape != expected[k].shape]
    if mismatched:
        raise CheckpointError(
            f"{p}: {len(mismatched)} tensor shapes do not match encoder {chosen!r} {params}: "
            + "; ".join(mismatched[:4]) + (" ..." if len(mismatched) > 4 else ""),
            "the checkpoint was trained with another architecture or parameters; "
            "pass the right --arch (or let sslc infer it)",
        )
    usable = {k: v for k, v in trunk.items() if k in expected}
    missing = [k for k in expected if k not in usable and not _is_optional(k)]
    unexpected = sorted(k for k in trunk if k not in expected)
    report = LoadReport(path=str(p), format=parsed.format, arch=chosen, encoder_config=config,
                        prefix=prefix, loaded=len(usable), missing=missing,
                        unexpected=unexpected, ignored=sorted(ignored))
    if not usable:
        raise CheckpointError(
            f"{p}: none of its {len(trunk)} tensors match encoder {chosen!r} "
            f"(format {parsed.format}, e.g. {', '.join(sorted(trunk)[:4])})",
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
