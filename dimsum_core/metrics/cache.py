"""The metrics cache folder: ``$DIMSUM_CACHE`` or ``~/.cache/dimsum``."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "DIMSUM_CACHE"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dimsum").expanduser()
