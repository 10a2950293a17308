"""`train.probe_every: N`: the RIS of a model's encoder while it trains.

The runner passes a `TrainingProbes` to `Trainer.fit(on_epoch_end=...)`. After every N-th
epoch, and after the last, rank 0 measures the current encoder on each of the recipe's
probes as the probe stage would, and keeps the results in
`<model dir>/probes_during_training.json`, rewritten atomically after each probe.

Resumable: the file records the training's fingerprint, and each result its probe's, so
a resumed run (which retrains from its last checkpoint to the same weights) skips the
epochs and probes already measured; a checkpoint is saved before each probed epoch so
that an interruption while probing loses no training. Under torchrun the other ranks
wait in their next step while rank 0 probes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ssl_core.kit import distributed
from ssl_core.kit.atomic import write_json
from ssl_core.measure.estimates import estimate, top_key
from ssl_core.measure.features import FeatureCache
from ssl_core.measure.probing import encoder_identity, measure
from ssl_core.report.format import interval_text
from ssl_core.results.layout import DURING_TRAINING
from ssl_core.run.cached_stage import read_result
from ssl_core.run.fingerprint import fingerprint
from ssl_core.run.probe_plan import ProbePlan

if TYPE_CHECKING:
    from ssl_core.run.trainer import Trainer

#: bump when an entry's content changes for the same inputs
DURING_TRAINING_VERSION = 1


class TrainingProbes:
    """The epoch hook that probes a training model every `every` epochs and at the end,
    from the same probe plan as the probe stage."""

    def __init__(self, plan: ProbePlan, model: str, model_dir: Path, train_fingerprint: str,
                 trainer: Trainer, *, every: int, device: torch.device,
                 cache: Callable[[], FeatureCache | None], log: Callable[[str], None],
                 fresh: bool = False) -> None:
        self.plan, self.model, self.trainer, self.every = plan, model, trainer, every
        self.device, self.cache, self.log = device, cache, log
        self.path = model_dir / DURING_TRAINING
        self.train_fingerprint = train_fingerprint
        self._fingerprints: dict[str, str] | None = None
        self.doc: dict[str, Any] = {"stage": "probe-during-training", "model": model,
                                    "fingerprint": train_fingerprint, "probe_every": every,
                                    "epochs": []}
        if distributed.is_main():
            old = None if fresh else read_result(self.path)
            if old is not None and old.get("fingerprint") == train_fingerprint:
                self.doc["epochs"] = [e for e in old.get("epochs", []) if isinstance(e, dict)]

    def probe_fingerprints(self) -> dict[str, str]:
        """Per probe: what its result depends on besides the weights (as in the probe stage)."""
        if self._fingerprints is None:
            self._fingerprints = {
                name: fingerprint(self.train_fingerprint, *self.plan.identity(name),
                                  DURING_TRAINING_VERSION)
                for name in self.plan.names}
        return self._fingerprints

    def _entry(self, epoch: int) -> dict[str, Any] | None:
        return next((e for e in self.doc["epochs"] if e.get("epoch") == epoch), None)

    def missing(self, epoch: int) -> list[str]:
        """The probes not yet measured (for the current configuration) at `epoch`."""
        entry = self._entry(epoch) or {}
        done = entry.get("probes") or {}
        return [p for p, fp in self.probe_fingerprints().items()
                if (done.get(p) or {}).get("fingerprint") != fp]

    def due(self, epoch: int, final: bool) -> bool:
        return final or epoch % self.every == 0

    def __call__(self, epoch: int, step: int, final: bool) -> None:
        if not distributed.is_main() or not self.due(epoch, final):
            return
        todo = self.missing(epoch)
        if not todo:
            self.log(f"[dim]probe {self.model} at epoch {epoch}: done before, skipped[/dim]")
            return
        if not final:  # the final checkpoint is saved (done) before the final call
            self.trainer.save()
        encoder = self.trainer.objective.encoder
        enc_id = encoder_identity(encoder)
        settings = self.plan.recipe.probe_settings
        for name in todo:
            planned = self.plan[name]
            # the last epoch's features are the probe stage's too: cache those alone
            row, _ = measure(encoder, planned.probe, self.plan.probe_set(name), top_k=settings.top_k,
                             cache=self.cache() if final else None, encoder_id=enc_id,
                             batch_size=settings.batch_size, num_workers=settings.num_workers,
                             device=self.device, allow_tf32=settings.allow_tf32,
                             resamples=settings.resamples,
                             description=f"features {self.model}/{name} epoch {epoch}")
            result = {"probe": name, "type": planned.config["type"],
                      "config": self.plan.recipe.probes[name],
                      "fingerprint": self.probe_fingerprints()[name], "device": str(self.device),
                      "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **row}
            entry = self._entry(epoch)
            if entry is None:
                entry = {"epoch": epoch, "step": step, "final": final, "probes": {}}
                self.doc["epochs"].append(entry)
                self.doc["epochs"].sort(key=lambda e: e.get("epoch", 0))
            entry.update(step=step, final=final)
            entry["probes"][name] = result
            write_json(self.path, self.doc)
            k = settings.top_k[0]
            shown = interval_text(estimate(row, top_key(k)), "bracket")
            self.log(f"probe {self.model} at epoch {epoch}: {name} top-{k} {shown}")
