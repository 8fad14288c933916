"""Built-in training objectives: velocity matching on the GVP (official) or the linear path."""

from __future__ import annotations

from dimsum_core.flow.objective import gvp, linear
from dimsum_core.plugin import hookimpl
from dimsum_core.registry import Registry


@hookimpl
def dimsum_add_objectives(registry: Registry) -> None:
    for name, objective in {"gvp": gvp, "linear": linear}.items():
        registry.add(name, objective)
