"""Host data onto a device without making the host wait for the device.

The training loop keeps an accelerator busy only while the host runs ahead of it, so nothing
a step runs may wait for the device. Two innocent-looking calls do: `torch.tensor(values,
device="cuda")` is a blocking copy, which first waits for every kernel queued before it, and
a non-blocking copy from pageable memory may be staged by the CUDA driver after waiting for
the stream. These are their sync-free forms, for objectives and `on_device` code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

#: distinct constants kept per process before the dictionary starts over
MAX_CONSTANTS = 256

_CONSTANTS: dict[tuple[tuple[float, ...], torch.device, torch.dtype], Tensor] = {}


def device_constant(values: Sequence[float] | np.ndarray, device: torch.device | str,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """`values` as a 1-D tensor on `device`, copied there once per process (that first copy
    waits; later calls return the same tensor, so never modify it in place)."""
    key = (tuple(float(v) for v in values), torch.device(device), dtype)
    tensor = _CONSTANTS.get(key)
    if tensor is None:
        if len(_CONSTANTS) >= MAX_CONSTANTS:
            _CONSTANTS.clear()
        tensor = _CONSTANTS[key] = torch.tensor(key[0], dtype=dtype, device=key[1])
    return tensor


def to_device(data: np.ndarray | Tensor, device: torch.device) -> Tensor:
    """Host data on `device` through an asynchronous copy: staged in pinned memory on CUDA
    (PyTorch's caching host allocator reuses the block once the copy is done). On the CPU
    the result may share memory with `data`."""
    tensor = torch.as_tensor(data)
    if device.type == "cuda" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)
