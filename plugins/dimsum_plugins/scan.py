"""Built-in scan orders: the official DiMSUM scans and the ZigMa / LocalMamba / Vim families."""

from __future__ import annotations

from dimsum_core.nn.scans import (
    Bidirectional,
    Hilbert,
    Jpeg8,
    LocalWindowScan,
    Raster,
    Sweep4,
    Sweep8,
    WindowScan,
    Zigzag8,
)
from dimsum_core.plugin import hookimpl
from dimsum_core.registry import Registry


@hookimpl
def dimsum_add_scans(registry: Registry) -> None:
    registry.add("sweep4", Sweep4)
    registry.add("sweep8", Sweep8)
    registry.add("zigzag8", Zigzag8)
    registry.add("jpeg8", Jpeg8)
    registry.add("bidirectional", Bidirectional)
    registry.add("local-window", LocalWindowScan)
    registry.add("window", WindowScan)
    registry.add("hilbert", Hilbert)
    registry.add("raster", Raster)
