"""Contract tests for sslc plugins: fixtures and checks a plugin package runs on its own components.

sslc calls a plugin's components through a few promises (the interfaces in
`ssl_core.interfaces` and the conventions in docs/writing-a-plugin.md). A plugin that
breaks one fails deep inside a training run; these checks fail in the plugin's own
test suite instead, with a message saying which promise. After tox's `tox.pytest`,
the module is a pytest plugin; in your package's `conftest.py`::

    pytest_plugins = ["ssl_core.testing"]

and in `pyproject.toml` (or override the `sslc_plugin` fixture)::

    [tool.pytest.ini_options]
    sslc_plugin = "my_package:my-plugin"      # module holding the hooks : plugin name

Fixtures: `sslc_plugin` (the module and name under test), `plugin_host` (a fresh
`PluginHost` holding only that plugin, never the installed ones) and
`plugin_registry` (its registry). The `check_*` functions work without pytest's
fixtures too; each raises `ContractViolation` (an AssertionError) naming the broken
promise. This module names no built-in plugin: it is the same kit for all of them.
"""

from __future__ import annotations

import importlib
import inspect
import math
import random
from collections.abc import Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import BaseModel
from torch import Tensor
from torch.overrides import TorchFunctionMode

from ssl_core.errors import ComponentError, PluginError
from ssl_core.interfaces import (
    KIND_BASES,
    ContrastiveObjective,
    Dataset,
    Encoder,
    EvaluationResult,
    Evaluator,
    ImageRecord,
    InvarianceProbe,
    ObjectiveOutput,
    PairSampler,
    Params,
    ProbeItem,
    ProbeSet,
)
from ssl_core.plugin.hookspecs import KIND_HOOKS
from ssl_core.plugin.host import PluginHost
from ssl_core.plugin.registry import Registry

__all__ = [
    "ContractViolation",
    "Registration",
    "check_dataset",
    "check_encoder",
    "check_entry_point",
    "check_evaluator",
    "check_invariance_probe",
    "check_objective",
    "check_pair_sampler",
    "check_params_reject_unknown_keys",
    "check_registers_cleanly",
    "check_steps_never_wait",
    "forbid_host_syncs",
    "fresh_host",
    "plugin_host",
    "plugin_registry",
    "recorded_registrations",
    "sslc_plugin",
]

#: the interface each kind's class must implement: the registry's own table
KIND_INTERFACES: dict[str, type] = KIND_BASES

#: a key no component should accept (a stand-in for a typo in a recipe)
UNKNOWN_KEY = "sslc_contract_no_such_parameter"


class ContractViolation(AssertionError):
    """A plugin component breaks a promise sslc relies on."""


def _require(ok: object, message: str) -> None:
    if not ok:
        raise ContractViolation(message)


@dataclass(frozen=True)
class Registration:
    """One `register(...)` call a plugin's hook made."""

    kind: str
    name: str
    cls: Any
    params: type[BaseModel] | None
    summary: str


# -- registration ------------------------------------------------------------------------
def fresh_host(module: ModuleType | Any, name: str) -> PluginHost:
    """A new PluginHost holding only `module` (as plugin `name`); fails if it did not register."""
    host = PluginHost()
    try:
        added = host.add_plugin(module, name)
    except PluginError as err:  # SSLC_STRICT_PLUGINS=1 makes a failure raise
        raise ContractViolation(f"plugin {name!r} failed to register: {err}") from None
    if not added:
        errors = "; ".join(f"{f.stage}: {f.error}" for f in host.failures) or "(no detail)"
        raise ContractViolation(f"plugin {name!r} failed to register: {errors}")
    return host


def check_entry_point(name: str, distribution: str | None = None) -> PluginHost:
    """The installed package's `sslc.plugins` entry point `name` loads and registers.

    Loads every entry point as sslc does (SSLC_LOAD_PLUGINS and SSLC_DISABLE_PLUGINS
    apply) into a fresh host; `distribution` also checks which package provides it.
    """
    host = PluginHost()
    try:
        host.load_entry_points()
    except PluginError as err:
        raise ContractViolation(str(err)) from None
    failed = [f for f in host.failures if f.name == name]
    _require(not failed, f"entry point {name!r} failed: "
                         + "; ".join(f"{f.stage}: {f.error}" for f in failed))
    _require(name in host.plugins, f"no plugin {name!r} was loaded: is the package installed, "
                                   "with an entry point in group 'sslc.plugins' of that name?")
    if distribution is not None:
        found = host.plugins[name].distribution
        _require(found == distribution,
                 f"plugin {name!r} comes from distribution {found!r}, not {distribution!r}")
    return host


def recorded_registrations(module: ModuleType | Any) -> list[Registration]:
    """Call each `register_*` hook the module implements with a recorder; what it registers."""
    calls: list[Registration] = []
    for kind, hook_name in KIND_HOOKS.items():
        hook = getattr(module, hook_name, None)
        if hook is None:
            continue

        def record(name: str, cls: Any, *, params: type[BaseModel] | None = None,
                   summary: str = "", _kind: str = kind) -> None:
            calls.append(Registration(_kind, name, cls, params, summary))

        hook(register=record)
    return calls


def check_registers_cleanly(module: ModuleType | Any, name: str) -> list[Registration]:
    """The plugin registers, alone, in a fresh host, and each component follows the convention.

    Convention: a non-empty name, a one-line summary, the component's class (implementing
    its kind's interface) whose `__init__` takes the params model, and params that
    subclass `ssl_core.Params`. Returns the registrations for further checks.
    """
    host = fresh_host(module, name)
    calls = recorded_registrations(module)
    _require(calls, f"plugin {name!r} implements no register_* hook that registers anything "
                    f"(hooks: {', '.join(KIND_HOOKS.values())})")
    for reg in calls:
        what = f"plugin {name!r}: {reg.kind} {reg.name!r}"
        _require(isinstance(reg.name, str) and reg.name and reg.name == reg.name.strip(),
                 f"plugin {name!r} registered a {reg.kind} with an empty or padded name {reg.name!r}")
        _require(reg.name in host.registry.names(reg.kind),
                 f"{what} was not added to the registry")
        _require(reg.summary.strip() and "\n" not in reg.summary.strip(),
                 f"{what} needs a one-line summary (shown by `sslc plugins --json`)")
        _require(inspect.isclass(reg.cls),
                 f"{what} registered {reg.cls!r}; register the component's class itself")
        base = KIND_INTERFACES.get(reg.kind)
        if base is not None:
            _require(issubclass(reg.cls, base),
                     f"{what}: {reg.cls.__qualname__} must subclass ssl_core.{base.__name__}")
        if reg.params is not None:
            _require(inspect.isclass(reg.params) and issubclass(reg.params, Params),
                     f"{what}: params {reg.params!r} must subclass ssl_core.Params "
                     "(it rejects unknown keys)")
        try:
            inspect.signature(reg.cls).bind(object())
        except TypeError:
            raise ContractViolation(
                f"{what}: {reg.cls.__qualname__}.__init__ must take exactly one argument, "
                "the validated params model") from None
    return calls


def check_params_reject_unknown_keys(kind: str, component_name: str, *,
                                     registry: Registry | None = None,
                                     config: Mapping[str, Any] | None = None) -> None:
    """A recipe key the component does not know, or a typo of one it does, is an error naming it.

    `config` is a valid set of parameters (needed when some are required, such as a
    dataset's `root`). `registry` defaults to the process-wide one (installed plugins).
    """
    if registry is None:
        from ssl_core.plugin.host import get_registry

        registry = get_registry()
    valid = {"type": component_name, **(config or {})}
    try:
        _, params = registry.validate(kind, valid)
    except ComponentError as err:
        raise ContractViolation(
            f"{kind} {component_name!r} rejects {dict(valid)}: {err}; pass config= with a valid "
            "set of parameters") from None
    wrong = [UNKNOWN_KEY]
    fields = list(type(params).model_fields)
    if fields:
        wrong.append(fields[0] + "x")  # a misspelt real parameter
    for key in wrong:
        try:
            registry.validate(kind, {**valid, key: 1})
        except ComponentError as err:
            _require(key in str(err), f"{kind} {component_name!r}: the error for unknown key "
                                      f"{key!r} does not name it: {err}")
        else:
            raise ContractViolation(f"{kind} {component_name!r} accepted the unknown parameter "
                                    f"{key!r}; subclass ssl_core.Params for its params model")


# -- components ------------------------------------------------------------------------
def check_dataset(dataset: Dataset, subset: str | None = None) -> list[ImageRecord]:
    """`records(subset)` lists ImageRecords in the same order every time."""
    _require(isinstance(dataset, Dataset), f"{dataset!r} is not an ssl_core.Dataset")
    first = dataset.records(subset)
    _require(isinstance(first, list), f"records() returned {type(first).__name__}, not a list")
    _require(all(isinstance(r, ImageRecord) for r in first),
             "records() must return ssl_core.ImageRecord items")
    _require(first == dataset.records(subset),
             "records() returned a different order on a second call; sort what you list")
    return first


def _seeded_item(pairs: Any, index: int, seed: int, noise: int) -> Any:
    """Item `index` under `torch.manual_seed(seed)`, with Python's and numpy's RNGs scrambled."""
    with torch.random.fork_rng(devices=[]):
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            random.seed(noise)
            np.random.seed(noise)
            torch.manual_seed(seed)
            return pairs[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def check_pair_sampler(sampler: PairSampler, dataset: Dataset, items: int = 2) -> None:
    """Items are dicts of equal-shape "query"/"key" tensors that batch and are a pure function
    of torch's seed (the trainer seeds torch per item; `random`/numpy are not); after the
    sampler's `on_device` (the trainer's last step before the objective) they are finite
    float tensors of equal shape."""
    _require(isinstance(sampler, PairSampler), f"{sampler!r} is not an ssl_core.PairSampler")
    pairs = sampler.pairs(dataset)
    _require(isinstance(pairs, Sized), f"{type(sampler).__name__}.pairs() must return a sized "
                                       "(map-style) torch dataset")
    assert isinstance(pairs, Sized)
    n = len(pairs)
    _require(n > 0, f"{type(sampler).__name__}.pairs() returned an empty dataset")
    taken = []
    for index in range(min(items, n)):
        item = _seeded_item(pairs, index, seed=index, noise=1)
        _require(isinstance(item, Mapping), f"item {index} is a {type(item).__name__}, not a dict")
        for key in ("query", "key"):
            _require(isinstance(item.get(key), Tensor), f"item {index} has no {key!r} tensor")
        _require(item["query"].shape == item["key"].shape,
                 f"item {index}: query {tuple(item['query'].shape)} and key "
                 f"{tuple(item['key'].shape)} differ in shape")
        shape = tuple(item["query"].shape)
        _require(len(shape) == 3 and shape[0] in (1, 3) and min(shape[1:]) > 3,
                 f"item {index}: query has shape {shape}; a view is channels-first (C, H, W) "
                 "with C = 3 (RGB), as torchvision's ToTensor gives")
        again = _seeded_item(pairs, index, seed=index, noise=2)
        for key in ("query", "key"):
            _require(torch.equal(item[key], again[key]),
                     f"item {index}[{key!r}] changed under the same torch seed: draw every random "
                     "number from torch's RNG (not `random` or numpy)")
        taken.append(item)
    try:
        batch = torch.utils.data.default_collate(taken)
    except Exception as err:  # noqa: BLE001 - any failure to batch breaks the trainer
        raise ContractViolation(f"items do not batch with the default collate: {err}") from None
    batch = sampler.on_device(batch)
    for key in ("query", "key"):
        value = batch.get(key) if isinstance(batch, Mapping) else None
        _require(isinstance(value, Tensor) and value.is_floating_point(),
                 f"{type(sampler).__name__}.on_device must leave a float {key!r} tensor, got "
                 f"{type(value).__name__ if not isinstance(value, Tensor) else value.dtype}")
        assert isinstance(value, Tensor)
        _require(bool(torch.isfinite(value).all()), f"batch[{key!r}] is not finite")
    _require(batch["query"].shape == batch["key"].shape,
             "after on_device, query and key differ in shape")


def check_invariance_probe(probe: InvarianceProbe, dataset: Dataset,
                           encoder: Encoder | None = None, top_k: Sequence[int] = (1,)) -> ProbeSet:
    """`build(dataset)` gives the same trajectories every time, each trajectory within one
    class, rows whose images exist and can be cropped, and at least one trajectory long
    enough to score (3 rows); with `encoder`, the probe is measured end to end and gives a
    finite RIS per K. Returns the probe set."""
    from ssl_core.measure.estimates import top_key
    from ssl_core.measure.features import extract_features
    from ssl_core.measure.probing import measure

    _require(isinstance(probe, InvarianceProbe), f"{probe!r} is not an ssl_core.InvarianceProbe")
    name = type(probe).__name__
    first = probe.build(dataset)
    _require(isinstance(first, ProbeSet), f"{name}.build() returned {type(first).__name__}, "
                                          "not an ssl_core.ProbeSet")
    _require(len(first.items) > 0, f"{name}.build() found no probe items in {dataset!r}")
    _require(all(isinstance(it, ProbeItem) for it in first.items),
             f"{name}.build(): items must be ssl_core.ProbeItem")
    h, w = first.image_size
    _require(isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0,
             f"{name}: image_size must be (height, width) in pixels, got {first.image_size!r}")
    again = probe.build(dataset)
    _require([(it.record, it.trajectory, it.label) for it in first.items]
             == [(it.record, it.trajectory, it.label) for it in again.items],
             f"{name}.build() gave other items or another order on a second call; sort them")
    label_of: dict[str, str] = {}
    rows: dict[str, int] = {}
    for it in first.items:
        _require(label_of.setdefault(it.trajectory, it.label) == it.label,
                 f"{name}: trajectory {it.trajectory!r} spans two classes "
                 f"({label_of[it.trajectory]!r} and {it.label!r}); RIS is computed per class")
        rows[it.trajectory] = rows.get(it.trajectory, 0) + 1
    _require(max(rows.values()) >= 3, f"{name}: no trajectory has the 3 rows RIS needs")
    # every row's image loads and crops at the probe's size (what extraction will do)
    sample = ProbeSet(first.probe, first.items[:4], first.image_size)
    mean_colour = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    pixels = extract_features(mean_colour, sample, batch_size=4, device="cpu", progress=False)
    _require(pixels.shape == (len(sample.items), 3) and bool(np.isfinite(pixels).all()),
             f"{name}: the first rows' images did not load and crop to finite pixels")
    if encoder is not None:
        row, _ = measure(encoder, probe, first, top_k=top_k, cache=None, resamples=0)
        for k in top_k:
            value = row.get(top_key(k))
            _require(isinstance(value, float) and math.isfinite(value),
                     f"{name}: top-{k} RIS is {value!r}, not a finite number")
    return first


def check_evaluator(evaluator: Evaluator, dataset: Dataset, encoder: Encoder, *,
                    test_dataset: Dataset | None = None) -> EvaluationResult:
    """The evaluator runs end to end on `dataset` with `encoder`'s (real) features and gives
    flat, finite, numeric metrics, the same ones on a second run (seed what you draw)."""
    from ssl_core.measure.evaluation import evaluate

    _require(isinstance(evaluator, Evaluator), f"{evaluator!r} is not an ssl_core.Evaluator")
    name = type(evaluator).__name__
    try:
        row, _ = evaluate(encoder, evaluator, dataset, test_dataset=test_dataset, cache=None)
    except ComponentError as err:  # what the core says of a malformed result
        raise ContractViolation(f"{name}: {err}") from None
    metrics = row["metrics"]
    _require(metrics, f"{name}.evaluate() returned no metrics")
    for key, value in metrics.items():
        _require(isinstance(value, float) and math.isfinite(value),
                 f"{name}: metric {key!r} is not a finite number (NaN and inf are stored as "
                 f"{value!r})")
    again, _ = evaluate(encoder, evaluator, dataset, test_dataset=test_dataset, cache=None)
    _require(again["metrics"] == metrics, f"{name}: a second run gave other metrics "
                                          f"({again['metrics']} vs {metrics}); seed what you draw")
    return EvaluationResult(metrics, row["details"])


def check_encoder(encoder: Encoder, image_size: int = 32, batch: int = 2) -> None:
    """`forward` gives (N, feature_dim) pooled features; `feature_maps` has "layer3" and a
    matching "pooled"; gradients flow in train mode."""
    _require(isinstance(encoder, Encoder), f"{encoder!r} is not an ssl_core.Encoder")
    dim = getattr(encoder, "feature_dim", None)
    _require(isinstance(dim, int) and dim > 0, f"feature_dim must be a positive int, got {dim!r}")
    x = torch.rand(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    was_training = encoder.training
    try:
        encoder.eval()
        with torch.no_grad():
            pooled = encoder(x)
            maps = encoder.feature_maps(x)
        _require(isinstance(pooled, Tensor) and tuple(pooled.shape) == (batch, dim),
                 f"forward gave shape {tuple(getattr(pooled, 'shape', ()))}, "
                 f"expected (N, feature_dim) = {(batch, dim)}")
        _require(bool(torch.isfinite(pooled).all()), "forward gave non-finite features")
        _require(isinstance(maps, Mapping) and {"layer3", "pooled"} <= set(maps),
                 f"feature_maps must have 'layer3' and 'pooled', got {sorted(maps)}")
        _require(maps["layer3"].dim() == 4 and maps["layer3"].shape[0] == batch,
                 f"feature_maps['layer3'] must be (N, C, H, W), got {tuple(maps['layer3'].shape)}")
        _require(torch.allclose(maps["pooled"], pooled, atol=1e-5, rtol=1e-4),
                 "feature_maps['pooled'] differs from forward(x)")
        encoder.train()
        encoder(x).sum().backward()
        _require(any(p.grad is not None for p in encoder.parameters()),
                 "no parameter of the encoder got a gradient in train mode")
    finally:
        encoder.zero_grad(set_to_none=True)
        encoder.train(was_training)


def check_objective(objective: ContrastiveObjective, encoder: Encoder,
                    batch: Mapping[str, Tensor]) -> ObjectiveOutput:
    """After `bind(encoder)`: `encoder` is that encoder and inside the objective's parameters;
    `forward(batch)` gives a finite scalar loss and float metrics; backward reaches the encoder."""
    _require(isinstance(objective, ContrastiveObjective),
             f"{objective!r} is not an ssl_core.ContrastiveObjective")
    objective.bind(encoder)
    _require(objective.encoder is encoder,
             "the `encoder` property must return the encoder given to bind()")
    own = {id(p) for p in objective.parameters()}
    _require(all(id(p) in own for p in encoder.parameters()),
             "the bound encoder must be a submodule of the objective, so the optimizer and "
             "checkpoints include it")
    size = next(iter(batch.values())).shape[0]
    try:
        objective.check_batch_size(size)
    except ComponentError as err:
        raise ContractViolation(f"check_batch_size({size}) refused the test batch: {err}") from None
    objective.train()
    out = objective(batch)
    _require(isinstance(out, ObjectiveOutput), f"forward returned {type(out).__name__}, "
                                               "not an ssl_core.ObjectiveOutput")
    _require(isinstance(out.loss, Tensor) and out.loss.dim() == 0,
             f"the loss must be a scalar tensor, got {getattr(out.loss, 'shape', out.loss)!r}")
    _require(bool(torch.isfinite(out.loss)), f"the loss is not finite: {out.loss.item()}")
    for key, value in out.metrics.items():
        # a 0-d tensor is welcome: the trainer reads it back only when it logs
        number = value.detach().float().item() if isinstance(value, Tensor) and value.dim() == 0 \
            else value
        _require(isinstance(number, (int, float)) and not isinstance(number, bool)
                 and math.isfinite(number),
                 f"metric {key!r} must be a finite float or 0-d tensor, got {value!r}")
    objective.zero_grad(set_to_none=True)
    out.loss.backward()
    _require(any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in encoder.parameters()),
             "backward of the loss gave the encoder no gradient")
    objective.zero_grad(set_to_none=True)
    return out


# -- host syncs --------------------------------------------------------------------------
#: tensor methods and torch functions that make the host wait for the tensor's device
#: (reading values back, or an output whose size depends on the values)
SYNCING_CALLS = frozenset({
    "item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__",
    "__complex__", "__repr__", "__format__", "nonzero", "argwhere", "masked_select", "unique",
    "unique_consecutive", "equal", "allclose",
})


def _host_sync(func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
    """What in this call would make the host wait for a device, if anything."""
    name = getattr(func, "__name__", "")
    if name in SYNCING_CALLS:
        return f"`{name}`"
    if name in ("tensor", "as_tensor") and kwargs.get("device") is not None:
        return f"torch.{name}(..., device=...), a blocking copy (use ssl_core.device_constant)"
    if name == "new_tensor":
        return "Tensor.new_tensor, a blocking copy (use ssl_core.device_constant)"
    if name in ("__getitem__", "__setitem__"):
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        if any(isinstance(i, Tensor) and i.dtype == torch.bool for i in index):
            return "indexing with a boolean mask (its size is read back; use torch.where)"
    if name == "where" and len(args) + len(kwargs) == 1:
        return "torch.where(condition) with one argument (use nonzero-free masking)"
    if name in ("to", "cuda") and args and isinstance(args[0], Tensor) and args[0].device.type == "cpu":
        target = next((a for a in (*args[1:], kwargs.get("device")) if isinstance(a, (torch.device, str))), None)
        if name == "cuda" or (target is not None and torch.device(target).type != "cpu"):
            if not kwargs.get("non_blocking", False):
                return f"Tensor.{name} onto a device without non_blocking=True (use ssl_core.to_device)"
            if not args[0].is_pinned():
                return f"Tensor.{name} from pageable memory (use ssl_core.to_device, which pins)"
    return None


class _NoHostSyncs(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: Mapping[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        reason = _host_sync(func, args, kwargs)
        if reason is not None:
            raise ContractViolation(f"{reason} makes the host wait for the device in code that "
                                    "runs every training step")
        return func(*args, **kwargs)


@contextmanager
def forbid_host_syncs() -> Iterator[None]:
    """Inside: a call that would make the host wait for the device raises ContractViolation.

    For a training step's code (an objective's forward, a sampler's `on_device`): the
    trainer's loop keeps an accelerator busy only while the host runs ahead of it. Python-level
    calls are checked on any device, so CPU tests catch them; on CUDA, torch's sync debug
    mode also turns every synchronising CUDA call into an error. Run the code once before
    (warm-up: `device_constant`s, cuDNN's algorithm search) and check the calls after."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    before = torch.cuda.get_sync_debug_mode() if cuda else 0
    if cuda:
        torch.cuda.set_sync_debug_mode("error")
    try:
        with _NoHostSyncs():
            yield
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode(before)


def check_steps_never_wait(objective: ContrastiveObjective,
                           batches: Sequence[Mapping[str, Tensor]], lr: float = 0.03) -> ObjectiveOutput:
    """Training steps as the trainer runs them (forward, backward, an SGD step) on `batches`:
    the first a warm-up, each later one under `forbid_host_syncs`. Returns the last output."""
    _require(len(batches) >= 2, "give at least two batches: the first is a warm-up, not checked")
    optimizer = torch.optim.SGD([p for p in objective.parameters() if p.requires_grad], lr=lr,
                                momentum=0.9)
    objective.train()
    for i, batch in enumerate(batches):
        with forbid_host_syncs() if i else nullcontext():
            out = objective(batch)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
    return out


# -- pytest fixtures -----------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("sslc_plugin", "the plugin under test, as 'module:plugin-name'")


def _parse_plugin(spec: str) -> tuple[ModuleType, str]:
    module_name, _, name = spec.partition(":")
    module = importlib.import_module(module_name.strip())
    return module, (name.strip() or module_name.strip())


@pytest.fixture
def sslc_plugin(request: pytest.FixtureRequest) -> tuple[ModuleType | Any, str]:
    """(module, plugin name) under test, from the `sslc_plugin` ini option; override to change."""
    spec = request.config.getini("sslc_plugin")
    if not spec:
        pytest.fail("ssl_core.testing: no plugin under test; set `sslc_plugin = "
                    "\"module:name\"` in [tool.pytest.ini_options] or define a `sslc_plugin` "
                    "fixture returning (module, name)", pytrace=False)
    return _parse_plugin(str(spec))


@pytest.fixture
def plugin_host(sslc_plugin: tuple[ModuleType | Any, str]) -> Iterator[PluginHost]:
    """A fresh PluginHost with only the plugin under test: installed plugins stay out."""
    module, name = sslc_plugin
    yield fresh_host(module, name)


@pytest.fixture
def plugin_registry(plugin_host: PluginHost) -> Registry:
    """The registry of `plugin_host`: create components as a recipe would."""
    return plugin_host.registry
