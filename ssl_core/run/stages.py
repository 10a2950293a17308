"""The stages of a run, in order; a module of its own so the CLI can list them without
importing the runner (and torch)."""

from __future__ import annotations

STAGES = ("train", "probe", "evaluate", "report")
