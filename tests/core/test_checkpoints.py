"""Loading encoder weights from real checkpoint layouts (MoCo, torchvision, plain, sslc)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from ssl_core.errors import CheckpointError
from ssl_core.models.checkpoints import (
    apply_prefix_map,
    checkpoint_digest,
    find_trunk,
    load_encoder,
)
from ssl_core.plugin.host import get_registry


@pytest.fixture(scope="module")
def registry():
    reg = get_registry()
    if "resnet18" not in reg.names("encoder"):
        pytest.skip("the built-in 'resnet' encoder plugin is not registered")
    return reg


def _source(arch: str = "resnet18", seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)(weights=None)
    # make BN buffers non-default so their loading is checked too
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return net.state_dict()


def _assert_trunk_equal(encoder: torch.nn.Module, source: dict[str, torch.Tensor]) -> None:
    got = encoder.state_dict()
    trunk = {k: v for k, v in source.items() if not k.startswith("fc.")}
    assert set(got) == set(trunk)
    for k, v in trunk.items():
        assert torch.equal(got[k], v), k


def _moco_checkpoint(source: dict[str, torch.Tensor], module: bool) -> dict:
    """The official MoCo v2 layout: encoder_q (trunk + MLP head), encoder_k, queue."""
    pre = "module." if module else ""
    sd: dict[str, torch.Tensor] = {}
    dim = source["fc.weight"].shape[1]
    head = {"fc.0.weight": torch.randn(dim, dim), "fc.0.bias": torch.randn(dim),
            "fc.2.weight": torch.randn(128, dim), "fc.2.bias": torch.randn(128)}
    for k, v in {**{k: v for k, v in source.items() if not k.startswith("fc.")}, **head}.items():
        sd[f"{pre}encoder_q.{k}"] = v.clone()
        sd[f"{pre}encoder_k.{k}"] = v.clone() + 1
    sd[f"{pre}queue"] = torch.randn(128, 64)
    sd[f"{pre}queue_ptr"] = torch.zeros(1, dtype=torch.long)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.03, momentum=0.9)
    return {"epoch": 200, "arch": "resnet18", "state_dict": sd, "optimizer": opt.state_dict()}


@pytest.mark.parametrize("module", [True, False])
def test_official_moco_layout(tmp_path: Path, registry, module: bool) -> None:
    source = _source()
    path = tmp_path / "moco_v2_200ep.pth.tar"
    torch.save(_moco_checkpoint(source, module), path)
    enc, report = load_encoder(path, registry=registry)
    assert report.format == "moco" and report.arch == "resnet18"
    assert report.prefix == ("module.encoder_q." if module else "encoder_q.")
    _assert_trunk_equal(enc, source)
    assert not report.missing and not report.unexpected
    pre = "module." if module else ""
    assert f"{pre}encoder_q.fc.0.weight" in report.ignored
    assert f"{pre}queue" in report.ignored
    assert not enc.training


def test_torchvision_state_dict(tmp_path: Path, registry) -> None:
    source = _source()
    path = tmp_path / "resnet18.pth"
    torch.save(source, path)
    enc, report = load_encoder(path, registry=registry)
    assert report.format == "torchvision" and report.arch == "resnet18"
    assert report.ignored == ["fc.bias", "fc.weight"]
    _assert_trunk_equal(enc, source)
    # also when wrapped
    for wrapper in ("state_dict", "model"):
        wrapped = tmp_path / f"wrapped_{wrapper}.pth"
        torch.save({wrapper: source, "epoch": 90}, wrapped)
        enc, report = load_encoder(wrapped, registry=registry)
        assert report.format == "torchvision"
        _assert_trunk_equal(enc, source)


def test_plain_with_prefix_resnet50(tmp_path: Path, registry) -> None:
    source = _source("resnet50", seed=2)
    sd = {f"trunk.{k}": v for k, v in source.items() if not k.startswith("fc.")}
    sd["heads.0.weight"] = torch.randn(128, 2048)
    path = tmp_path / "pirl.torch"
    torch.save(sd, path)
    enc, report = load_encoder(path, registry=registry)
    assert report.format == "plain" and report.arch == "resnet50"
    assert report.prefix == "trunk." and report.ignored == ["heads.0.weight"]
    _assert_trunk_equal(enc, source)


def test_sslc_training_checkpoint_small_input(tmp_path: Path, registry) -> None:
    torch.manual_seed(3)
    src = registry.create("encoder", {"type": "resnet18", "small_input": True})
    path = tmp_path / "checkpoint.pt"
    torch.save({"sslc_format": 1, "step": 10, "encoder": {"type": "resnet18", "small_input": True},
                "encoder_state_dict": src.state_dict(), "optimizer": {}}, path)
    enc, report = load_encoder(path, registry=registry)
    assert report.format == "sslc" and report.encoder_config["small_input"] is True
    _assert_trunk_equal(enc, src.state_dict())


def test_small_input_inferred_from_conv1(tmp_path: Path, registry) -> None:
    src = registry.create("encoder", {"type": "resnet18", "small_input": True})
    path = tmp_path / "plain_small.pth"
    torch.save({f"backbone.{k}": v for k, v in src.state_dict().items()}, path)
    enc, report = load_encoder(path, registry=registry)
    assert report.encoder_config == {"type": "resnet18", "small_input": True}
    _assert_trunk_equal(enc, src.state_dict())


def test_prefix_map_for_other_layouts(tmp_path: Path, registry) -> None:
    source = _source()
    path = tmp_path / "odd.pth"
    torch.save({"net": {f"student.body.{k}": v for k, v in source.items()}}, path)
    # nested under an unknown wrapper key: found by its keys all the same
    enc, report = load_encoder(path, registry=registry)
    assert report.format == "plain" and report.prefix == "net.student.body."
    _assert_trunk_equal(enc, source)
    flat = tmp_path / "flat.pth"
    torch.save({f"student.body.{k}": v for k, v in source.items()}
               | {"teacher.conv1.weight": torch.zeros(1)}, flat)
    enc, report = load_encoder(flat, prefix_map={"student.body.": ""}, registry=registry)
    _assert_trunk_equal(enc, source)
    assert report.format == "torchvision"
    assert report.unexpected == ["teacher.conv1.weight"]


def test_apply_prefix_map_longest_first() -> None:
    out = apply_prefix_map({"a.b.x": 1, "a.y": 2, "z": 3}, {"a.": "A.", "a.b.": ""})
    assert out == {"x": 1, "A.y": 2, "z": 3}


def test_arch_inference(registry) -> None:
    for arch in ("resnet18", "resnet34", "resnet50"):
        found = find_trunk(_source(arch), registry)
        assert found is not None and found.encoder == arch and found.prefix == ""


def test_vissl_trunk_deep_inside(tmp_path: Path, registry) -> None:
    """VISSL (the authors' PIRL) keeps the trunk under classy_state_dict.base_model.model."""
    source = _source("resnet50", seed=4)
    trunk = {f"_feature_blocks.{k}": v for k, v in source.items() if not k.startswith("fc.")}
    ckpt = {"phase_idx": 799, "classy_state_dict": {"base_model": {"model": {
        "trunk": trunk, "heads": {"0.clf.0.weight": torch.randn(128, 2048)}}}}}
    path = tmp_path / "model_final_checkpoint_phase799.torch"
    torch.save(ckpt, path)
    enc, report = load_encoder(path, registry=registry)
    assert report.arch == "resnet50"
    assert report.prefix == "classy_state_dict.base_model.model.trunk._feature_blocks."
    assert report.ignored == ["classy_state_dict.base_model.model.heads.0.clf.0.weight"]
    _assert_trunk_equal(enc, source)


def test_wrong_arch_is_clear_error(tmp_path: Path, registry) -> None:
    path = tmp_path / "r18.pth"
    torch.save(_source(), path)
    with pytest.raises(CheckpointError, match="shapes do not match encoder 'resnet50'") as info:
        load_encoder(path, arch="resnet50", registry=registry)
    assert "--arch" in info.value.hint


def test_missing_keys_strict_and_report(tmp_path: Path, registry) -> None:
    source = _source()
    partial = {k: v for k, v in source.items() if not k.startswith("layer4.")}
    path = tmp_path / "partial.pth"
    torch.save(partial, path)
    with pytest.raises(CheckpointError, match="missing from the checkpoint") as info:
        load_encoder(path, registry=registry)
    assert "layer4.0.conv1.weight" in info.value.message
    enc, report = load_encoder(path, strict=False, registry=registry)
    assert "layer4.0.conv1.weight" in report.missing
    assert all(k.startswith("layer4.") for k in report.missing)
    assert torch.equal(enc.state_dict()["layer3.0.conv1.weight"], source["layer3.0.conv1.weight"])
    assert any("missing keys" in line for line in report.lines())


def test_missing_bn_counters_are_not_fatal(tmp_path: Path, registry) -> None:
    source = {k: v for k, v in _source().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old_pytorch.pth"
    torch.save(source, path)
    enc, report = load_encoder(path, registry=registry)
    assert not report.missing


def test_unexpected_keys_are_reported(tmp_path: Path, registry) -> None:
    sd = dict(_source())
    sd["layer5.0.conv1.weight"] = torch.zeros(3)
    path = tmp_path / "extra.pth"
    torch.save(sd, path)
    _, report = load_encoder(path, registry=registry)
    assert report.unexpected == ["layer5.0.conv1.weight"]


def test_unknown_layout(tmp_path: Path, registry) -> None:
    path = tmp_path / "weird.pth"
    torch.save({"weights": {"a.weight": torch.zeros(2)}, "epoch": 3}, path)
    with pytest.raises(CheckpointError, match="no registered encoder recognises") as info:
        load_encoder(path, registry=registry)
    assert "weights.a.weight" in info.value.message
    assert "--prefix-map" in (info.value.hint or "") and "--format" in (info.value.hint or "")
    path.write_bytes(b"")
    torch.save([1, 2], path)
    with pytest.raises(CheckpointError, match="unknown checkpoint layout") as info:
        load_encoder(path, registry=registry)
    for fmt in ("moco", "torchvision", "plain", "sslc"):
        assert fmt in info.value.message


def test_explicit_format_mismatch(tmp_path: Path, registry) -> None:
    path = tmp_path / "tv.pth"
    torch.save(_source(), path)
    with pytest.raises(CheckpointError, match="not in the 'moco' layout"):
        load_encoder(path, format="moco", registry=registry)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="notes.pth is not a torch checkpoint") as info:
        load_encoder(path)
    assert info.value.hint and "weights_only" not in str(info.value)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="it is empty"):
        load_encoder(path)
    with pytest.raises(CheckpointError, match="is a directory"):
        load_encoder(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        load_encoder(tmp_path / "absent.pth")


class _Custom:
    """A picklable object weights_only loading refuses."""

    def __init__(self) -> None:
        self.x = 1


def test_weights_only_refusal(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": _source(), "args": _Custom()}, path)
    with pytest.raises(CheckpointError, match="weights_only loading refuses") as info:
        load_encoder(path)
    assert "re-save" in info.value.hint


def test_checkpoint_digest(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 9000
    path.write_bytes(data)
    assert checkpoint_digest(path, chunk_size=1000) == hashlib.sha256(data).hexdigest()
    with pytest.raises(CheckpointError):
        checkpoint_digest(tmp_path / "nope")
