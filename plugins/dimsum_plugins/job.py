"""Built-in jobs that `dimsum run` dispatches to by the recipe's `job:` key."""

from __future__ import annotations

from dimsum_core.plugin import hookimpl
from dimsum_core.registry import Registry
from dimsum_core.train.job import train


@hookimpl
def dimsum_add_jobs(registry: Registry) -> None:
    registry.add("train", train)
