"""An `alldata.pth` exported by `sslc probe --save-features`, scored by a plain reimplementation
of the authors' algorithm, gives the RIS that sslc reports (to 1e-6), for probes on the
embedded world in the real GOT-10k and ALOI layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import oracle_ris, require_plugins

from ssl_core.plugins import get_registry


@pytest.fixture(scope="module")
def tiny_world() -> Path:
    require_plugins("synthworld")
    world = get_registry().create("dataset", {"type": "synthworld", "size": "tiny"})
    world.prepare()
    return Path(world.root)


@pytest.mark.parametrize("probe", ["aloi-viewpoint", "got10k-occlusion"])
def test_exported_features_score_the_same_with_the_reference(sslc, tiny_world: Path, tmp_path: Path,
                                                               probe: str) -> None:
    require_plugins(probe, "resnet18")
    out = tmp_path / "alldata.pth"
    result = sslc("probe", "--checkpoint", "random:resnet18", "--probe", probe, "--data", str(tiny_world),
                  "--save-features", str(out), "--json", "--no-cache")
    assert result.code == 0, result.err
    reported = json.loads(result.out)
    row = reported["probes"][0]
    dump = torch.load(out, weights_only=True)  # plain torch, as the authors' script reads it
    feat = dump["feat"].numpy()
    assert feat.shape[0] == len(dump["paths"]) == len(dump["instance"]) == len(dump["classes"])
    assert all(Path(p).exists() for p in dump["paths"])
    expected = oracle_ris(feat, list(dump["instance"]), list(dump["classes"]))
    assert row["top10"] == pytest.approx(expected[10], abs=1e-6)
    assert row["top25"] == pytest.approx(expected[25], abs=1e-6)
