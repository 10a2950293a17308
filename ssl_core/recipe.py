"""The recipe format: YAML -> validated Recipe, with extends, profiles and --set overrides.

Structure is checked by the pydantic models below; each component mapping
(`{type: name, ...params}`) is then checked by the params model its plugin registered,
so a misspelled parameter is an error with its YAML path and line, never ignored.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ssl_core.errors import RecipeError
from ssl_core.registry import Registry
from ssl_core.yamlio import Location, load_yaml, parse_scalar

Component = dict[str, Any]  # {type: <registered name>, **params}; params checked by the plugin
DEFAULT_PROFILE = "synthetic"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrainConfig(Strict):
    """How one model is pretrained. Defaults follow MoCo v2 (reference-facts section 2)."""

    dataset: str = Field(description="name of an entry in `datasets` to draw images from")
    pair_sampler: Component = Field(description="pair-sampler component: what counts as a positive pair")
    objective: Component = Field(description="objective component: the loss and its state")
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(256, ge=1, description="global batch size")
    lr: float = Field(0.03, gt=0, description="initial learning rate (MoCo v2: 0.03 for batch 256)")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    num_workers: int = Field(2, ge=0, description="DataLoader worker processes")
    precision: Literal["auto", "fp32", "amp"] = Field(
        "auto", description="auto = mixed precision on CUDA, fp32 on CPU")
    checkpoint_every: int = Field(50, ge=1, description="save a resumable checkpoint every N steps")
    max_steps: int | None = Field(None, ge=1, description="stop after N steps (smoke runs)")
    seed: int = 0


class CheckpointRef(Strict):
    path: Path
    format: Literal["auto", "moco", "torchvision", "plain", "sslc"] = "auto"
    prefix_map: dict[str, str] = Field(default_factory=dict)


class ModelConfig(Strict):
    """An encoder, optionally pretrained here (`train`) or loaded (`checkpoint`)."""

    encoder: Component
    train: TrainConfig | None = None
    checkpoint: CheckpointRef | None = None
    init_seed: int = Field(0, description="seed of the random initialisation")

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        if self.train is not None and self.checkpoint is not None:
            raise ValueError("give either `train` or `checkpoint`, not both")
        return self


class ProbeSettings(Strict):
    top_k: list[int] = Field(default_factory=lambda: [10, 25])
    batch_size: int = Field(64, ge=1)
    num_workers: int = Field(2, ge=0)


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="names the run directory")
    description: str = ""
    world: Component | None = Field(
        None, description="a dataset that materialises the data root (e.g. the synthetic world)")
    data_root: Path | None = Field(None, description="relative dataset roots resolve against this")
    datasets: dict[str, Component] = Field(default_factory=dict)
    models: dict[str, ModelConfig]
    probes: dict[str, Component] = Field(
        default_factory=dict,
        description="invariance probes; the key `dataset` (optional) names an entry in `datasets`")
    probe_settings: ProbeSettings = Field(default_factory=ProbeSettings)
    evaluations: dict[str, Component] = Field(default_factory=dict)
    report: dict[str, Any] = Field(
        default_factory=dict, description="`title`, and `paper`: {model: {probe: {top10, top25}}}")
    # filled in by load_recipe, not written by users:
    profile: str = DEFAULT_PROFILE
    source: str | None = None


class LoadedRecipe:
    """A validated recipe plus where each of its keys came from (for error messages)."""

    def __init__(self, recipe: Recipe, raw: dict[str, Any], lines: dict[tuple[str, ...], Location]):
        self.recipe = recipe
        self.raw = raw
        self.lines = lines

    def where(self, *path: str) -> str:
        return describe_path(path, self.lines)


def describe_path(path: Sequence[str], lines: Mapping[tuple[str, ...], Location]) -> str:
    dotted = ".".join(str(p) for p in path)
    for n in range(len(path), 0, -1):
        loc = lines.get(tuple(str(p) for p in path[:n]))
        if loc:
            return f"{dotted} ({loc[0]}:{loc[1]})"
    return dotted


def deep_merge(base: Any, overlay: Any) -> Any:
    """Overlay wins; mappings merge key by key; `null` in the overlay deletes the key."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = deep_merge(base.get(key), value)
        return out
    return copy.deepcopy(overlay)


def _load_with_extends(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[tuple[str, ...], Location]]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise RecipeError(f"recipe `extends` loops: {chain}", "remove one of the `extends` lines")
    data, lines = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping at the top level, got {type(data).__name__}",
                          "start the file with `name: ...` and the sections models:, probes:, ...")
    base_name = data.pop("extends", None)
    if base_name is None:
        return data, lines
    if not isinstance(base_name, str):
        raise RecipeError(f"{describe_path(('extends',), lines)}: must be a path to a base recipe")
    base_path = (path.parent / base_name)
    if not base_path.exists():
        raise RecipeError(f"{describe_path(('extends',), lines)}: base recipe {base_path} not found",
                          "paths in `extends` are relative to the recipe that names them")
    base, base_lines = _load_with_extends(base_path, (*seen, path))
    return deep_merge(base, data), {**base_lines, **lines}


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `--set dotted.key=value` (`=null` removes the key). Every key but the last
    must already exist."""
    if "=" not in assignment:
        raise RecipeError(f"--set {assignment!r}: expected dotted.key=value",
                          "for example --set models.moco.train.epochs=5")
    dotted, _, text = assignment.partition("=")
    keys = [k for k in dotted.strip().split(".") if k]
    if not keys:
        raise RecipeError(f"--set {assignment!r}: empty key", "for example --set models.moco.train.epochs=5")
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        if not isinstance(node, dict) or key not in node or not isinstance(node[key], dict):
            here = ".".join(keys[: i + 1])
            options = sorted(node) if isinstance(node, dict) else []
            raise RecipeError(f"--set {dotted}: the recipe has no mapping at {here!r}",
                              f"keys there: {', '.join(map(str, options)) or '(none)'}")
        node = node[key]
    value = parse_scalar(text)
    if value is None:  # as in profiles: null removes the key
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value


def _structure_error(err: ValidationError, lines: Mapping[tuple[str, ...], Location], source: str) -> RecipeError:
    problems = []
    for e in err.errors():
        path = tuple(str(p) for p in e["loc"])
        msg = {"extra_forbidden": "unknown key", "missing": "required key is missing"}.get(e["type"], e["msg"])
        if "input" in e and e["type"] not in ("missing", "extra_forbidden"):
            msg += f" (got {e['input']!r})"
        problems.append(f"{describe_path(path, lines)}: {msg}")
    return RecipeError(f"recipe {source} is invalid:\n  " + "\n  ".join(problems),
                       "see `sslc schema` or docs/recipes.md for the recipe format")


def _check_components(recipe: Recipe, registry: Registry, lines: Mapping[tuple[str, ...], Location]) -> None:
    """Validate every component mapping against its plugin's params model."""

    def check(kind: str, config: Mapping[str, Any], *path: str, drop: tuple[str, ...] = ()) -> None:
        cfg = {k: v for k, v in config.items() if k not in drop}
        registry.validate(kind, cfg, where=".".join(path), describe=lambda p: describe_path(p, lines))

    if recipe.world is not None:
        check("dataset", recipe.world, "world")
    for name, ds in recipe.datasets.items():
        check("dataset", ds, "datasets", name)
    for name, model in recipe.models.items():
        check("encoder", model.encoder, "models", name, "encoder")
        if model.train is not None:
            t = model.train
            if t.dataset not in recipe.datasets:
                raise RecipeError(
                    f"{describe_path(('models', name, 'train', 'dataset'), lines)}: no dataset named {t.dataset!r}",
                    f"datasets in this recipe: {', '.join(recipe.datasets) or '(none)'}")
            check("pair-sampler", t.pair_sampler, "models", name, "train", "pair_sampler")
            check("objective", t.objective, "models", name, "train", "objective")
    for name, probe in recipe.probes.items():
        probe_ds = probe.get("dataset")
        if probe_ds is not None and probe_ds not in recipe.datasets:
            raise RecipeError(f"{describe_path(('probes', name, 'dataset'), lines)}: no dataset named {probe_ds!r}",
                              f"datasets in this recipe: {', '.join(recipe.datasets) or '(none)'}")
        check("invariance-probe", probe, "probes", name, drop=("dataset",))
    for name, ev in recipe.evaluations.items():
        check("evaluator", ev, "evaluations", name, drop=("model",))


def load_recipe(path: str | Path, *, profile: str = DEFAULT_PROFILE, overrides: Sequence[str] = (),
                registry: Registry | None = None) -> LoadedRecipe:
    """Read, merge (extends, profile, --set) and validate a recipe."""
    path = Path(path)
    data, lines = _load_with_extends(path)
    profiles = data.pop("profiles", None) or {}
    if not isinstance(profiles, dict):
        raise RecipeError(f"{describe_path(('profiles',), lines)}: must map profile names to overlays")
    if profile != DEFAULT_PROFILE and profile not in profiles:
        raise RecipeError(f"recipe {path} has no profile {profile!r}",
                          f"profiles: {', '.join([DEFAULT_PROFILE, *profiles])}")
    overlay = profiles.get(profile)
    if overlay:
        data = deep_merge(data, overlay)
        lines = {**lines, **{k[2:]: v for k, v in lines.items() if k[:2] == ("profiles", profile)}}
    for assignment in overrides:
        apply_override(data, assignment)
    data["profile"] = profile
    data["source"] = str(path)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise _structure_error(err, lines, str(path)) from None
    if registry is None:
        from ssl_core.plugins import get_registry

        registry = get_registry()
    _check_components(recipe, registry, lines)
    return LoadedRecipe(recipe, data, lines)


def recipe_json_schema(registry: Registry) -> dict[str, Any]:
    """JSON Schema of the recipe format, with each component's parameters from the loaded plugins."""
    schema = Recipe.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for kind in ("dataset", "pair-sampler", "encoder", "objective", "invariance-probe", "evaluator"):
        variants = []
        for name, spec in sorted(registry.specs[kind].items()):
            params = spec.params.model_json_schema()
            for sub_name, sub in params.pop("$defs", {}).items():
                defs.setdefault(sub_name, sub)
            props = {"type": {"const": name, "description": spec.summary}, **params.get("properties", {})}
            if kind == "invariance-probe":
                props["dataset"] = {"type": "string", "description": "name of an entry in `datasets`"}
            variants.append({"type": "object", "title": f"{kind} {name}", "properties": props,
                             "required": ["type", *params.get("required", [])],
                             "additionalProperties": False})
        defs[f"{kind}-component"] = {"oneOf": variants} if variants else {"type": "object"}

    def ref(kind: str) -> dict[str, Any]:
        return {"$ref": f"#/$defs/{kind}-component"}

    props = schema["properties"]
    props["world"] = {"anyOf": [ref("dataset"), {"type": "null"}]}
    for key, kind in (("datasets", "dataset"), ("probes", "invariance-probe"), ("evaluations", "evaluator")):
        props[key] = {"type": "object", "additionalProperties": ref(kind)}
    defs["ModelConfig"]["properties"]["encoder"] = ref("encoder")
    defs["TrainConfig"]["properties"]["pair_sampler"] = ref("pair-sampler")
    defs["TrainConfig"]["properties"]["objective"] = ref("objective")
    for internal in ("profile", "source"):
        props.pop(internal, None)
    props["extends"] = {"type": "string", "description": "path of a base recipe to merge this one onto"}
    props["profiles"] = {"type": "object", "description": "named overlays selected with --profile",
                         "additionalProperties": {"type": "object"}}
    return schema
