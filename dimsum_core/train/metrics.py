"""Training metrics: one JSON object per line in ``metrics.jsonl``, mirrored to TensorBoard when the
``tensorboard`` package is installed and asked for."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    def __init__(self, out_dir: Path, tensorboard: bool):
        self.path = Path(out_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", buffering=1)  # line-buffered: a kill loses at most one line
        self._tb = None
        self.tensorboard_missing = False
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.tensorboard_missing = True
            else:
                self._tb = SummaryWriter(str(Path(out_dir) / "tensorboard"))

    def write(self, step: int, values: dict[str, Any]) -> None:
        record = {"step": step, "time": round(time.time(), 3), **values}
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(out_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (for tests, notebooks and plots)."""
    path = Path(out_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
