"""Built-in sequence mixers: the Mamba-1 selective SSM (DiMSUM's ``CondMamba``)."""

from __future__ import annotations

from dimsum_core.nn.mixers import Mamba
from dimsum_core.plugin import hookimpl
from dimsum_core.registry import Registry


@hookimpl
def dimsum_add_mixers(registry: Registry) -> None:
    registry.add("mamba", Mamba)
