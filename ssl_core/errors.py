"""User-facing errors.

Anything a user can cause (a bad recipe, a missing dataset, a broken plugin) raises
`SslcError`: the CLI prints its message and hint without a traceback and exits 2.
"""

from __future__ import annotations


class SslcError(Exception):
    """An error caused by input the user controls; carries a fix hint."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class RecipeError(SslcError):
    """A recipe that does not validate."""


class PluginError(SslcError):
    """A plugin that failed to load or register (only raised when strict)."""


class ComponentError(SslcError):
    """An unknown or duplicate component name, or bad component parameters."""


class DataError(SslcError):
    """A dataset root with the wrong layout, or an unreadable file in it."""


class CheckpointError(SslcError):
    """A checkpoint that cannot be read or whose layout is unknown."""


class PathError(SslcError):
    """A directory sslc must write to (run directory, cache) that is a file or not writable."""


class LockedError(SslcError):
    """A directory locked by another running sslc process (two runs into one run directory)."""


class DeviceError(SslcError):
    """A `--device` that is not a device name, or names one this machine does not have."""
