"""Device names: the one check of a name a user gave (`--device`, a component's `device`
parameter) and its resolution to a torch device."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ssl_core.errors import DeviceError

if TYPE_CHECKING:
    import torch

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device(name: str, option: str = "--device") -> str:
    """A device name that this machine has: auto, cpu, cuda, cuda:N or mps (normalised).

    Syntax is checked without torch; torch is imported only to ask whether a CUDA or MPS
    device exists, so a bad name fails at once and `auto`/`cpu` cost nothing."""
    text = name.strip().lower()
    if not _DEVICE.match(text):
        raise DeviceError(f"{option} {name!r} is not a device", "use auto, cpu, cuda, cuda:N (N = 0, 1, ...) or mps")
    if text in ("auto", "cpu"):
        return text
    import torch

    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"{option} {name}: no CUDA device is available on this machine",
                              f"use {option} cpu, or {option} auto to use CUDA only where it exists")
        count = torch.cuda.device_count()
        index = int(text.partition(":")[2] or 0)
        if index >= count:
            raise DeviceError(f"{option} {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}",
                              f"use {option} cuda:0" + (f" ... cuda:{count - 1}" if count > 1 else ""))
        return text
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        raise DeviceError(f"{option} mps: no Apple MPS device is available on this machine",
                          f"use {option} cpu, or {option} auto")
    return text


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """The torch device `name` means on this machine (`auto`: CUDA when there is one), after
    `check_device`; `option` names where the name came from in its errors."""
    import torch

    text = check_device(name, option)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(text)
