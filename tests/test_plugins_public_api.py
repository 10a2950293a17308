"""The public API (`ssl_core`'s top level) is what plugins import: every name it lists
resolves. That plugins import nothing else is checked with the other import rules
(tests/test_import_layers.py, scripts/check_imports.py)."""

from __future__ import annotations


def test_the_public_api_is_importable() -> None:
    import ssl_core

    assert set(ssl_core.__all__) == {*ssl_core._EXPORTS, "__version__"}
    for name in ssl_core.__all__:
        assert getattr(ssl_core, name) is not None
