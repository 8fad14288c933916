"""What a job receives besides its recipe arguments."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Console

from dimsum_core.config.load import Recipe


@dataclass
class RunContext:
    recipe: Recipe
    console: Console = field(default_factory=lambda: Console(stderr=True))
