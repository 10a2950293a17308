"""Every built-in plugin keeps the promises the contract kit checks for a third-party one:
it registers alone in a fresh host (classes implementing their kind, `__init__(params)`,
`ssl_core.Params`, a summary), and each component refuses an unknown and a misspelt
parameter, naming it. Component-specific checks live in each plugin's own tests."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import tomllib

from ssl_core.plugin.host import PluginHost
from ssl_core.testing import check_params_reject_unknown_keys, check_registers_cleanly

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())[
    "project"]["entry-points"]["sslc.plugins"]


def _required(params: Any) -> dict[str, Any]:
    """Values for the required parameters a component can be validated with (a path for a
    dataset's `root`, ...)."""
    out: dict[str, Any] = {}
    for name, field in params.model_fields.items():
        if not field.is_required():
            continue
        if name in ("root", "path"):
            out[name] = "/data"
        elif name == "name":
            out[name] = "resnet18"
        elif name == "sweep":
            out[name] = "rotation"
        elif name == "num_classes":
            out[name] = 10
        else:
            pytest.fail(f"required parameter {name!r} has no stand-in value: add one to _required")
    return out


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_builtin_plugin_keeps_the_registration_contract(name: str) -> None:
    module = importlib.import_module(ENTRY_POINTS[name])
    registrations = check_registers_cleanly(module, name)
    # a sampler composing view augmentations validates them: give it the default's plugin
    host = PluginHost()
    host.add_plugin(module, name)
    if name != "aggressive-crop":
        host.add_plugin(importlib.import_module(ENTRY_POINTS["aggressive-crop"]), "aggressive-crop")
    registry = host.registry
    for reg in registrations:
        if reg.params is not None:
            check_params_reject_unknown_keys(reg.kind, reg.name, registry=registry,
                                             config=_required(reg.params))
