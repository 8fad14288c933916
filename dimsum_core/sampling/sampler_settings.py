"""A sampler from a registry name plus options, and the full settings it ran with (for reports)."""

from __future__ import annotations

import inspect
from typing import Any

from dimsum_core.config.nodes import build, split_node
from dimsum_core.errors import DimsumError
from dimsum_core.interfaces.sampler import Sampler


def resolve_sampler(node: str | dict[str, Any], steps: int | None = None) -> tuple[Sampler, dict[str, Any]]:
    """Build the sampler ``node`` names; ``steps`` sets its step count (``steps`` or ``num_steps``).

    Returns the sampler and ``{"name": ..., every keyword argument with its value}``, defaults included.
    """
    from dimsum_core.plugin.manager import registry

    name, kwargs = split_node(node, "sampler")
    factory = registry("sampler").get(name).factory
    params = {p.name: p for p in inspect.signature(factory).parameters.values()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if steps is not None:
        key = "steps" if "steps" in params else "num_steps" if "num_steps" in params else None
        if key is None:
            raise DimsumError(f"sampler '{name}' has no step count; drop --steps")
        kwargs[key] = steps
    sampler = build("sampler", {"name": name, **kwargs})  # as a node: its keys and values are checked
    settings = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    settings.update(kwargs)
    return sampler, {"name": name, **settings}
