"""A run's output directory: created and checked before anything is built, and locked while a run uses it,
so two runs on one ``out_dir`` cannot interleave their checkpoints and logs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dimsum_core.errors import OutputError, os_problem

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs there are not protected against a second run
    fcntl = None  # type: ignore[assignment]

#: an empty file that a run holds an exclusive lock on (the kernel drops it when the process dies)
LOCK_FILE = ".dimsum.lock"


@contextmanager
def locked_out_dir(out_dir: Path) -> Iterator[None]:
    """Create ``out_dir`` if needed and hold its lock for the block; one line when either fails."""
    check_out_dir(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        handle = (out_dir / LOCK_FILE).open("a")
    except OSError as exc:
        raise OutputError(f"out_dir {out_dir}: cannot write there ({os_problem(exc)})") from None
    with handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise OutputError(f"out_dir {out_dir} is in use by another dimsum run; wait for it to end "
                                  f"or use another out_dir") from None
        yield


def check_out_dir(out_dir: Path) -> None:
    """Fail early, before anything is built or written, when ``out_dir`` cannot be a directory."""
    for path in (out_dir, *out_dir.parents):
        if path.exists():
            if not path.is_dir():
                raise OutputError(f"out_dir {out_dir}: {path} is a file; use a directory (set out_dir=...)")
            return
