"""The sslc contract kit as a pytest plugin: fixtures `plugin_host` and `plugin_registry`
give a fresh sslc plugin host holding only this package's plugin (set by `sslc_plugin`
in pyproject.toml), whatever else is installed."""

pytest_plugins = ["ssl_core.testing"]
