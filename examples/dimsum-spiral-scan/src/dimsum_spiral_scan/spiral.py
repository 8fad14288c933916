"""The spiral scan order."""

from __future__ import annotations

import torch

from dimsum_core.interfaces.scan import ScanOrder


def clockwise_spiral(height: int, width: int) -> torch.Tensor:
    """Raster indices of a ``height × width`` grid along a clockwise spiral from the top-left cell."""
    grid = torch.arange(height * width).view(height, width)
    rings = []
    while grid.numel():
        rings.append(grid[0])  # the top row, left to right
        # turn the rest a quarter counter-clockwise: its right column becomes the next top row
        grid = grid[1:].t().flip(0)
    return torch.cat(rings)


class SpiralScan(ScanOrder):
    """Clockwise spiral from the top-left corner inwards; odd layers walk it back outwards."""

    period = 2

    def order(self, height: int, width: int, layer: int) -> torch.Tensor:
        self.check(height, width)
        perm = clockwise_spiral(height, width)
        return perm.flip(0) if layer % 2 else perm
