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


# --- the field's other frameworks: one ResNet-18, saved as each framework saves it ---------

def _reference_features(source: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The torchvision-layout original's pooled features: what every layout must give."""
    net = torchvision.models.resnet18(weights=None)
    net.load_state_dict(source)
    net.fc = torch.nn.Identity()
    with torch.no_grad():
        return net.eval()(x)


def _trunk(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in source.items() if not k.startswith("fc.")}


def _shifted(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Other weights of the same shapes (a student, a momentum copy)."""
    return {k: (v + 0.5 if v.is_floating_point() else v.clone()) for k, v in state.items()}


def _dino(source: dict[str, torch.Tensor], teacher_prefix: str) -> dict:
    """facebookresearch/dino main_dino.py: student (DDP) and teacher MultiCropWrapper
    state dicts (backbone + DINOHead), optimizer, epoch, argparse args, loss center."""
    import argparse

    def wrapper(prefix: str, trunk: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        head = {"head.mlp.0.weight": torch.randn(16, 512), "head.mlp.0.bias": torch.randn(16),
                "head.last_layer.weight_g": torch.ones(32, 1),
                "head.last_layer.weight_v": torch.randn(32, 16)}
        return {**{f"{prefix}backbone.{k}": v for k, v in trunk.items()},
                **{prefix + k: v for k, v in head.items()}}

    args = argparse.Namespace(arch="resnet18", patch_size=16, out_dim=32, norm_last_layer=True,
                              momentum_teacher=0.996, use_fp16=False, lr=0.0005,
                              global_crops_scale=(0.4, 1.0), data_path="/data/imagenet/train",
                              output_dir=".", seed=0)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    return {"student": wrapper("module.", _shifted(_trunk(source))),
            "teacher": wrapper(teacher_prefix, _trunk(source)),
            "optimizer": opt.state_dict(), "epoch": 100, "args": args,
            "dino_loss": {"center": torch.zeros(1, 32)},
            "fp16_scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0}}


def _load_and_compare(path: Path, registry, source: dict[str, torch.Tensor], **kw):
    enc, report = load_encoder(path, registry=registry, **kw)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = enc(x)
    assert torch.equal(got, _reference_features(source, x)), report.lines()
    assert not report.missing
    return enc, report


@pytest.mark.parametrize("teacher_prefix", ["module.", ""])
def test_dino_full_checkpoint_teacher_by_default(tmp_path: Path, registry,
                                                 teacher_prefix: str) -> None:
    source = _source()
    path = tmp_path / "checkpoint.pth"
    torch.save(_dino(source, teacher_prefix), path)  # with a real argparse.Namespace
    _, report = _load_and_compare(path, registry, source)
    assert report.arch == "resnet18" and report.prefix == f"teacher.{teacher_prefix}backbone."
    assert "student.module.backbone.conv1.weight" in report.ignored


def test_dino_student_by_checkpoint_key(tmp_path: Path, registry) -> None:
    source = _source()
    path = tmp_path / "checkpoint.pth"
    torch.save(_dino(_source(seed=5), "module."), path)
    ckpt = _dino(source, "module.")
    ckpt["student"], ckpt["teacher"] = _dino(source, "module.")["teacher"], \
        _dino(_source(seed=5), "module.")["teacher"]
    torch.save(ckpt, path)
    _, report = _load_and_compare(path, registry, source, checkpoint_key="student")
    assert report.prefix == "student.module.backbone."
    with pytest.raises(CheckpointError, match="no 'ema' entry") as info:
        load_encoder(path, registry=registry, checkpoint_key="ema")
    assert "student" in str(info.value) and "teacher" in str(info.value)


def _lightning(state: dict[str, torch.Tensor], hparams: object) -> dict:
    """A Lightning .ckpt (what solo-learn and lightly's examples save)."""
    return {"epoch": 9, "global_step": 90, "pytorch-lightning_version": "2.4.0",
            "state_dict": state, "loops": {"fit_loop": {"state_dict": {}}},
            "callbacks": {}, "optimizer_states": [{"state": {}, "param_groups": []}],
            "lr_schedulers": [], "hparams_name": "kwargs", "hyper_parameters": hparams}


def test_lightly_sequential_backbone(tmp_path: Path, registry, monkeypatch) -> None:
    import sys
    import types

    source = _source()
    # lightly: backbone = nn.Sequential(*list(resnet18().children())[:-1])
    net = torchvision.models.resnet18(weights=None)
    net.load_state_dict(source)
    seq = torch.nn.Sequential(*list(net.children())[:-1])
    state = {f"backbone.{k}": v for k, v in seq.state_dict().items()}
    state.update({f"backbone_momentum.{k}": v + 1 for k, v in seq.state_dict().items()
                  if v.is_floating_point()})
    state["projection_head.layers.0.weight"] = torch.randn(128, 512)
    assert "backbone.4.0.conv1.weight" in state and "backbone.0.weight" in state
    # Lightning's AttributeDict hyperparameters, pickled under Lightning's own class path
    mod = types.ModuleType("lightning.fabric.utilities.data")

    class AttributeDict(dict):
        pass

    AttributeDict.__module__, AttributeDict.__qualname__ = mod.__name__, "AttributeDict"
    mod.AttributeDict = AttributeDict  # type: ignore[attr-defined]
    for name in ("lightning", "lightning.fabric", "lightning.fabric.utilities"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    path = tmp_path / "epoch=9-step=90.ckpt"
    torch.save(_lightning(state, AttributeDict(lr=0.06, max_epochs=10)), path)
    monkeypatch.delitem(sys.modules, mod.__name__)  # loading must not need Lightning
    _, report = _load_and_compare(path, registry, source)
    assert report.format == "lightly" and report.prefix == "backbone."
    assert "backbone_momentum.0.weight" in report.ignored


def test_solo_learn_lightning_checkpoint(tmp_path: Path, registry) -> None:
    source = _source()
    state = {**{f"backbone.{k}": v for k, v in _trunk(source).items()},
             **{f"momentum_backbone.{k}": v for k, v in _shifted(_trunk(source)).items()},
             "projector.0.weight": torch.randn(64, 512), "classifier.weight": torch.randn(10, 512),
             "classifier.bias": torch.randn(10)}
    path = tmp_path / "byol-cifar10-ep=9.ckpt"
    torch.save(_lightning(state, {"cfg": {"method": "byol", "backbone": {"name": "resnet18"}}}),
               path)
    _, report = _load_and_compare(path, registry, source)
    assert report.prefix == "backbone."


def test_moco_v3_base_encoder(tmp_path: Path, registry) -> None:
    source = _source()
    mlp = {"fc.0.weight": torch.randn(64, 512), "fc.1.weight": torch.ones(64),
           "fc.1.bias": torch.zeros(64), "fc.3.weight": torch.randn(32, 64)}
    state = {**{f"module.base_encoder.{k}": v for k, v in {**_trunk(source), **mlp}.items()},
             **{f"module.momentum_encoder.{k}": v for k, v in _shifted(_trunk(source)).items()},
             "module.predictor.0.weight": torch.randn(32, 32)}
    path = tmp_path / "r-18-100ep.pth.tar"
    torch.save({"epoch": 100, "arch": "resnet18", "state_dict": state,
                "optimizer": {"state": {}, "param_groups": []},
                "scaler": {"scale": 1024.0, "_growth_tracker": 3}}, path)
    _, report = _load_and_compare(path, registry, source)
    assert report.prefix == "module.base_encoder."
    enc, report = load_encoder(path, registry=registry, checkpoint_key="momentum_encoder")
    assert report.prefix == "module.momentum_encoder."
    assert torch.equal(enc.state_dict()["conv1.weight"], source["conv1.weight"] + 0.5)


def test_mmselfsup_mmpretrain_checkpoint(tmp_path: Path, registry) -> None:
    source = _source()
    state = {**{f"backbone.{k}": v for k, v in _trunk(source).items()},
             "neck.mlp.0.weight": torch.randn(64, 512),
             **{f"momentum_encoder.module.0.{k}": v for k, v in _shifted(_trunk(source)).items()},
             "head.loss_module.queue": torch.randn(64, 16)}
    path = tmp_path / "epoch_200.pth"
    torch.save({"meta": {"mmengine_version": "0.10.3", "epoch": 200, "iter": 1000,
                         "experiment_name": "mocov2_resnet18", "seed": 0},
                "state_dict": state, "message_hub": {"log_scalars": {}, "runtime_info": {}},
                "optimizer": {"state": {}, "param_groups": []}, "param_schedulers": []}, path)
    _, report = _load_and_compare(path, registry, source)
    assert report.prefix == "backbone."


def test_swav_checkpoint(tmp_path: Path, registry) -> None:
    source = _source()
    state = {**{f"module.{k}": v for k, v in _trunk(source).items()},
             "module.projection_head.0.weight": torch.randn(64, 512),
             "module.prototypes.weight": torch.randn(30, 64)}
    for name, obj in (("swav_800ep_pretrain.pth.tar", state),
                      ("ckp-99.pth", {"epoch": 100, "state_dict": state, "optimizer": {}})):
        torch.save(obj, tmp_path / name)
        _, report = _load_and_compare(tmp_path / name, registry, source)
        assert report.prefix == "module."


def test_timm_train_checkpoint(tmp_path: Path, registry) -> None:
    import argparse

    source = _source()
    path = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 99, "arch": "resnet18", "state_dict": dict(source),
                "state_dict_ema": _shifted(source), "optimizer": {}, "version": 2,
                "args": argparse.Namespace(model="resnet18", lr=0.1), "metric": 71.2}, path)
    _, report = _load_and_compare(path, registry, source)
    assert report.arch == "resnet18"


def test_safetensors_file(tmp_path: Path, registry) -> None:
    from safetensors.torch import save_file

    source = _source()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    _, report = _load_and_compare(path, registry, source)
    assert report.format == "torchvision"
    path.write_bytes(path.read_bytes()[:200])  # a partial download
    with pytest.raises(CheckpointError, match="damaged safetensors"):
        load_encoder(path, registry=registry)


def test_unlisted_globals_are_still_refused(tmp_path: Path) -> None:
    import argparse

    path = tmp_path / "mixed.pth"
    torch.save({"state_dict": _source(), "args": argparse.Namespace(lr=1), "x": _Custom()}, path)
    with pytest.raises(CheckpointError, match="_Custom") as info:
        load_encoder(path)
    assert "Namespace" not in str(info.value)
