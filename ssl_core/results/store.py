"""What a run directory holds, read back for its report: stage results, training logs, the
probes taken during training, and how the run went (`run_info.json`).

`sslc run` builds its report from these files once the stages have written them, and
`sslc report RUN_DIR` reads the very same files, so the two give the same report.json.
Nothing here imports torch: re-rendering a report is quick.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssl_core.errors import SslcError
from ssl_core.kit.atomic import read_json, write_json
from ssl_core.recipe.schema import Recipe
from ssl_core.results.layout import (
    DURING_TRAINING,
    METRICS_FILE,
    RESOLVED_RECIPE,
    RUN_INFO,
    TRAIN_RESULT,
    StageKind,
    model_dir,
    result_path,
    seed_dir,
)

# -- how the run went ----------------------------------------------------------------------------


def record_run(run_dir: Path, recipe: Recipe, *, started: float, stages: Sequence[str], device: str,
               world_size: int = 1, seeds: Sequence[int] = ()) -> dict[str, Any]:
    """Write `run_info.json` for the `sslc run` that started at `started` (time.time()) and
    is now building its report. Wall time adds up over the invocations of one recipe into
    the directory (an interrupted run and its resumption), so both are kept."""
    now = time.time()
    wall = now - started
    old = read_json(run_dir / RUN_INFO) or {}
    same = old.get("recipe") == recipe.name and old.get("profile") == recipe.profile
    info = {
        "recipe": recipe.name, "profile": recipe.profile,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_time_s": round(wall, 3), "stages": list(stages), "device": device,
        "world_size": world_size, "seeds": list(seeds),
        "invocations": int(old.get("invocations", 0)) + 1 if same else 1,
        "total_wall_time_s": round(float(old.get("total_wall_time_s", 0.0)) + wall if same else wall, 3),
    }
    write_json(run_dir / RUN_INFO, info)
    return info


# -- the run directory ---------------------------------------------------------------------------


def load_run_recipe(run_dir: Path) -> Recipe:
    """The recipe a run directory was run with (its `recipe.resolved.yaml`); a directory
    that is not one is a user error."""
    import yaml
    from pydantic import ValidationError

    hint = "give the directory `sslc run` wrote (default runs/<recipe name>[-<profile>])"
    if not run_dir.exists():
        raise SslcError(f"{run_dir} does not exist", hint)
    if not run_dir.is_dir():
        raise SslcError(f"{run_dir} is not a directory", hint)
    resolved = run_dir / RESOLVED_RECIPE
    if not resolved.is_file():
        raise SslcError(f"{run_dir} is not a run directory: it has no {RESOLVED_RECIPE}", hint)
    try:
        data = yaml.safe_load(resolved.read_text())
        return Recipe.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SslcError(f"{resolved} cannot be read as a resolved recipe: {first}",
                        "rerun `sslc run` to write it again") from None


def seed_dirs(run_dir: Path, recipe: Recipe, model: str,
              seeds: Sequence[int] | None = None) -> list[tuple[int | None, Path]]:
    """(seed, directory) pairs holding a model's results: one per seed for a trained model
    of a multi-seed run, else the run directory itself (as the runner lays them out)."""
    chosen = list(recipe.seeds or []) if seeds is None else list(seeds)
    if chosen and recipe.models[model].train is not None:
        return [(s, seed_dir(run_dir, s)) for s in chosen]
    return [(None, run_dir)]


def _read_result(path: Path, unreadable: list[Path]) -> dict[str, Any] | None:
    """A stored result; one that exists but cannot be read is noted in `unreadable`."""
    if not path.exists():
        return None
    data = read_json(path)
    if data is None:
        unreadable.append(path)
    return data


def _collect(run_dir: Path, recipe: Recipe, kind: StageKind, names: Sequence[str], model: str,
             seeds: Sequence[int] | None, unreadable: list[Path]) -> dict[str, Any]:
    """One kind of stage result for a model: a dict per name, or a list over seeds with
    None where a seed's result is missing (so a partial result is seen as partial)."""
    dirs = seed_dirs(run_dir, recipe, model, seeds)
    out: dict[str, Any] = {}
    for name in names:
        per_seed = [_read_result(result_path(run_dir, s, kind, model, name), unreadable)
                    for s, _ in dirs]
        if any(per_seed):
            out[name] = per_seed if dirs[0][0] is not None else per_seed[0]
    return out


@dataclass
class LossCurve:
    """A trained model's step losses (and learning rates) from its metrics.jsonl."""

    seed: int | None
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    steps_per_epoch: int | None = None


def read_loss_curve(path: Path, seed: int | None = None) -> LossCurve | None:
    """Step records of a metrics.jsonl, in step order; a torn or non-finite line is skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    by_step: dict[int, tuple[float, float]] = {}
    spe = None
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if not isinstance(r, dict):
            continue
        if r.get("event") == "epoch" and isinstance(r.get("step"), int) and isinstance(r.get("epoch"), int):
            spe = spe or (r["step"] // max(r["epoch"], 1))
        if r.get("event") != "step" or not isinstance(r.get("step"), int):
            continue
        if isinstance(r.get("loss"), int | float):
            by_step[r["step"]] = (float(r["loss"]), float(r.get("lr") or 0.0))
    if not by_step:
        return None
    steps = sorted(by_step)
    return LossCurve(seed, steps, [by_step[s][0] for s in steps], [by_step[s][1] for s in steps], spe)


@dataclass
class RunResults:
    """Everything a run directory holds for its report."""

    probes: dict[str, dict[str, Any]]
    evaluations: dict[str, dict[str, Any]]
    training: dict[str, list[dict[str, Any]]]  # model -> its train.json per seed
    during: dict[str, list[dict[str, Any]]]  # model -> its probes_during_training.json per seed
    curves: dict[str, list[LossCurve]]  # model -> its loss curve per seed
    info: dict[str, Any]  # run_info.json ({} for runs from before it)
    unreadable: list[Path] = field(default_factory=list)  # result files that exist but do not parse


def read_run(run_dir: Path, recipe: Recipe) -> RunResults:
    """Read every stored result of `recipe` in `run_dir` (nothing is computed)."""
    info = read_json(run_dir / RUN_INFO) or {}
    if info.get("recipe") not in (None, recipe.name):
        info = {}  # another recipe's: this directory was reused
    seeds = info.get("seeds") or None
    probes: dict[str, dict[str, Any]] = {}
    evaluations: dict[str, dict[str, Any]] = {}
    training: dict[str, list[dict[str, Any]]] = {}
    during: dict[str, list[dict[str, Any]]] = {}
    curves: dict[str, list[LossCurve]] = {}
    unreadable: list[Path] = []
    for model, config in recipe.models.items():
        probes[model] = _collect(run_dir, recipe, "probes", list(recipe.probes), model, seeds,
                                 unreadable)
        mine = [e for e, ev in recipe.evaluations.items() if ev.get("model") in (None, model)]
        evaluations[model] = _collect(run_dir, recipe, "evaluations", mine, model, seeds,
                                      unreadable)
        if config.train is None:
            continue
        for seed, _ in seed_dirs(run_dir, recipe, model, seeds):
            here = model_dir(run_dir, seed, model)
            train = read_json(here / TRAIN_RESULT)
            if train:
                training.setdefault(model, []).append({**train, "seed": seed})
            probed = read_json(here / DURING_TRAINING)
            # those of the training there now (a retrain without probe_every leaves an older
            # file behind); before train.json exists, training is still going on
            current = train is None or probed is not None and probed.get("fingerprint") == train.get("fingerprint")
            if probed and probed.get("epochs") and current:
                during.setdefault(model, []).append({**probed, "seed": seed})
            curve = read_loss_curve(here / METRICS_FILE, seed)
            if curve is not None:
                curves.setdefault(model, []).append(curve)
    return RunResults(probes, evaluations, training, during, curves, info, unreadable)
