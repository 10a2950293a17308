"""Where a run directory keeps each file. The runner writes there and `sslc report`,
`sslc export` and the run-dir claim read there: all of them take the names from here.

    RUN_DIR/
      recipe.resolved.yaml  run.json  run_info.json  report.md  report.json  plots/
      [seed-N/]models/MODEL/{checkpoint.pt, train.json, metrics.jsonl, probes_during_training.json}
      [seed-N/]probes/MODEL/PROBE.json
      [seed-N/]evaluations/MODEL/EVALUATION.json
      previous/   (another recipe's results, moved aside whole)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

RESOLVED_RECIPE = "recipe.resolved.yaml"
#: which recipe owns the directory (ssl_core.run.rundir)
OWNER_FILE = "run.json"
#: how the last `sslc run` into the directory went: start, wall time, stages, device
RUN_INFO = "run_info.json"
REPORT_MARKDOWN = "report.md"
REPORT_JSON = "report.json"
PLOTS_DIR = "plots"
PREVIOUS = "previous"
#: a multi-seed run's per-seed directories: `seed-0/`, `seed-1/`, ...
SEED_DIR_PREFIX = "seed-"
MODELS_DIR = "models"
CHECKPOINT = "checkpoint.pt"
TRAIN_RESULT = "train.json"
METRICS_FILE = "metrics.jsonl"
#: per trained model: the probes taken while it trained (`train.probe_every`)
DURING_TRAINING = "probes_during_training.json"
#: what a run writes at the top of its directory (the lock file and `previous/` stay put)
RUN_ENTRIES = (RESOLVED_RECIPE, MODELS_DIR, "probes", "evaluations", REPORT_MARKDOWN,
               REPORT_JSON, PLOTS_DIR, RUN_INFO, OWNER_FILE)

StageKind = Literal["probes", "evaluations"]


def seed_dir(run_dir: Path, seed: int | None) -> Path:
    """Where one seed's results live: `seed-N/`, or the run directory for a single run."""
    return run_dir if seed is None else run_dir / f"{SEED_DIR_PREFIX}{seed}"


def model_dir(run_dir: Path, seed: int | None, model: str) -> Path:
    return seed_dir(run_dir, seed) / MODELS_DIR / model


def result_path(run_dir: Path, seed: int | None, kind: StageKind, model: str, name: str) -> Path:
    """A probe's or an evaluation's result file for one model."""
    return seed_dir(run_dir, seed) / kind / model / f"{name}.json"
