"""Stopping a training run cleanly: the first SIGINT (Ctrl-C) or SIGTERM (a scheduler's notice) asks the loop
to save and stop after the step in progress; a second one acts at once, as without this handler."""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """While entered, records the first stop signal in :attr:`signal` (its name) instead of dying."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # Python only allows handlers there
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signal.Signals(signum).name
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers leave stop signals to the main process, which saves and then
    shuts them down (a terminal's Ctrl-C reaches every process of the group)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
