"""Which recipe a run directory belongs to, so a second recipe never mixes into its results.

Pointing `--run-dir` (or a recipe whose `name` was reused) at a directory that holds
another recipe's results would overwrite its report and leave its checkpoints and probe
results beside the new ones. `claim_run_dir` records the owner in `run.json`; when a
different recipe claims the directory, the old recipe's files move aside, whole, into
`previous/<old name>-<time>/`, and the move is announced.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ssl_core.kit.atomic import read_json, write_json
from ssl_core.recipe.schema import Recipe
from ssl_core.results.layout import (
    OWNER_FILE,
    PREVIOUS,
    RESOLVED_RECIPE,
    RUN_ENTRIES,
    SEED_DIR_PREFIX,
)


def _owner(recipe: Recipe) -> dict[str, Any]:
    source = str(Path(recipe.source).resolve()) if recipe.source else None
    return {"recipe": recipe.name, "source": source}


def _read_owner(run_dir: Path) -> dict[str, Any] | None:
    """The recorded owner; for directories from before `run.json`, the resolved recipe's name."""
    data = read_json(run_dir / OWNER_FILE)
    if data is not None and "recipe" in data:
        return data
    try:
        import yaml

        resolved = yaml.safe_load((run_dir / RESOLVED_RECIPE).read_text())
        if isinstance(resolved, dict) and "name" in resolved:
            return {"recipe": resolved["name"], "source": None}
    except (OSError, ValueError, ImportError):
        pass
    return None


def claim_run_dir(run_dir: Path, recipe: Recipe) -> Path | None:
    """Record that `recipe` owns `run_dir`. If another recipe (another name, or the same
    name from another file) owned it, move its files to `previous/` and return where.

    Call it while holding the run directory's lock (`ssl_core.run.locking.dir_lock`)."""
    mine = _owner(recipe)
    old = _read_owner(run_dir)
    moved: Path | None = None
    same = old is not None and old.get("recipe") == mine["recipe"] and (
        old.get("source") is None or mine["source"] is None or old.get("source") == mine["source"])
    if old is not None and not same:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        moved = run_dir / PREVIOUS / f"{old.get('recipe')}-{stamp}"
        n = 1
        while moved.exists():
            n += 1
            moved = run_dir / PREVIOUS / f"{old.get('recipe')}-{stamp}-{n}"
        moved.mkdir(parents=True)
        seed_dirs = [p.name for p in run_dir.glob(f"{SEED_DIR_PREFIX}*") if p.is_dir()]
        for entry in (*RUN_ENTRIES, *seed_dirs):
            if (run_dir / entry).exists():
                (run_dir / entry).rename(moved / entry)
        from ssl_core.kit.progress import console

        was = f"recipe {old.get('recipe')!r}" + (f" ({old['source']})" if old.get("source") else "")
        console.print(f"[yellow]warning:[/yellow] {run_dir} held the results of {was}; moved them to "
                      f"{moved} so they do not mix with {mine['recipe']!r}", highlight=False, soft_wrap=True)
    if old is None or moved is not None or old != mine:
        write_json(run_dir / OWNER_FILE, mine)
    return moved
