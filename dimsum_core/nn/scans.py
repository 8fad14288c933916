"""Built-in scan orders: the official DiMSUM scans and the ZigMa / LocalMamba / Vim families.

Every order is a permutation of raster token indices (``row * width + col``); see
:mod:`dimsum_core.interfaces.scan`. The corner-path families (``sweep8``, ``zigzag8``, ``jpeg8``,
``hilbert``) use the official path list of ``dimsum/scanning_orders.py``: path ``p`` starts at corner
``p // 2`` of [top-left, top-right, bottom-left, bottom-right] and runs row-wise for even ``p``,
column-wise for odd ``p``. ``paths: k`` keeps the first k of them (the official ``sweep_4`` is
``{name: sweep8, paths: 4}``); layer ``i`` uses path ``i % k``.
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch

from dimsum_core.errors import ScanError
from dimsum_core.interfaces.scan import ScanOrder


def raster_grid(height: int, width: int) -> torch.Tensor:
    """(height, width) LongTensor holding each cell's raster index."""
    return torch.arange(height * width).view(height, width)


def oriented_grid(height: int, width: int, path: int) -> torch.Tensor:
    """The raster grid as seen from the start corner of official path ``path`` (0..7).

    Odd paths are transposed, so walking the returned grid row-wise from its top-left cell walks
    the image column-wise from that corner.
    """
    grid = raster_grid(height, width)
    corner = path // 2
    if corner in (1, 3):  # starts on the right
        grid = grid.flip(1)
    if corner in (2, 3):  # starts at the bottom
        grid = grid.flip(0)
    return grid.t() if path % 2 else grid


class Raster(ScanOrder):
    """Row-major order on every layer (the identity), for ablations."""

    period = 1

    def order(self, height: int, width: int, layer: int) -> torch.Tensor:
        self.check(height, width)
        return torch.arange(height * width)


class Bidirectional(ScanOrder):
    """Raster on even layers, reversed raster on odd layers (Vim's two directions, one per layer).

    This is the permutation form of Vim's bidirectional scan. The Vim "v2" mixer, which runs a
    forward and a backward SSM inside one layer and sums them, is not a permutation: it is a mixer.
    """

    period = 2

    def order(self, height: int, width: int, layer: int) -> torch.Tensor:
        self.check(height, width)
        perm = torch.arange(height * width)
        return perm.flip(0) if layer % 2 else perm


class Sweep4(ScanOrder):
    """Official DiMSUM spatial scan: rows, rows reversed, columns, columns reversed (layer % 4).

    Layer ``i``: ``reverse = i % 2 == 1`` (the whole sequence reversed) and
    ``transpose = i % 4 >= 2`` (column-major: cells sorted by column, then row).
    """

    period = 4

    def order(self, height: int, width: int, layer: int) -> torch.Tensor:
        self.check(height, width)
        grid = raster_grid(height, width)
        if layer % 4 >= 2:
            grid = grid.t()
        perm = grid.flatten()
        return perm.flip(0) if layer % 2 else perm


class CornerPaths(ScanOrder):
    """A base path, walked from each corner row- or column-wise: the 8 official path variants.

    Subclasses give :meth:`path`, the walk over an ``h × w`` grid that starts at its top-left cell
    and runs row-wise; the corner and direction come from :func:`oriented_grid`.
    """

    #: the registry name, for error messages
    label = ""

    def __init__(self, paths: int = 8):
        if not 1 <= paths <= 8:
            raise ScanError(f"{self.label}: paths must be between 1 and 8 (4 corners x rows/columns), "
                            f"got {paths}")
        self.paths = paths
        self.period = paths

    @abstractmethod
    def path(self, h: int, w: int) -> torch.Tensor:
        """Positions (raster indices of the ``h × w`` grid) in visiting order."""

    def order(self, height: int, width: int, layer: int) -> torch.Tensor:
        self.check(height, width)
        grid = oriented_grid(height, width, layer % self.paths)
        return grid.flatten()[self.path(*grid.shape)]


class Sweep8(CornerPaths):
    """ZigMa sweep: rows or columns, all one way, from each of the 4 corners."""

    label = "sweep8"

    def path(self, h: int, w: int) -> torch.Tensor:
        return torch.arange(h * w)


class Zigzag8(CornerPaths):
    """ZigMa zigzag: snake (boustrophedon) rows or columns from each of the 4 corners."""

    label = "zigzag8"

    def path(self, h: int, w: int) -> torch.Tensor:
        grid = raster_grid(h, w)
        grid[1::2] = grid[1::2].flip(1)
        return grid.flatten()


class Jpeg8(CornerPaths):
    """JPEG zig-zag along anti-diagonals from each of the 4 corners.

    On a rectangle the walk stays well defined: diagonal ``d = row + col`` is walked upwards
    (row falling) for even ``d`` and downwards for odd ``d``, so every step moves to a neighbouring
    cell (8-connected). On even square grids this is exactly the official ``jpeg_zigzag``; on odd
    ones the official row-first paths stop before the last diagonals (not a permutation), and this
    walk completes them.
    """

    label = "jpeg8"

    def path(self, h: int, w: int) -> torch.Tensor:
        rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        diagonal = rows + cols
        along = torch.where(diagonal % 2 == 0, cols, rows)  # position along this diagonal's walk
        return torch.argsort((diagonal * (h + w) + along).flatten())


class Hilbert(CornerPaths):
    """Generalized Hilbert curve (gilbert), on any rectangle.

    ``variants: k`` cycles layers through the first k of the 8 corner/direction variants
    (1 = the same curve on every layer).
    """

    label = "hilbert"

    def __init__(self, variants: int = 1):
        if not 1 <= variants <= 8:
            raise ScanError(f"hilbert: variants must be between 1 and 8, got {variants}")
        super().__init__(paths=variants)

    def path(self, h: int, w: int) -> torch.Tensor:
        return torch.tensor(gilbert(h, w))


def gilbert(height: int, width: int) -> list[int]:
    """Raster indices along the generalized Hilbert curve of a ``height × width`` grid.

    The recursive splitting of J. Červený's "gilbert" algorithm: cut the longer side in two
    (keeping halves even where possible so every piece still has a Hilbert walk), or split into the
    classic three-part U. Walks start at the top-left cell and run along the longer side.
    """
    out: list[int] = []

    def sign(v: int) -> int:
        return (v > 0) - (v < 0)

    def walk(x: int, y: int, ax: int, ay: int, bx: int, by: int) -> None:
        # (x, y): start cell; (ax, ay): the major axis vector; (bx, by): the minor one
        w, h = abs(ax + ay), abs(bx + by)
        dax, day, dbx, dby = sign(ax), sign(ay), sign(bx), sign(by)
        if h == 1 or w == 1:  # a straight line along the only non-trivial axis
            sx, sy, n = (dax, day, w) if h == 1 else (dbx, dby, h)
            for _ in range(n):
                out.append(y * width + x)
                x, y = x + sx, y + sy
            return
        ax2, ay2, bx2, by2 = ax // 2, ay // 2, bx // 2, by // 2
        w2, h2 = abs(ax2 + ay2), abs(bx2 + by2)
        if 2 * w > 3 * h:  # long and thin: two halves along the major axis
            if w2 % 2 and w > 2:
                ax2, ay2 = ax2 + dax, ay2 + day
            walk(x, y, ax2, ay2, bx, by)
            walk(x + ax2, y + ay2, ax - ax2, ay - ay2, bx, by)
        else:  # up, across, down
            if h2 % 2 and h > 2:
                bx2, by2 = bx2 + dbx, by2 + dby
            walk(x, y, bx2, by2, ax2, ay2)
            walk(x + bx2, y + by2, ax, ay, bx - bx2, by - by2)
            walk(x + (ax - dax) + (bx2 - dbx), y + (ay - day) + (by2 - dby),
                 -bx2, -by2, -(ax - ax2), -(ay - ay2))

    if width >= height:
        walk(0, 0, width, 0, 0, height)
    else:
        walk(0, 0, 0, height, width, 0)
    return out


class WindowScan(ScanOrder):
    """Official DiMSUM wavelet-branch window scan: grid/4 windows, column-first on odd layers.

    ``window: null`` is the official size, a quarter of the grid side (4 at a 16×16 grid, so 16
    windows of 16 tokens); on a rectangle it means (H/4)×(W/4) windows. With ``alternate`` (the
    official behaviour) odd layers are column-first: both the window order and the order inside each
    window are transposed.
    """

    label = "window"

    def __init__(self, window: int | None = None, alternate: bool = True):
        if window is not None and window < 1:
            raise ScanError(f"{self.label}: window must be a positive number of tokens, got {window}")
        self.window = window
        self.alternate = alternate
        self.period = 2 if alternate else 1

    def window_shape(self, height: int, width: int) -> tuple[int, int]:
        if self.window is None:
            return height // 4, width // 4
        return self.window, self.window

    def check(self, height: int, width: int) -> None:
        super().check(height, width)
        if self.window is None:
            if height % 4 or width % 4:
                raise ScanError(f"{self.label}: window: null (a quarter of each side) needs grid sides "
                                f"divisible by 4, got {height}x{width}; set window to a divisor of both")
            return
        if height % self.window or width % self.window:
            common = math.gcd(height, width)
            fits = max(d for d in range(1, min(self.window, common) + 1) if common % d == 0)
            raise ScanError(f"{self.label}: a {height}x{width} grid cannot be cut into "
                            f"{self.window}x{self.window} windows; use a window that divides both sides "
                            f"(e.g. window: {fits})")

    def order(self, height: int, width: int, layer: int) -> torch.Tensor:
        self.check(height, width)
        wh, ww = self.window_shape(height, width)
        # axes: (window row, row in window, window column, column in window)
        grid = raster_grid(height, width).view(height // wh, wh, width // ww, ww)
        if self.alternate and layer % 2:
            return grid.permute(2, 0, 3, 1).flatten()
        return grid.permute(0, 2, 1, 3).flatten()


class LocalWindowScan(WindowScan):
    """LocalMamba-style spatial window scan: 4×4 windows by default.

    The same walk as ``window`` with a fixed tile size (4 by default); ``alternate`` makes odd
    layers column-first (tile order and order inside each tile transposed).
    """

    label = "local-window"

    def __init__(self, window: int = 4, alternate: bool = True):
        super().__init__(window=window, alternate=alternate)
