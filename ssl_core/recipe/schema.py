"""The recipe format: YAML -> validated Recipe, with extends, profiles and --set overrides.

Structure is checked by the pydantic models below; each component mapping
(`{type: name, ...params}`) is then checked by the params model its plugin registered,
so a misspelled parameter is an error with its YAML path and line, never ignored.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ssl_core.errors import ComponentError, DataError, RecipeError
from ssl_core.plugin.registry import COMPONENT_KIND, Registry, checkpoint_formats
from ssl_core.recipe.report_section import ReportSettings
from ssl_core.recipe.yamlio import Location, load_yaml, parse_assignment

Component = dict[str, Any]  # {type: <registered name>, **params}; params checked by the plugin
DEFAULT_PROFILE = "synthetic"
NAME_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$"
SET_LINE = 0  # the line number of a Location whose value came from the command line


#: the fewest bootstrap resamples a 95% interval is drawn from: its 2.5% and 97.5%
#: percentiles need at least one resample beyond each (40 * 0.025 = 1)
MIN_RESAMPLES = 40


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
    prefetch_factor: int = Field(2, ge=1, description="batches each DataLoader worker prepares "
                                                      "ahead (with num_workers > 0)")
    log_every: int = Field(10, ge=1, description="steps between host syncs: log lines, progress "
                                                 "bar, divergence check")
    channels_last: bool | None = Field(None, description="NHWC memory format for model and "
                                       "batches; null (auto) = on with mixed precision on CUDA")
    probe_every: int | None = Field(None, ge=1, description="probe the encoder on the recipe's "
                                    "probes after every N-th epoch and the last (RIS over training)")
    sampler_encoder: str | None = Field(
        None, description="name of a model in this recipe whose frozen encoder the pair sampler "
                          "uses (e.g. a region tracker matching regions by their features)")


class CheckpointRef(Strict):
    path: Path
    format: str = Field("auto", description="checkpoint layout: auto, plain, sslc or a registered "
                                            "format (`sslc plugins`)")
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


def _no_repeats(values: list[int], what: str) -> list[int]:
    dup = sorted({v for v in values if values.count(v) > 1})
    if dup:
        raise ValueError(f"{what} must not repeat a value (repeated: {', '.join(map(str, dup))})")
    return values


class ProbeSettings(Strict):
    top_k: list[int] = Field(default_factory=lambda: [10, 25], min_length=1,
                             description="K values of the Top-K RIS, each at least 1",
                             json_schema_extra={"uniqueItems": True, "items": {"type": "integer", "minimum": 1}})
    batch_size: int = Field(64, ge=1)
    num_workers: int = Field(2, ge=0)

    @field_validator("top_k")
    @classmethod
    def _top_k(cls, values: list[int]) -> list[int]:
        bad = [v for v in values if v < 1]
        if bad:
            raise ValueError(f"every K must be at least 1 (got {', '.join(map(str, bad))})")
        return _no_repeats(values, "top_k")

    resamples: int = Field(1000, ge=0, description="bootstrap resamples per RIS interval (0: off; "
                                                   f"else at least {MIN_RESAMPLES})")

    @field_validator("resamples")
    @classmethod
    def _resamples(cls, value: int) -> int:
        if 0 < value < MIN_RESAMPLES:
            raise ValueError(f"{value} resamples cannot give a 95% interval: use 0 (no intervals) "
                             f"or at least {MIN_RESAMPLES}")
        return value
    allow_tf32: bool = Field(False, description="let features use TF32 on GPUs (faster; the "
                                                "authors' numbers are full fp32)")


class Recipe(Strict):
    name: str = Field(description="a plain name (letters, digits, '.', '_', '-'; not starting with "
                                  "'.'): it names the run directory", json_schema_extra={"pattern": NAME_PATTERN})
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
    seeds: list[int] | None = Field(
        None, min_length=1, json_schema_extra={"uniqueItems": True}, description="train and probe every trained model once per seed "
                                        "(`sslc run --seeds 0,1,2` overrides)")
    report: ReportSettings = Field(
        default_factory=ReportSettings,
        description="`title`; `baseline` (the model others are compared with); `paper`: "
                    "{model: {probe: {top10, top25}}}; `claims`: [{claim, model, probe, "
                    "direction, baseline?, k?}] judged against the intervals")
    # filled in by load_recipe, not written by users:
    profile: str = DEFAULT_PROFILE
    source: str | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not re.match(NAME_PATTERN, name):
            raise ValueError("must be a plain name of letters, digits, '.', '_' and '-', not starting with "
                             "'.' and without path separators, at most 100 characters: it names the run "
                             "directory runs/<name>")
        return name

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        return None if seeds is None else _no_repeats(seeds, "seeds")


class LoadedRecipe:
    """A validated recipe plus where each of its keys came from (for error messages)."""

    def __init__(self, recipe: Recipe, raw: dict[str, Any], lines: dict[tuple[str, ...], Location]):
        self.recipe = recipe
        self.raw = raw
        self.lines = lines

    def where(self, *path: str) -> str:
        return describe_path(path, self.lines)


def format_location(loc: Location) -> str:
    """`file:line`, or the command-line option a value came from (`--set k=v`)."""
    return f"from {loc[0]}" if loc[1] == SET_LINE else f"{loc[0]}:{loc[1]}"


def describe_path(path: Sequence[str], lines: Mapping[tuple[str, ...], Location]) -> str:
    """`dotted.path (file:line)` of the nearest key written in a file, or `(from --set ...)`."""
    dotted = ".".join(str(p) for p in path)
    for n in range(len(path), 0, -1):
        loc = lines.get(tuple(str(p) for p in path[:n]))
        if loc:
            return f"{dotted} ({format_location(loc)})"
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


def apply_override(data: dict[str, Any], assignment: str,
                   lines: dict[tuple[str, ...], Location] | None = None, *, option: str = "--set") -> None:
    """Apply one `--set dotted.key=value` (`=null` removes the key). Every key but the last
    must already exist. `lines` (key path -> location) learns that the value came from
    `option`, so later errors about it say so instead of naming the file's old line."""
    lines = {} if lines is None else lines
    parsed = parse_assignment(assignment)
    if parsed is None and "=" not in assignment:
        raise RecipeError(f"--set {assignment!r}: expected dotted.key=value",
                          "for example --set models.moco.train.epochs=5")
    dotted, value = parsed if parsed is not None else ("", None)
    keys = [k for k in dotted.split(".") if k]
    if not keys:
        raise RecipeError(f"--set {assignment!r}: empty key", "for example --set models.moco.train.epochs=5")
    node: Any = data
    for i, key in enumerate(keys[:-1]):
        if not isinstance(node, dict) or key not in node or not isinstance(node[key], dict):
            here = ".".join(keys[: i + 1])
            options = sorted(node) if isinstance(node, dict) else []
            if isinstance(node, dict) and key in node:  # exists, but holds a value, not a mapping
                raise RecipeError(f"{option} {dotted}: {describe_path(keys[: i + 1], lines)} holds a value, "
                                  "not a mapping", f"set {here} itself, e.g. {option} {here}=...")
            parent = describe_path(keys[:i], lines) if i else "the top level"
            raise RecipeError(f"{option} {dotted}: the recipe has no mapping at {here!r} (looked in {parent})",
                              f"keys there: {', '.join(map(str, options)) or '(none)'}")
        node = node[key]
    if value is None:  # as in profiles: null removes the key
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    path = tuple(keys)
    for key_path in [k for k in lines if k[: len(path)] == path]:
        del lines[key_path]  # the file's lines for this key (and below it) no longer apply
    lines[path] = (f"{option} {assignment.strip()}", SET_LINE)


def _structure_error(err: ValidationError, lines: Mapping[tuple[str, ...], Location], source: str) -> RecipeError:
    problems = []
    for e in err.errors():
        path = tuple(str(p) for p in e["loc"])
        msg = {"extra_forbidden": "unknown key", "missing": "required key is missing"}.get(e["type"], e["msg"])
        msg = msg.removeprefix("Value error, ")
        if "input" in e and e["type"] not in ("missing", "extra_forbidden"):
            msg += f" (got {e['input']!r})"
        problems.append(f"{describe_path(path, lines)}: {msg}")
    return RecipeError(f"recipe {source} is invalid:\n  " + "\n  ".join(problems),
                       "see `sslc schema` or docs/recipes.md for the recipe format")


def _check_components(recipe: Recipe, registry: Registry, lines: Mapping[tuple[str, ...], Location]) -> None:
    """Validate every component mapping against its plugin's params model; every component's
    bad parameters are reported at once (a recipe with three typos needs one round trip)."""
    problems: list[ComponentError] = []

    def check(kind: str, config: Mapping[str, Any], *path: str, drop: tuple[str, ...] = ()) -> None:
        cfg = {k: v for k, v in config.items() if k not in drop}
        try:
            registry.validate(kind, cfg, where=".".join(path),
                              describe=lambda p: describe_path(p, lines))
        except ComponentError as err:
            problems.append(err)

    if recipe.world is not None:
        check("dataset", recipe.world, "world")
    for name, ds in recipe.datasets.items():
        check("dataset", ds, "datasets", name)
    for name, model in recipe.models.items():
        check("encoder", model.encoder, "models", name, "encoder")
        if model.checkpoint is not None and \
                model.checkpoint.format not in (known := checkpoint_formats(registry)):
            raise RecipeError(
                f"{describe_path(('models', name, 'checkpoint', 'format'), lines)}: "
                f"{model.checkpoint.format!r} is not a checkpoint format",
                f"choose from {', '.join(known)} (a plugin's format needs its plugin installed)")
        if model.train is not None:
            t = model.train
            if t.dataset not in recipe.datasets:
                raise RecipeError(
                    f"{describe_path(('models', name, 'train', 'dataset'), lines)}: no dataset named {t.dataset!r}",
                    f"datasets in this recipe: {', '.join(recipe.datasets) or '(none)'}")
            check("pair-sampler", t.pair_sampler, "models", name, "train", "pair_sampler")
            _check_sampler_encoder(recipe, name, lines)
            _check_sampler_wants_encoder(recipe, name, registry, lines)
            if t.probe_every is not None and not recipe.probes:
                raise RecipeError(
                    f"{describe_path(('models', name, 'train', 'probe_every'), lines)}: the recipe "
                    "has no probes to measure while training",
                    f"add `probes:`, or remove probe_every (--set models.{name}.train."
                    "probe_every=null)")
            check("objective", t.objective, "models", name, "train", "objective")
            _check_batch_keys(t.pair_sampler, t.objective, registry,
                              describe_path(("models", name, "train", "objective"), lines))
    for name, probe in recipe.probes.items():
        probe_ds = probe.get("dataset")
        if probe_ds is not None and probe_ds not in recipe.datasets:
            raise RecipeError(f"{describe_path(('probes', name, 'dataset'), lines)}: no dataset named {probe_ds!r}",
                              f"datasets in this recipe: {', '.join(recipe.datasets) or '(none)'}")
        check("invariance-probe", probe, "probes", name, drop=tuple(RECIPE_KEYS["invariance-probe"]))
        _check_frame_images(recipe, registry, lines, "probes", name, "dataset")
    for name, ev in recipe.evaluations.items():
        for key in ("dataset", "test_dataset"):
            if ev.get(key) is not None and ev.get(key) not in recipe.datasets:
                raise RecipeError(
                    f"{describe_path(('evaluations', name, key), lines)}: no dataset named {ev.get(key)!r}",
                    f"datasets in this recipe: {', '.join(recipe.datasets) or '(none)'}")
        check("evaluator", ev, "evaluations", name, drop=tuple(RECIPE_KEYS["evaluator"]))
        for key in ("dataset", "test_dataset"):
            _check_frame_images(recipe, registry, lines, "evaluations", name, key)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ComponentError(
            f"{len(problems)} components of the recipe are wrong:\n"
            + "\n".join(f"- {e.message}" for e in problems),
            "fix each one; `sslc plugins` and docs/components.md list every component's "
            "parameters")


def _component_class(registry: Registry, kind: str, config: Mapping[str, Any]) -> Any:
    """The registered class of a component mapping (validated already), or None."""
    name = config.get("type")
    if not isinstance(name, str) or name not in registry.names(kind):
        return None
    return registry.get(kind, name).cls


def _check_sampler_wants_encoder(recipe: Recipe, name: str, registry: Registry,
                                 lines: Mapping[tuple[str, ...], Location]) -> None:
    """A pair sampler that tracks with a frozen encoder (`wants_encoder`) needs
    `sampler_encoder`, and one that does not must not be given one: said before training."""
    t = recipe.models[name].train
    assert t is not None
    cls = _component_class(registry, "pair-sampler", t.pair_sampler)
    if cls is None:
        return
    wants = bool(getattr(cls, "wants_encoder", False))
    if wants and t.sampler_encoder is None:
        others = [m for m in recipe.models if m != name]
        raise RecipeError(
            f"{describe_path(('models', name, 'train', 'pair_sampler'), lines)}: pair sampler "
            f"{t.pair_sampler['type']!r} needs a frozen encoder, and the train section names none",
            "set `sampler_encoder: <model name>` in this train section"
            + (f" (models in this recipe: {', '.join(others)})" if others else
               " (add the model whose encoder it should use, e.g. a MoCo trained on frames)"))
    if not wants and t.sampler_encoder is not None:
        raise RecipeError(
            f"{describe_path(('models', name, 'train', 'sampler_encoder'), lines)}: pair sampler "
            f"{t.pair_sampler['type']!r} uses no encoder", "remove sampler_encoder")


def _check_frame_images(recipe: Recipe, registry: Registry,
                        lines: Mapping[tuple[str, ...], Location], section: str, name: str,
                        key: str) -> None:
    """Probes and evaluators read images (`records()`): a dataset of video files has none."""
    entry = getattr(recipe, section)[name]
    ds_name = entry.get(key)
    if ds_name is None or ds_name not in recipe.datasets:
        return
    cls = _component_class(registry, "dataset", recipe.datasets[ds_name])
    if cls is not None and getattr(cls, "frame_images", True) is False:
        raise RecipeError(
            f"{describe_path((section, name, key), lines)}: dataset {ds_name!r} "
            f"({recipe.datasets[ds_name]['type']}) holds video files, which have no per-frame "
            "images to probe or evaluate on",
            "point it at an image dataset (or frames stored as images, e.g. trackingnet, "
            "got10k); video files are for video pair samplers")


def _known_models(data: Mapping[str, Any], profiles: Mapping[str, Any]) -> set[str]:
    """Models the recipe file names anywhere (its base and every profile): a report name
    outside these is a typo; one a profile or `--set models.x=null` dropped is not."""
    names = set(data.get("models") or {}) if isinstance(data.get("models"), dict) else set()
    for overlay in profiles.values():
        if isinstance(overlay, dict) and isinstance(overlay.get("models"), dict):
            names |= set(overlay["models"])
    return names


def _check_report_models(recipe: Recipe, known: set[str],
                         lines: Mapping[tuple[str, ...], Location]) -> None:
    """report.baseline and each claim's model/baseline name a model of the recipe file."""
    names = known | set(recipe.models)
    refs: list[tuple[tuple[str, ...], str | None]] = [(("report", "baseline"), recipe.report.baseline)]
    for i, c in enumerate(recipe.report.claims):
        refs += [(("report", "claims", str(i), "model"), c.model),
                 (("report", "claims", str(i), "baseline"), c.baseline)]
    for path, ref in refs:
        if ref is not None and ref not in names:
            close = difflib.get_close_matches(ref, sorted(names), n=1)
            raise RecipeError(f"{describe_path(path, lines)}: no model named {ref!r}",
                              (f"did you mean {close[0]!r}? " if close else "")
                              + f"models in this recipe: {', '.join(sorted(names)) or '(none)'}")


def _check_batch_keys(sampler: Mapping[str, Any], objective: Mapping[str, Any],
                      registry: Registry, where: str) -> None:
    """The objective reads only keys the pair sampler's batches hold (a region loss needs
    region boxes), before anything trains."""
    try:
        given = registry.get("pair-sampler", str(sampler.get("type"))).cls
        needing = registry.get("objective", str(objective.get("type"))).cls
    except ComponentError:
        return  # an unknown name is reported by the component check
    needs = set(getattr(needing, "needs_keys", ()))

    def gives(cls: Any) -> set[str]:
        return set(getattr(cls, "batch_keys", ()))

    missing = sorted(needs - gives(given))
    if missing:
        fit = [n for n in registry.names("pair-sampler")
               if not needs - gives(registry.get("pair-sampler", n).cls)]
        raise RecipeError(
            f"{where}: objective {objective.get('type')!r} reads {', '.join(missing)} from each "
            f"batch, which pair sampler {sampler.get('type')!r} does not give",
            f"use a pair sampler that gives them ({', '.join(fit) or 'none is installed'}), or "
            "an objective for plain view pairs")


def _check_sampler_encoder(recipe: Recipe, name: str,
                           lines: Mapping[tuple[str, ...], Location]) -> None:
    """`sampler_encoder` names another model, and following the names never loops."""
    where = describe_path(("models", name, "train", "sampler_encoder"), lines)
    seen = [name]
    ref = recipe.models[name].train.sampler_encoder  # type: ignore[union-attr]
    while ref is not None:
        if ref not in recipe.models:
            raise RecipeError(f"{where}: no model named {ref!r}",
                              f"models in this recipe: {', '.join(recipe.models)}")
        if ref in seen:
            raise RecipeError(f"{where}: models use each other's encoders in a loop "
                              f"({' -> '.join([*seen, ref])})",
                              "name a model that does not depend on this one")
        seen.append(ref)
        train = recipe.models[ref].train
        ref = train.sampler_encoder if train is not None else None


def _resolve_data_root(data_root: Path | None, lines: Mapping[tuple[str, ...], Location]) -> Path | None:
    """A relative `data_root` is relative to the recipe file that wrote it (as `extends` is);
    one given on the command line (`--set data_root=...`) to the current directory."""
    if data_root is None:
        return None
    root = data_root.expanduser()
    if root.is_absolute():
        return root
    loc = lines.get(("data_root",))
    base = Path.cwd() if loc is None or loc[1] == SET_LINE else Path(loc[0]).parent
    return base / root


def load_recipe(path: str | Path, *, profile: str = DEFAULT_PROFILE, overrides: Sequence[str] = (),
                seeds: Sequence[int] | None = None, registry: Registry | None = None) -> LoadedRecipe:
    """Read, merge (extends, profile, --set, --seeds) and validate a recipe."""
    path = Path(path)
    data, lines = _load_with_extends(path)
    profiles = data.pop("profiles", None) or {}
    if not isinstance(profiles, dict):
        raise RecipeError(f"{describe_path(('profiles',), lines)}: must map profile names to overlays")
    if profile != DEFAULT_PROFILE and profile not in profiles:
        raise RecipeError(f"recipe {path} has no profile {profile!r}",
                          f"profiles: {', '.join([DEFAULT_PROFILE, *profiles])}")
    known_models = _known_models(data, profiles)
    overlay = profiles.get(profile)
    if overlay:
        data = deep_merge(data, overlay)
        lines = {**lines, **{k[2:]: v for k, v in lines.items() if k[:2] == ("profiles", profile)}}
    for assignment in overrides:
        apply_override(data, assignment, lines)
    if seeds is not None:
        data["seeds"] = list(seeds)
        lines[("seeds",)] = ("--seeds " + ",".join(map(str, seeds)), SET_LINE)
    data["profile"] = profile
    data["source"] = str(path)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise _structure_error(err, lines, str(path)) from None
    recipe.data_root = _resolve_data_root(recipe.data_root, lines)
    if registry is None:
        from ssl_core.plugin.host import get_registry

        registry = get_registry()
    _check_components(recipe, registry, lines)
    _check_report_models(recipe, known_models, lines)
    return LoadedRecipe(recipe, data, lines)


def check_world(loaded: LoadedRecipe, world: int) -> None:
    """Under torchrun each of `world` processes takes an equal share of every global batch:
    checked before the process group forms, so a bad split is one message, not one per rank."""
    if world <= 1:
        return
    for name, model in loaded.recipe.models.items():
        t = model.train
        if t is not None and t.batch_size % world:
            raise RecipeError(
                f"{loaded.where('models', name, 'train', 'batch_size')}: the global batch of "
                f"{t.batch_size} does not split over {world} processes",
                f"set it to a multiple of {world}, or start torchrun with --nproc-per-node "
                "dividing it")


#: keys the runner reads beside a component's own parameters, per kind (never passed to it)
RECIPE_KEYS: dict[str, dict[str, str]] = {
    "invariance-probe": {"dataset": "name of an entry in `datasets` (default: the probe's own "
                                    "dataset type under the data root)"},
    "evaluator": {
        "model": "evaluate only this model (default: every model)",
        "dataset": "name of an entry in `datasets` (default: the evaluator's own dataset type "
                   "under the data root)",
        "test_dataset": "name of an entry in `datasets` to test on instead of the dataset's "
                        "test subset",
    },
}


def recipe_json_schema(registry: Registry) -> dict[str, Any]:
    """JSON Schema of the recipe format, with each component's parameters from the loaded plugins."""
    schema = Recipe.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for kind in ("dataset", "pair-sampler", "view-augmentation", "encoder", "objective",
                 "invariance-probe", "evaluator"):
        variants = []
        for name, spec in sorted(registry.specs[kind].items()):
            params = spec.params.model_json_schema()
            for sub_name, sub in params.pop("$defs", {}).items():
                defs.setdefault(sub_name, sub)
            props = {"type": {"const": name, "description": spec.summary}, **params.get("properties", {})}
            for key, prop in props.items():  # a composed component (`views`): its kind's variants
                inner = prop.get(COMPONENT_KIND) if isinstance(prop, dict) else None
                if isinstance(inner, str):
                    props[key] = {"$ref": f"#/$defs/{inner}-component",
                                  "description": prop.get("description", "")}
            props.update({key: {"type": "string", "description": text}
                          for key, text in RECIPE_KEYS.get(kind, {}).items()})
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


def resolved_dataset_config(config: Mapping[str, Any], data_root: Path, registry: Registry) -> dict[str, Any]:
    """A dataset config with a relative `root` resolved against the data root (and a missing
    `root` set to it, for datasets that take one)."""
    cfg = dict(config)
    root = cfg.get("root")
    if isinstance(root, str) and not Path(root).expanduser().is_absolute():
        cfg["root"] = str(data_root / root)
    elif root is None and "root" in registry.get("dataset", cfg["type"]).params.model_fields:
        cfg["root"] = str(data_root)
    return cfg


def _datasets_used(recipe: Recipe, registry: Registry,
                   stages: Sequence[str]) -> list[tuple[tuple[str, ...], dict[str, Any], str]]:
    """(YAML path, dataset config, user) for every dataset the chosen stages read."""
    used: list[tuple[tuple[str, ...], dict[str, Any], str]] = []

    def named(name: object, user: str) -> None:
        if isinstance(name, str) and name in recipe.datasets:
            used.append((("datasets", name), dict(recipe.datasets[name]), user))

    if "train" in stages:
        for m, model in recipe.models.items():
            if model.train is not None:
                named(model.train.dataset, f"models.{m}.train")
    if "probe" in stages:
        for p, probe in recipe.probes.items():
            if probe.get("dataset") is not None:
                named(probe["dataset"], f"probes.{p}")
            else:  # the probe reads its default dataset type under the data root
                dataset_type = getattr(registry.get("invariance-probe", probe["type"]).cls, "dataset_type", None)
                if isinstance(dataset_type, str) and dataset_type in registry.specs["dataset"]:
                    used.append((("probes", p), {"type": dataset_type}, f"probes.{p}"))
    if "evaluate" in stages:
        for e, ev in recipe.evaluations.items():
            named(ev.get("dataset"), f"evaluations.{e}")
            named(ev.get("test_dataset"), f"evaluations.{e}")
    return used


def check_data_roots(loaded: LoadedRecipe, registry: Registry,
                     stages: Sequence[str] = ("train", "probe", "evaluate")) -> None:
    """Raise `DataError` listing every dataset root the chosen stages would read that does not
    exist, so `sslc validate` (and `sslc run` before training) finds what a probe would
    only find after hours of training. Roots under a `world` are skipped: it creates them."""
    recipe = loaded.recipe
    data_root = recipe.data_root if recipe.data_root is not None else Path.cwd()
    problems: dict[str, list[str]] = {}
    for yaml_path, config, user in _datasets_used(recipe, registry, stages):
        root = config.get("root")
        if recipe.world is not None and not (isinstance(root, str) and Path(root).expanduser().is_absolute()):
            continue  # under the world's data root, which the world renders
        if "root" not in registry.get("dataset", config["type"]).params.model_fields:
            continue
        resolved = Path(resolved_dataset_config(config, data_root, registry)["root"]).expanduser()
        if resolved.exists():
            continue
        if root is None or recipe.data_root is not None and not data_root.exists():
            where, resolved = describe_path(("data_root",), loaded.lines), data_root
        else:
            where = describe_path((*yaml_path, "root"), loaded.lines)
        problems.setdefault(f"{where}: {resolved} does not exist", []).append(user)
    if problems:
        lines = [f"{msg} (needed by {', '.join(dict.fromkeys(users))})" for msg, users in problems.items()]
        raise DataError("dataset root not found:\n  " + "\n  ".join(lines),
                        "fix the path: a relative `root` resolves against `data_root`, and a relative "
                        "`data_root` against the recipe's folder")
