"""Training logs: `metrics.jsonl` beside the checkpoint (and TensorBoard when installed).

One JSON object a line, `{"event": "step" | "epoch", "step": ..., "epoch": ...}`. A resumed
run first cuts the file back to the checkpoint's step, so the steps redone after a crash are
never logged twice, and the epoch being finished is summarised from its kept lines too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ssl_core.kit.atomic import write_text
from ssl_core.results.layout import METRICS_FILE

TENSORBOARD_DIR = "tensorboard"
#: keys of a step record that the trainer owns; an objective metric of the same name is dropped
RESERVED = frozenset({"event", "step", "epoch", "loss", "lr", "img_s", "data_wait", "step_s", "data_s",
                      "time_s", "steps"})


def json_number(value: float) -> float | None:
    """Standard JSON has no NaN or infinity: a diverged value is written as null."""
    return value if math.isfinite(value) else None


@dataclass
class EpochSums:
    """Running sums of one epoch's step records: its summary needs nothing else."""

    steps: int = 0
    images: int = 0
    time_s: float = 0.0
    data_s: float = 0.0
    loss: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, record: dict[str, Any], batch_size: int) -> None:
        self.steps += 1
        self.images += batch_size
        self.time_s += float(record.get("step_s") or 0.0)
        self.data_s += float(record.get("data_s") or 0.0)
        self.loss += float("nan") if record.get("loss") is None else float(record["loss"])
        for key, value in record.items():
            if key not in RESERVED and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.metrics[key] = self.metrics.get(key, 0.0) + float(value)
                self.counts[key] = self.counts.get(key, 0) + 1

    def summary(self) -> dict[str, Any]:
        n = max(self.steps, 1)
        time_s = max(self.time_s, 1e-9)
        return {"loss": json_number(self.loss / n), "img_s": self.images / time_s,
                "data_wait": min(self.data_s / time_s, 1.0), "time_s": self.time_s, "steps": self.steps,
                **{k: v / self.counts[k] for k, v in self.metrics.items()}}


def _kept_records(path: Path, step: int) -> list[dict[str, Any]]:
    """The records of `path` up to `step`; a torn last line (a kill mid-write) is dropped."""
    kept: list[dict[str, Any]] = []
    if not path.exists():
        return kept
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= step:
            kept.append(record)
    return kept


def _summary_writer(logdir: Path, purge_step: int | None) -> Any:
    """A TensorBoard SummaryWriter, or None when the optional `tensorboard` package is absent."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises ImportError naming tensorboard when it is not installed
        return None
    return SummaryWriter(log_dir=str(logdir), purge_step=purge_step)


class MetricsLog:
    """Appends step and epoch records of one training run, continuing a resumed one."""

    def __init__(self, directory: Path, *, resume_step: int, steps_per_epoch: int, batch_size: int,
                 tensorboard: bool = True, write: bool = True) -> None:
        """`write=False` (ranks other than 0 under torchrun) keeps the sums, touches no file."""
        self.path = directory / METRICS_FILE
        self.batch_size = batch_size
        self.epoch_sums = EpochSums()
        self._file: IO[str] | None = None
        self.tb: Any = None
        if not write:
            return
        kept = _kept_records(self.path, resume_step)
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        # The epoch in progress at the resume step (1-based, as written) is summarised from
        # its kept step lines plus the steps still to come.
        current = resume_step // steps_per_epoch + 1
        for record in kept:
            if record.get("event") == "step" and record.get("epoch") == current:
                self.epoch_sums.add(record, batch_size)
        self._file = open(self.path, "a")  # noqa: SIM115 - closed in close()
        self.tb = _summary_writer(directory / TENSORBOARD_DIR, resume_step + 1) if tensorboard else None

    def steps(self, records: list[dict[str, Any]]) -> None:
        """Write step records (written in a batch at each host sync, not one by one)."""
        for record in records:
            self.epoch_sums.add(record, self.batch_size)
            if self.tb is not None:
                for key, value in record.items():
                    if key not in ("event", "step", "epoch") and isinstance(value, (int, float)):
                        self.tb.add_scalar(f"step/{key}", value, record["step"])
        self._write(records)

    def end_epoch(self, epoch: int, step: int, lr: float) -> dict[str, Any]:
        """Write the summary of epoch `epoch` (1-based) ending at `step`; start the next."""
        record = {"event": "epoch", "step": step, "epoch": epoch, "lr": lr, **self.epoch_sums.summary()}
        self.epoch_sums = EpochSums()
        if self.tb is not None:
            for key, value in record.items():
                if key not in ("event", "step") and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"epoch/{key}", value, step)
        self._write([record])
        return record

    def _write(self, records: list[dict[str, Any]]) -> None:
        if self._file is None:
            return
        self._file.write("".join(json.dumps(r) + "\n" for r in records))
        self._file.flush()  # a killed run keeps every line written before its last checkpoint

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
