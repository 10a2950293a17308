"""ssl_core.kit.transfer: device constants made once, host data sent without a blocking copy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssl_core import device_constant, to_device
from ssl_core.kit import transfer
from ssl_core.testing import forbid_host_syncs


def test_device_constant_is_made_once_per_values_device_and_dtype() -> None:
    a = device_constant((0.5, 1.0, 2.0), "cpu")
    assert a.dtype == torch.float32 and a.tolist() == [0.5, 1.0, 2.0]
    with forbid_host_syncs():  # the second call copies nothing
        assert device_constant([0.5, 1.0, 2.0], torch.device("cpu")) is a
        assert device_constant(np.array([0.5, 1.0, 2.0]), "cpu") is a
    b = device_constant((0.5, 1.0, 2.0), "cpu", torch.float64)
    assert b is not a and b.dtype == torch.float64
    assert device_constant((0.5, 1.0, 3.0), "cpu") is not a


def test_device_constants_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "_CONSTANTS", {})
    for i in range(transfer.MAX_CONSTANTS + 5):
        device_constant((float(i),), "cpu")
    assert len(transfer._CONSTANTS) <= transfer.MAX_CONSTANTS


def test_to_device_on_the_cpu_keeps_values_and_dtype() -> None:
    data = np.arange(5, dtype=np.int64)
    with forbid_host_syncs():
        out = to_device(data, torch.device("cpu"))
    assert out.dtype == torch.int64 and out.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.gpu
def test_to_device_on_cuda_pins_and_copies_asynchronously() -> None:
    device = torch.device("cuda")
    device_constant((1.0, 2.0), device)  # warm-up
    data = np.arange(1000, dtype=np.float32)
    with forbid_host_syncs():
        out = to_device(data, device)
        same = device_constant((1.0, 2.0), device)
    assert out.is_cuda and same.is_cuda
    assert torch.equal(out.cpu(), torch.from_numpy(data)) and same.tolist() == [1.0, 2.0]
