"""Torch's CPU threads follow the cores that other processes leave free.

Alone, PyTorch's defaults are fastest: one thread per core, OpenMP threads spinning while they wait
(sleeping threads, ``OMP_WAIT_POLICY=PASSIVE``, cost the CPU quickstart up to a third). Beside another
busy process the spinning threads fight it for the cores and both crawl (14 img/s each beside a twin,
261 each when both follow the free cores). So long CPU loops (training steps, sampling batches) call :func:`make_room`: every few seconds it
measures how much CPU the other processes took and sets torch's thread count to the cores they left,
all of them on a quiet machine. Numbers: ``benchmarks/cpu_threads.py``, ``docs/benchmarks.md``.

Linux only (``/proc/stat``); nothing changes elsewhere, when ``OMP_NUM_THREADS`` is set, or once the
program sets ``torch.set_num_threads`` itself.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

#: seconds between two measurements of the other processes' CPU use
INTERVAL_S = 5.0
_STAT = Path("/proc/stat")


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have used since boot (None where /proc/stat is missing)."""
    try:
        fields = [int(v) for v in _STAT.read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: busy is all but idle, iowait and steal
    return (sum(fields[:8]) - fields[3] - fields[4] - fields[7]) / os.sysconf("SC_CLK_TCK")


def threads_for(cores: int, others: float) -> int:
    """Threads for the cores that ``others`` (cores' worth of other processes' CPU use) leave free: a
    process using more than a quarter of a core claims one (spinning threads starve it below its need)."""
    return max(1, min(cores, cores - math.ceil(others - 0.25)))


class ThreadShare:
    """See the module docstring; one per process (:func:`make_room`)."""

    def __init__(self, interval_s: float = INTERVAL_S):
        self.interval_s = interval_s
        self.cores = torch.get_num_threads()
        self.enabled = "OMP_NUM_THREADS" not in os.environ and busy_cpu_seconds() is not None
        self._set = self.cores
        self._mark: tuple[float, float, float] | None = None

    def _now(self) -> tuple[float, float, float]:
        return time.monotonic(), busy_cpu_seconds() or 0.0, time.process_time()

    def adjust(self) -> int:
        """Measure and set the thread count when ``interval_s`` has passed; returns the thread count."""
        if not self.enabled:
            return torch.get_num_threads()
        if torch.get_num_threads() != self._set:  # the program chose a count itself: keep it
            self.enabled = False
            return torch.get_num_threads()
        now = self._now()
        if self._mark is None:
            self._mark = now
        elapsed = now[0] - self._mark[0]
        if elapsed >= self.interval_s:
            others = max(0.0, (now[1] - self._mark[1]) - (now[2] - self._mark[2])) / elapsed
            self._set = threads_for(self.cores, others)
            if self._set != torch.get_num_threads():
                torch.set_num_threads(self._set)
            self._mark = now
        return self._set


_share: ThreadShare | None = None


def make_room() -> int:
    """Call often from a long CPU loop (cheap between measurements); returns the thread count in use."""
    global _share
    if _share is None:
        _share = ThreadShare()
    return _share.adjust()
