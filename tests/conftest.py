"""Shared test set-up: a per-session cache (rendered worlds, features) and CLI helpers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch

from ssl_core.plugin.host import reset_host


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Hermetic caches: rendered worlds and features live in this session's temp dir, shared
    by its tests, never read from (or left in) the user's cache."""
    old = os.environ.get("SSLC_CACHE_DIR")
    os.environ["SSLC_CACHE_DIR"] = str(tmp_path_factory.mktemp("sslc-cache"))
    yield
    if old is None:
        os.environ.pop("SSLC_CACHE_DIR", None)
    else:
        os.environ["SSLC_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _fresh_plugins() -> Iterator[None]:
    """Tests that change SSLC_* variables get a freshly loaded plugin host."""
    yield
    reset_host()


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def sslc(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run the real `sslc` entry point in-process; returns exit code, stdout, stderr."""
    from ssl_core.cli import main
    from ssl_core.kit.progress import set_quiet

    def run(*argv: str, env: dict[str, str] | None = None) -> CliResult:
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        reset_host()
        capsys.readouterr()
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        finally:
            set_quiet(False)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return torch.device("cuda")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests skip (never pass silently) where there is no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
