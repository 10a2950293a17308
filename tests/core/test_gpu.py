"""CUDA paths: mixed-precision training steps and feature extraction (skipped without a GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import require_plugins

from ssl_core.plugin.host import get_registry
from ssl_core.recipe.schema import TrainConfig
from ssl_core.run.trainer import Trainer
from ssl_core.testing import forbid_host_syncs


@pytest.mark.gpu
def test_amp_training_steps_on_cuda(tmp_path: Path) -> None:
    require_plugins("resnet18", "moco-queue")
    reg = get_registry()
    torch.manual_seed(0)
    encoder = reg.create("encoder", {"type": "resnet18"})
    objective = reg.create("objective", {"type": "moco-queue", "queue_size": 64, "dim": 32})
    objective.bind(encoder)
    cfg = TrainConfig(dataset="-", pair_sampler={}, objective={}, batch_size=16, precision="amp")
    trainer = Trainer(objective, [None] * 16, cfg, device=torch.device("cuda"),  # type: ignore[arg-type]
                      checkpoint_path=tmp_path / "ckpt.pt", fingerprint="gpu", encoder_config={})
    assert trainer.amp_dtype is not None
    batch = {"query": torch.randn(16, 3, 64, 64), "key": torch.randn(16, 3, 64, 64)}
    losses = [trainer.train_step(batch) for _ in range(3)]
    assert all(np.isfinite(losses))
    pinned = {k: v.pin_memory() for k, v in batch.items()}  # as the trainer's loader pins
    with forbid_host_syncs():  # warmed up: the step launches without waiting for the GPU
        trainer.run_step(pinned)
    trainer.save()
    state = torch.load(tmp_path / "ckpt.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 0 and "encoder_state_dict" in state


@pytest.mark.gpu
def test_cuda_features_match_cpu(tmp_path: Path) -> None:
    require_plugins("resnet18")
    from PIL import Image

    from ssl_core.interfaces import ImageRecord, ProbeItem, ProbeSet
    from ssl_core.measure.features import extract_features

    paths = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    ps = ProbeSet("t", [ProbeItem(ImageRecord(p), str(i // 3), "c") for i, p in enumerate(paths)], (32, 32))
    torch.manual_seed(0)
    encoder = get_registry().create("encoder", {"type": "resnet18"})
    flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    cpu = extract_features(encoder, ps, device="cpu", progress=False)
    gpu = extract_features(encoder, ps, device="cuda", progress=False)
    # Full fp32 on both sides: only the order of floating-point sums differs between the
    # CPU and cuDNN convolution algorithms, ~1e-6 relative per layer over 18 layers, so
    # 1e-4 relative bounds it with room. TF32 (10-bit mantissa, ~1e-3 relative per op)
    # would fail it: that is what made this test fail on an H200 before probing ran in fp32.
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4 * float(np.abs(cpu).max()))
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == flags
