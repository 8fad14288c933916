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
    for name, scan in {"sweep4": Sweep4, "sweep8": Sweep8, "zigzag8": Zigzag8, "jpeg8": Jpeg8,
                       "bidirectional": Bidirectional, "local-window": LocalWindowScan,
                       "window": WindowScan, "hilbert": Hilbert, "raster": Raster}.items():
        registry.add(name, scan)
