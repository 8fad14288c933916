"""Training metrics: one JSON object per line in ``metrics.jsonl``, mirrored to TensorBoard when the
``tensorboard`` package is installed and asked for (``"auto"``: whenever it is installed)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from dimsum_core.errors import OutputError, os_problem

METRICS_FILE = "metrics.jsonl"


def _step_of(line: str) -> int | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record.get("step") if isinstance(record, dict) and isinstance(record.get("step"), int) else None


class MetricsLog:
    """``resume_step``: the step a resumed run continues from. Records after it describe steps the run is
    about to redo (bitwise the same), so they are dropped and every step is logged once."""

    def __init__(self, out_dir: Path, tensorboard: bool | str, resume_step: int | None = None):
        self.path = Path(out_dir) / METRICS_FILE
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if resume_step is not None and self.path.is_file():
                self._truncate_after(resume_step)
            self._file = self.path.open("a", buffering=1)  # line-buffered: a kill loses at most one line
        except OSError as exc:
            self._fail(exc)
        self._tb = None
        self.tensorboard_missing = False
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                # only worth a notice when the recipe asked for it by name
                self.tensorboard_missing = tensorboard is True
            else:
                self._tb = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=resume_step)

    def _fail(self, exc: OSError) -> None:
        raise OutputError(f"{self.path}: cannot write the metrics ({os_problem(exc)})") from None

    def _truncate_after(self, step: int) -> None:
        """Keep the records up to ``step`` (a torn last line from a kill goes too), atomically."""
        lines = self.path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if (s := _step_of(line)) is not None and s <= step]
        if len(kept) == len(lines):
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(kept))
        os.replace(tmp, self.path)

    def write(self, step: int, values: dict[str, Any]) -> None:
        record = {"step": step, "time": round(time.time(), 3), **values}
        try:
            self._file.write(json.dumps(record) + "\n")
        except OSError as exc:
            self._fail(exc)
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:  # the line a failed write left in the buffer fails again; write reported it
            pass
        if self._tb is not None:
            self._tb.close()


def read_metrics(out_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (for tests, notebooks and plots)."""
    path = Path(out_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
