"""dimsum-spiral-scan: registers the ``spiral`` scan order with dimsum.

This module is the plugin: the ``dimsum`` entry point of this distribution names it, and dimsum
calls each ``dimsum_add_*`` hook it finds here with the registry of that kind.
"""

from __future__ import annotations

from dimsum_core.plugin import hookimpl
from dimsum_core.registry import Registry
from dimsum_spiral_scan.spiral import SpiralScan, clockwise_spiral

__all__ = ["SpiralScan", "clockwise_spiral", "dimsum_add_scans"]


@hookimpl
def dimsum_add_scans(registry: Registry) -> None:
    registry.add("spiral", SpiralScan)
