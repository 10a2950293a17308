"""Helpers shared by tests (import as `from helpers import ...`)."""

from __future__ import annotations

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


def assert_user_error(result, *needles: str) -> None:
    """One `error:` line naming every needle, exit 2, no traceback."""
    text = result.err + result.out
    assert result.code == 2, text
    assert "Traceback" not in text, text
    assert text.count("error:") == 1, text
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
