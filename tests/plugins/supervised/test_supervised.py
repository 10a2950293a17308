"""`supervised`: cross-entropy on the pair sampler's labels through a linear head; the contract
kit, clear errors, and the real trainer lowering the loss on a tiny labelled image folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import require_plugins
from PIL import Image
from torch import nn

from ssl_core import Encoder
from ssl_core.errors import ComponentError
from ssl_core.recipe.schema import TrainConfig
from ssl_core.results.layout import METRICS_FILE
from ssl_core.run.trainer import Trainer
from ssl_core.testing import (
    check_objective,
    check_params_reject_unknown_keys,
    check_registers_cleanly,
    fresh_host,
)
from sslc_plugins import supervised as plugin
from sslc_plugins.aggressive_crop import AggressiveCrop, AggressiveCropParams
from sslc_plugins.image_folder import ImageFolder, ImageFolderParams
from sslc_plugins.supervised import Supervised, SupervisedParams


@pytest.fixture(autouse=True)
def _plugins() -> None:
    require_plugins("supervised")


class TinyEncoder(Encoder):
    feature_dim = 8

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x)).mean(dim=(2, 3))

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        m = F.relu(self.conv(x))
        return {"layer3": m, "pooled": m.mean(dim=(2, 3))}


def objective(num_classes: int = 3, **kw) -> Supervised:
    return Supervised(SupervisedParams(num_classes=num_classes, **kw))


def batch(labels: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    return {"query": torch.rand(n, 3, 16, 16, generator=g), "key": torch.rand(n, 3, 16, 16, generator=g),
            "index": torch.arange(n), "label": torch.tensor(labels)}


def test_contract_and_params() -> None:
    check_registers_cleanly(plugin, "supervised")
    registry = fresh_host(plugin, "supervised").registry
    check_params_reject_unknown_keys("objective", "supervised", registry=registry,
                                     config={"num_classes": 3})
    torch.manual_seed(0)
    out = check_objective(objective(), TinyEncoder(), batch([0, 1, 2, 1]))
    assert set(out.metrics) == {"acc1"}
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in out.metrics.values())
    with pytest.raises(ComponentError, match="num_classes"):
        registry.create("objective", {"type": "supervised"})  # required: the classifier's size
    with pytest.raises(ComponentError):
        registry.create("objective", {"type": "supervised", "num_classes": 1})


def test_an_encoder_without_feature_dim_is_refused_by_name() -> None:
    class NoDim(TinyEncoder):
        feature_dim = 0

    with pytest.raises(ComponentError, match="encoder NoDim has no positive integer `feature_dim`"):
        objective().bind(NoDim())


def test_loss_is_cross_entropy_of_the_linear_head_and_key_is_unused() -> None:
    torch.manual_seed(0)
    obj, enc = objective(label_smoothing=0.1), TinyEncoder()
    obj.bind(enc)
    b = batch([2, 0, 1, 1])
    out = obj(b)
    assert obj.fc is not None and obj.fc.in_features == 8 and obj.fc.out_features == 3
    logits = obj.fc(enc(b["query"]))
    expected = F.cross_entropy(logits, b["label"], label_smoothing=0.1)
    torch.testing.assert_close(out.loss, expected)
    acc = (logits.argmax(1) == b["label"]).float().mean() * 100
    torch.testing.assert_close(out.metrics["acc1"], acc)
    other_key = dict(b, key=torch.zeros_like(b["key"]))
    torch.testing.assert_close(obj(other_key).loss, out.loss)
    # the head is a submodule, next to the trunk: both are trained and checkpointed
    assert {k.split(".")[0] for k in obj.state_dict()} == {"trunk", "fc"}


def test_a_batch_without_labels_names_the_objective_and_the_sampler() -> None:
    obj = objective()
    obj.bind(TinyEncoder())
    b = {k: v for k, v in batch([0, 1]).items() if k != "label"}
    with pytest.raises(ComponentError, match="objective supervised needs a 'label'") as err:
        obj(b)
    assert "'query', 'key', 'index'" in err.value.message
    assert "aggressive-crop" in (err.value.hint or "")


def test_a_label_beyond_num_classes_is_a_component_error() -> None:
    obj = objective(num_classes=2)
    obj.bind(TinyEncoder())
    with pytest.raises(ComponentError, match="label 2 .*num_classes=2 is too small"):
        obj(batch([0, 2]))


def test_use_before_bind_and_double_bind_are_errors() -> None:
    obj = objective()
    with pytest.raises(ComponentError, match="before bind"):
        _ = obj.encoder
    obj.bind(TinyEncoder())
    with pytest.raises(ComponentError, match="already bound"):
        obj.bind(TinyEncoder())


# -- labels from the pair sampler, and real training ----------------------------------------


def colour_folder(root: Path, per_class: int = 8, size: int = 24) -> Path:
    """An ImageNet-style folder whose classes differ by colour: learnable in a few steps."""
    rng = np.random.default_rng(0)
    tints = {"blue": (30, 60, 220), "red": (220, 40, 30)}
    for cls, rgb in tints.items():
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            img = np.asarray(rgb, dtype=np.float64) + rng.normal(0, 25, (size, size, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / cls / f"{cls}_{i}.png")
    return root


def test_aggressive_crop_adds_sorted_class_indices(tmp_path: Path) -> None:
    ds = ImageFolder(ImageFolderParams(root=colour_folder(tmp_path / "images", per_class=2)))
    pairs = AggressiveCrop(AggressiveCropParams(size=16)).pairs(ds)
    labels = [pairs[i]["label"] for i in range(len(pairs))]
    assert labels == [0, 0, 1, 1]  # blue, blue, red, red: sorted class names
    assert [r.label for r in ds.records()] == ["blue", "blue", "red", "red"]
    # augment_on: gpu carries the label through the collate and on_device too
    gpu = AggressiveCrop(AggressiveCropParams(size=16, augment_on="gpu"))
    views = gpu.pairs(ds)
    out = gpu.on_device(torch.utils.data.default_collate([views[i] for i in range(4)]))
    assert out["label"].tolist() == [0, 0, 1, 1] and out["query"].dtype == torch.float32


def test_a_few_trainer_steps_on_a_labelled_folder_lower_the_loss(tmp_path: Path) -> None:
    ds = ImageFolder(ImageFolderParams(root=colour_folder(tmp_path / "images")))
    sampler = AggressiveCrop(AggressiveCropParams(size=16))
    torch.manual_seed(0)
    obj = objective(num_classes=2)
    obj.bind(TinyEncoder())
    config = TrainConfig(dataset="-", pair_sampler={}, objective={}, epochs=6, batch_size=8, lr=0.1,
                         num_workers=0, seed=0, log_every=2, schedule="constant")
    run_dir = tmp_path / "run"
    trainer = Trainer(obj, sampler.pairs(ds), config, device=torch.device("cpu"),
                      checkpoint_path=run_dir / "checkpoint.pt", fingerprint="t",
                      encoder_config={})
    result = trainer.fit()
    assert result.steps == 12
    first, last = np.mean(result.history[:4]), np.mean(result.history[-4:])
    assert last < 0.5 * first, result.history
    lines = [json.loads(x) for x in (run_dir / METRICS_FILE).read_text().splitlines()]
    acc = [x["acc1"] for x in lines if x.get("event") == "step" and "acc1" in x]
    assert len(acc) >= 4 and np.mean(acc[-4:]) > 80 > acc[0], acc  # chance: 50
