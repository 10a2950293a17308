"""The plugin contract kit (ssl_core.testing): it passes a correct plugin and names each
broken promise of a faulty one. Run on the fake plugin, never the built-ins."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import fake_plugin
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, model_validator

from ssl_core import (
    Dataset,
    Encoder,
    EvaluationResult,
    Evaluator,
    InvarianceProbe,
    ObjectiveOutput,
    Params,
    Preprocessing,
    ProbeItem,
    ProbeSet,
    hookimpl,
)
from ssl_core.testing import (
    ContractViolation,
    _parse_plugin,
    check_dataset,
    check_encoder,
    check_entry_point,
    check_evaluator,
    check_invariance_probe,
    check_objective,
    check_pair_sampler,
    check_params_reject_unknown_keys,
    check_registers_cleanly,
    check_steps_never_wait,
    forbid_host_syncs,
    fresh_host,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    return tmp_path


def batch(n: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"query": torch.rand(n, 3, 16, 16, generator=g),
            "key": torch.rand(n, 3, 16, 16, generator=g)}


def encoder(width: int = 8) -> fake_plugin.TinyNet:
    return fake_plugin.TinyNet(fake_plugin.TinyNetParams(width=width))


def objective() -> fake_plugin.InBatchInfoNCE:
    return fake_plugin.InBatchInfoNCE(fake_plugin.InfoNCEParams())


def one_encoder_plugin(cls: object, params: object, summary: str = "s") -> type:
    class P:
        @staticmethod
        @hookimpl
        def register_encoders(register):
            register("x-net", cls, params=params, summary=summary)

    return P


# -- a correct plugin passes every check ---------------------------------------------------
def test_the_fake_plugin_keeps_every_promise(folder: Path) -> None:
    regs = check_registers_cleanly(fake_plugin, "fake")
    assert [(r.kind, r.name) for r in regs] == [
        ("dataset", "fake-folder"), ("pair-sampler", "fake-noisy-copies"),
        ("encoder", "fake-net"), ("objective", "fake-infonce")]
    registry = fresh_host(fake_plugin, "fake").registry
    check_params_reject_unknown_keys("dataset", "fake-folder", registry=registry,
                                     config={"root": str(folder)})
    for kind, name in [("pair-sampler", "fake-noisy-copies"), ("encoder", "fake-net"),
                       ("objective", "fake-infonce")]:
        check_params_reject_unknown_keys(kind, name, registry=registry)
    dataset = registry.create("dataset", {"type": "fake-folder", "root": str(folder)})
    assert len(check_dataset(dataset)) == 3
    check_pair_sampler(registry.create("pair-sampler", {"type": "fake-noisy-copies"}), dataset)
    check_encoder(encoder())
    out = check_objective(objective(), encoder(), batch())
    assert set(out.metrics) == {"loss", "acc1"}


def test_parse_plugin_spec() -> None:
    assert _parse_plugin("fake_plugin:fake") == (fake_plugin, "fake")
    assert _parse_plugin("fake_plugin") == (fake_plugin, "fake_plugin")


# -- registration ---------------------------------------------------------------------------
def test_registering_a_function_instead_of_the_class_is_named() -> None:
    plugin = one_encoder_plugin(lambda p: encoder(), fake_plugin.TinyNetParams)
    with pytest.raises(ContractViolation, match="register the component's class itself"):
        check_registers_cleanly(plugin, "x")


def test_params_must_subclass_sslc_params() -> None:
    class Loose(BaseModel):
        width: int = 8

    with pytest.raises(ContractViolation, match="must subclass ssl_core.Params"):
        check_registers_cleanly(one_encoder_plugin(fake_plugin.TinyNet, Loose), "x")


def test_class_must_implement_its_kind_and_take_the_params() -> None:
    class NotAnEncoder:
        def __init__(self, params: fake_plugin.TinyNetParams) -> None: ...

    with pytest.raises(ContractViolation, match="must subclass ssl_core.Encoder"):
        check_registers_cleanly(one_encoder_plugin(NotAnEncoder, fake_plugin.TinyNetParams), "x")

    class TwoArgs(fake_plugin.TinyNet):
        def __init__(self, params: fake_plugin.TinyNetParams, extra: int) -> None: ...

    with pytest.raises(ContractViolation, match="exactly one argument"):
        check_registers_cleanly(one_encoder_plugin(TwoArgs, fake_plugin.TinyNetParams), "x")


def test_missing_summary_and_failing_hook_are_named() -> None:
    with pytest.raises(ContractViolation, match="one-line summary"):
        check_registers_cleanly(one_encoder_plugin(fake_plugin.TinyNet,
                                                   fake_plugin.TinyNetParams, ""), "x")

    class Failing:
        @staticmethod
        @hookimpl
        def register_encoders(register):
            raise RuntimeError("hook exploded")

    with pytest.raises(ContractViolation, match="failed to register.*hook exploded"):
        check_registers_cleanly(Failing, "failing")


def test_params_that_swallow_unknown_keys_are_caught(folder: Path) -> None:
    class Swallowing(Params):
        width: int = 8

        @model_validator(mode="before")
        @classmethod
        def _drop_unknown(cls, data: dict) -> dict:
            return {k: v for k, v in data.items() if k in cls.model_fields}

    class Net(fake_plugin.TinyNet):
        def __init__(self, params: Swallowing) -> None:
            super().__init__(fake_plugin.TinyNetParams(width=params.width))

    registry = fresh_host(one_encoder_plugin(Net, Swallowing), "x").registry
    with pytest.raises(ContractViolation, match="accepted the unknown parameter"):
        check_params_reject_unknown_keys("encoder", "x-net", registry=registry)
    fake = fresh_host(fake_plugin, "fake").registry
    with pytest.raises(ContractViolation, match="pass config="):
        check_params_reject_unknown_keys("dataset", "fake-folder", registry=fake)


# -- components ---------------------------------------------------------------------------
class PythonRandomPairs(torch.utils.data.Dataset):
    """Draws its noise from Python's `random`: the trainer's torch seeding does not fix it."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x = torch.zeros(3, 4, 4)
        return {"query": x + random.random(), "key": x + torch.rand(())}


class RandomSampler(fake_plugin.NoisyCopies):
    def pairs(self, dataset: Dataset) -> torch.utils.data.Dataset:
        return PythonRandomPairs()


class MismatchedSampler(fake_plugin.NoisyCopies):
    def pairs(self, dataset: Dataset) -> torch.utils.data.Dataset:
        inner = super().pairs(dataset)

        class Pairs(torch.utils.data.Dataset):
            def __len__(self) -> int:
                return len(inner)

            def __getitem__(self, i: int) -> dict:
                item = inner[i]
                return {**item, "key": item["key"][:, :8]}

        return Pairs()


def test_pair_sampler_violations_are_named(folder: Path) -> None:
    dataset = fake_plugin.FakeFolder(fake_plugin.FakeFolderParams(root=folder))
    params = fake_plugin.NoisyCopiesParams()
    with pytest.raises(ContractViolation, match="same torch seed"):
        check_pair_sampler(RandomSampler(params), dataset)
    with pytest.raises(ContractViolation, match="differ in shape"):
        check_pair_sampler(MismatchedSampler(params), dataset)
    empty = fake_plugin.FakeFolder(fake_plugin.FakeFolderParams(root=folder / "none"))
    (folder / "none").mkdir()
    with pytest.raises(ContractViolation, match="empty dataset"):
        check_pair_sampler(fake_plugin.NoisyCopies(params), empty)


def test_encoder_violations_are_named() -> None:
    lying = encoder(8)
    lying.feature_dim = 9
    with pytest.raises(ContractViolation, match=r"expected \(N, feature_dim\)"):
        check_encoder(lying)

    class NoLayer3(fake_plugin.TinyNet):
        def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"pooled": super().feature_maps(x)["pooled"]}

    with pytest.raises(ContractViolation, match="'layer3'"):
        check_encoder(NoLayer3(fake_plugin.TinyNetParams()))
    assert isinstance(lying, Encoder)


def test_objective_violations_are_named() -> None:
    class Copying(fake_plugin.InBatchInfoNCE):
        def bind(self, encoder: Encoder) -> None:
            self.trunk = copy.deepcopy(encoder)

    with pytest.raises(ContractViolation, match="return the encoder given to bind"):
        check_objective(Copying(fake_plugin.InfoNCEParams()), encoder(), batch())

    class Hidden(fake_plugin.InBatchInfoNCE):
        def bind(self, encoder: Encoder) -> None:
            self._hidden = [encoder]  # not a submodule: the optimizer would never see it

        @property
        def encoder(self) -> Encoder:
            return self._hidden[0]

    with pytest.raises(ContractViolation, match="submodule"):
        check_objective(Hidden(fake_plugin.InfoNCEParams()), encoder(), batch())

    class Detached(fake_plugin.InBatchInfoNCE):
        def forward(self, batch: dict) -> object:
            out = super().forward({k: v for k, v in batch.items()})
            out.loss = out.loss.detach().requires_grad_()
            return out

    with pytest.raises(ContractViolation, match="no gradient"):
        check_objective(Detached(fake_plugin.InfoNCEParams()), encoder(), batch())


def test_check_entry_point_loads_an_installed_plugin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "sslcfake_kit-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sslcfake-kit\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[sslc.plugins]\nkitfake = fake_plugin\n"
                                           "kitbroken = sslcfake_no_such_module\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("SSLC_LOAD_PLUGINS", "kitfake,kitbroken")
    monkeypatch.delenv("SSLC_STRICT_PLUGINS", raising=False)
    host = check_entry_point("kitfake", distribution="sslcfake-kit")
    assert "fake-net" in host.registry.names("encoder")
    with pytest.raises(ContractViolation, match="not 'other-dist'"):
        check_entry_point("kitfake", distribution="other-dist")
    with pytest.raises(ContractViolation, match="'kitbroken' failed.*No module named"):
        check_entry_point("kitbroken")
    with pytest.raises(ContractViolation, match="no plugin 'absent'"):
        check_entry_point("absent")
    monkeypatch.setenv("SSLC_STRICT_PLUGINS", "1")  # a failure raises inside sslc: still named
    with pytest.raises(ContractViolation, match="'kitbroken' failed.*No module named"):
        check_entry_point("kitbroken")


def test_objective_metrics_are_finite_numbers_or_0d_tensors() -> None:
    class TensorMetric(fake_plugin.InBatchInfoNCE):
        def forward(self, batch: dict) -> object:
            out = super().forward(batch)
            out.metrics = {"acc1": torch.tensor(50.0)}  # fine: read back only when logging
            return out

    check_objective(TensorMetric(fake_plugin.InfoNCEParams()), encoder(), batch())

    class NanMetric(fake_plugin.InBatchInfoNCE):
        def forward(self, batch: dict) -> object:
            out = super().forward(batch)
            out.metrics = {"acc1": torch.tensor(float("nan"))}
            return out

    with pytest.raises(ContractViolation, match="metric 'acc1' must be a finite"):
        check_objective(NanMetric(fake_plugin.InfoNCEParams()), encoder(), batch())


@pytest.mark.parametrize("call, named", [
    (lambda x: x.sum().item(), "`item`"),
    (lambda x: float(x.sum()), "`__float__`"),
    (lambda x: bool(x.sum() > 0), "`__bool__`"),
    (lambda x: x.tolist(), "`tolist`"),
    (lambda x: x.nonzero(), "`nonzero`"),
    (lambda x: x[x > 0], "boolean mask"),
    (lambda x: x.__setitem__(x > 0, 0.0), "boolean mask"),
    (lambda x: torch.where(x > 0), "torch.where(condition)"),
    (lambda x: torch.tensor([1.0], device=x.device), "torch.tensor(..., device=...)"),
    (lambda x: x.new_tensor([1.0]), "new_tensor"),
    (lambda x: print(x), "`__repr__`"),
])
def test_forbid_host_syncs_names_each_call_that_waits_for_the_device(call, named: str) -> None:
    with pytest.raises(ContractViolation, match="makes the host wait") as err, forbid_host_syncs():
        call(torch.arange(4.0))
    assert named in str(err.value)


def test_forbid_host_syncs_lets_device_side_work_through() -> None:
    x = torch.arange(6.0).view(2, 3)
    with forbid_host_syncs():
        y = torch.where(x > 2, x, 0.0).sum(0)[1:] * x.new_ones(2)
        z = x.to(torch.float64).index_select(0, torch.arange(1)).flip(-1)
        tiny = torch.tensor([1.0, 2.0])  # on the host, no device: no copy
    assert y.tolist() == [4.0, 5.0] and z.tolist() == [[2.0, 1.0, 0.0]] and tiny.shape == (2,)


def test_check_steps_never_wait_passes_tensor_metrics_and_names_a_read_back() -> None:
    class TensorMetrics(fake_plugin.InBatchInfoNCE):
        """The fake objective with its metrics left on the device."""

        def forward(self, batch: dict) -> ObjectiveOutput:
            q = F.normalize(self.encoder(batch["query"]), dim=1)
            k = F.normalize(self.encoder(batch["key"]), dim=1)
            loss = F.cross_entropy(q @ k.T / self.params.temperature, torch.arange(len(q)))
            return ObjectiveOutput(loss, {"loss": loss.detach()})

    good = TensorMetrics(fake_plugin.InfoNCEParams())
    good.bind(encoder())
    out = check_steps_never_wait(good, [batch(), batch()])
    assert torch.isfinite(out.loss)

    reads_back = objective()  # its metrics are floats: `.item()` in every step
    reads_back.bind(encoder())
    with pytest.raises(ContractViolation, match="`item` makes the host wait"):
        check_steps_never_wait(reads_back, [batch(), batch()])
    with pytest.raises(ContractViolation, match="at least two batches"):
        check_steps_never_wait(good, [batch()])


# -- invariance probes and evaluators ------------------------------------------------------------
class _Probe(InvarianceProbe):
    """Every image, one trajectory per `group`; `flip_labels` breaks the one-class rule."""

    dataset_type = "fake-folder"

    def __init__(self, flip_labels: bool = False) -> None:
        self.flip_labels = flip_labels

    def build(self, dataset: Dataset) -> ProbeSet:
        items = [ProbeItem(r, "t", f"c{i % 2}" if self.flip_labels else "c")
                 for i, r in enumerate(dataset.records())]
        return ProbeSet("fake", items, (12, 12))


class _Evaluator(Evaluator):
    """The mean of the features' first column; `noise` draws unseeded, `nan` breaks it."""

    def __init__(self, noise: bool = False, nan: bool = False) -> None:
        self.noise, self.nan = noise, nan

    def evaluate(self, dataset, features, *, test_dataset=None, progress=None) -> EvaluationResult:
        feats = features("all", dataset.records(), Preprocessing((12, 12)))
        value = float(feats[:, 0].mean()) + (random.random() if self.noise else 0.0)
        return EvaluationResult({"score": float("nan") if self.nan else value})


def test_invariance_probe_contract_passes_a_good_probe_and_names_broken_ones(folder: Path) -> None:
    ds = fake_plugin.FakeFolder(fake_plugin.FakeFolderParams(root=str(folder)))
    probe_set = check_invariance_probe(_Probe(), ds, encoder=encoder(), top_k=(1,))
    assert len(probe_set.items) == 3
    with pytest.raises(ContractViolation, match="trajectory 't' spans two classes"):
        check_invariance_probe(_Probe(flip_labels=True), ds)


def test_evaluator_contract_passes_a_good_evaluator_and_names_broken_ones(folder: Path) -> None:
    ds = fake_plugin.FakeFolder(fake_plugin.FakeFolderParams(root=str(folder)))
    result = check_evaluator(_Evaluator(), ds, encoder())
    assert set(result.metrics) == {"score"}
    with pytest.raises(ContractViolation, match="metric 'score' is not a finite number"):
        check_evaluator(_Evaluator(nan=True), ds, encoder())
    with pytest.raises(ContractViolation, match="a second run gave other metrics"):
        check_evaluator(_Evaluator(noise=True), ds, encoder())


class ChannelsLastSampler(fake_plugin.NoisyCopies):
    """Views as (H, W, C), the layout PIL and numpy give."""

    def pairs(self, dataset):
        inner = super().pairs(dataset)

        class HWC(torch.utils.data.Dataset):
            def __len__(self) -> int:
                return len(inner)

            def __getitem__(self, i):
                item = inner[i]
                return {**item, **{k: item[k].permute(1, 2, 0).contiguous() for k in ("query", "key")}}

        return HWC()


def test_channels_last_views_are_named(folder: Path) -> None:
    ds = fake_plugin.FakeFolder(fake_plugin.FakeFolderParams(root=str(folder)))
    sampler = ChannelsLastSampler(fake_plugin.NoisyCopiesParams())
    with pytest.raises(ContractViolation, match=r"a view is channels-first \(C, H, W\)"):
        check_pair_sampler(sampler, ds)
