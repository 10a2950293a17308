"""Helpers shared by tests (import as `from helpers import ...`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ssl_core.plugin.host import get_registry


def require_plugins(*names: str) -> None:
    """Skip (never silently pass) when a component from another plugin is not loaded,
    e.g. in the per-plugin nox sessions."""
    reg = get_registry()
    missing = [n for n in names if not any(n in specs for specs in reg.specs.values())]
    if missing:
        pytest.skip(f"needs component(s) {', '.join(missing)} from plugins not loaded here")


def write_images(folder: Path, classes: dict[str, int], size: int = 24) -> Path:
    """An ImageNet-style folder of small random PNGs: {class: count}."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, count in classes.items():
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(folder / cls / f"{cls}_{i}.png")
    return folder


def write_aloi_views(root: Path, objects: int = 3, views: int = 6, *, lamps: Sequence[int] = (),
                     seed: int = 2) -> Path:
    """Tiny ALOI subsets in their native layout: `views` turntable views 5 degrees apart
    (`aloi_red2_view/{obj}/{obj}_r{angle}.png`) and, with `lamps`, colour temperatures
    (`aloi_red2_col/{obj}/{obj}_i{lamp}.png`), of random 16 x 16 pixels."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for obj in range(1, objects + 1):
        names = [("aloi_red2_view", f"{obj}_r{v * 5}.png") for v in range(views)]
        names += [("aloi_red2_col", f"{obj}_i{lamp}.png") for lamp in lamps]
        for subset, name in names:
            path = root / subset / str(obj) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(path)
    return root


def oracle_ris(feat, trajectories, classes=None, top_k=(10, 25)):
    """Deliberately plain: python loops over trajectories and neurons, full sorts."""
    feat = np.asarray(feat, dtype=np.float64)
    trajectories = list(trajectories)
    classes = list(trajectories if classes is None else classes)
    n, d = feat.shape
    class_list = sorted(set(classes), key=repr)
    c = len(class_list)
    p = min((1 - 1 / c) * 100, 95)  # step 1
    idx = int((n * p) // 100)  # step 2
    t_pos, t_neg, g = [], [], []
    for i in range(d):
        col = [float(v) for v in feat[:, i]]
        asc = sorted(col)
        t_pos.append(asc[idx])  # step 3
        g.append(sum(1 for v in col if v >= asc[idx]) / n)
        desc = sorted(col, reverse=True)
        t_neg.append(desc[idx])  # step 4
    local = {cl: [0.0] * d for cl in class_list}
    count = {cl: [0] * d for cl in class_list}
    seen = []
    for t in trajectories:
        if t not in seen:
            seen.append(t)
    for t in seen:  # step 5
        rows = [r for r in range(n) if trajectories[r] == t]
        if len(rows) < 3:
            continue
        cl = classes[rows[0]]
        for i in range(d):
            a_pos = sum(1 for r in rows if feat[r, i] > t_pos[i])
            a_neg = sum(1 for r in rows if feat[r, i] < t_neg[i])
            a = max(a_pos, a_neg)
            if a > 0:
                local[cl][i] += a / len(rows)
                count[cl][i] += 1
    out = {}
    for k in top_k:
        per_class = []
        for cl in class_list:
            score = [local[cl][i] / (count[cl][i] + 1e-20) / g[i] for i in range(d)]  # 6-7
            per_class.append(sum(sorted(score, reverse=True)[:k]) / k)
        out[k] = sum(per_class) / c * (100 - p)  # step 8
    return out


#: the smallest real training recipe (MoCo-v2 on the image folder `images/` under `root`),
#: formatted with name, root and batch_size; its `{{`/`}}` are YAML braces
TINY_TRAIN_RECIPE = """\
name: {name}
data_root: {root}
datasets:
  train: {{type: image-folder, root: images}}
models:
  m:
    encoder: {{type: resnet18, small_input: true}}
    train:
      dataset: train
      pair_sampler: {{type: aggressive-crop, size: 16}}
      objective: {{type: moco-queue, queue_size: 16, dim: 8}}
      epochs: 1
      batch_size: {batch_size}
      num_workers: 0
"""


def tiny_train_recipe(name: str, root: Path, *, batch_size: int = 8, train: dict | None = None,
                      sampler: dict | None = None, objective: dict | None = None,
                      **top: object) -> str:
    """TINY_TRAIN_RECIPE with its model's `train`, `pair_sampler` and `objective` keys
    updated and top-level keys (`seeds`, `probes`, `world`, ...) added: the one recipe the
    training tests vary instead of retyping it."""
    import yaml

    doc = yaml.safe_load(TINY_TRAIN_RECIPE.format(name=name, root=root, batch_size=batch_size))
    t = doc["models"]["m"]["train"]
    t.update(train or {})
    t["pair_sampler"].update(sampler or {})
    t["objective"].update(objective or {})
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    return yaml.safe_dump(doc, sort_keys=False)


def assert_user_error(result, *needles: str) -> None:
    """One `error:` line naming every needle, exit 2, no traceback."""
    text = result.err + result.out
    assert result.code == 2, text
    assert "Traceback" not in text, text
    assert text.count("error:") == 1, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
