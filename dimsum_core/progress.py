"""Progress of long commands: a live bar on a terminal, plain lines when output goes to a log file or
a pipe (where a live bar shows nothing until the end)."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03``: hours only when there are any."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class TaskProgress:
    """``label completed/total`` with a free-text ``info`` and the time left.

    On a terminal: a rich bar, redrawn by :meth:`update`. Otherwise: :meth:`update` prints a plain line
    when ``line_every_s`` seconds have passed since the last one and when the task completes; with
    ``line_every_s=None`` only :meth:`line` prints, when the caller decides (training: every ``log.every``
    steps).
    """

    def __init__(self, console: Console, label: str, total: int, *, completed: int = 0,
                 line_every_s: float | None = 10.0, enabled: bool = True):
        self.console, self.label, self.total = console, label, total
        self.completed = self._started_at = completed
        self.line_every_s = line_every_s
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self._bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console,
                             disable=not self.live)
        self._task = self._bar.add_task(label, total=total, completed=completed, info="")
        self._start = self._last_line = time.perf_counter()

    def __enter__(self) -> TaskProgress:
        self._bar.start()
        self._start = self._last_line = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._bar.stop()

    def seconds_left(self) -> float | None:
        """From this run's average pace so far (resumed work is not counted as done here)."""
        done = self.completed - self._started_at
        if done <= 0:
            return None
        return (time.perf_counter() - self._start) / done * (self.total - self.completed)

    def update(self, completed: int, info: str = "") -> None:
        self.completed = completed
        if self.live:
            self._bar.update(self._task, completed=completed, info=info)
        elif self.line_every_s is not None and (
                completed >= self.total or time.perf_counter() - self._last_line >= self.line_every_s):
            self.line(info)

    def line(self, info: str = "") -> None:
        """One plain line (only when the output is not a terminal: there the bar shows the same)."""
        if self.live or not self.enabled:
            return
        self._last_line = time.perf_counter()
        left = self.seconds_left()
        parts = [info] if info else []
        if self.completed < self.total and left is not None:
            parts.append(f"{duration(left)} left")
        percent = 100 * self.completed / max(self.total, 1)
        text = f"{self.label} {self.completed}/{self.total} ({percent:.0f}%)" + (f": {', '.join(parts)}" if parts else "")
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def print(self, text: str) -> None:
        """A message above the bar on a terminal, a line of its own otherwise."""
        if self.enabled:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)
