"""What a command writes to its output path: never over what is already there unless ``--overwrite`` says so,
checked before any work starts (a benchmark's minutes, a sampling run's hours)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dimsum_core.errors import DimsumError


def overwrite_option(option: str = "--out") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--overwrite`` flag of a command whose output path is the option ``option``."""
    return click.option("--overwrite", is_flag=True, help=f"replace an existing {option}")


def check_new_output(path: Path, overwrite: bool, option: str = "--out") -> None:
    """Refuse an existing file, or a folder with anything in it, unless ``overwrite``."""
    path = Path(path)
    if (any(path.iterdir()) if path.is_dir() else path.exists()) and not overwrite:
        raise DimsumError(f"{path}: already exists; choose another {option} or pass --overwrite")
