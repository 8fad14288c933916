"""``procedural``: class-conditional images of simple shapes, drawn on the fly (no downloads).

Each item is drawn from its own generator seeded by ``(seed, index)``, so item i is the same in
every process, worker and run. Shapes are signed-distance functions evaluated on the pixel grid
(anti-aliased by clamping the distance to one pixel), which keeps drawing vectorised and fast.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dimsum_core.config.spec import Seed
from dimsum_core.errors import DataError
from dimsum_core.interfaces.dataset import ImageDataset


def _box(px: np.ndarray, py: np.ndarray, half_w: float, half_h: float) -> np.ndarray:
    return np.maximum(np.abs(px) - half_w, np.abs(py) - half_h)


def _plus(px: np.ndarray, py: np.ndarray) -> np.ndarray:
    return np.minimum(_box(px, py, 0.95, 0.3), _box(px, py, 0.3, 0.95))


def _triangle(px: np.ndarray, py: np.ndarray) -> np.ndarray:
    # equilateral, apex up (image y grows downwards), circumradius 1: three half-planes at inradius 0.5
    c = math.sqrt(3) / 2
    return np.maximum.reduce([py, -c * px - 0.5 * py, c * px - 0.5 * py]) - 0.5


#: signed distance of each shape (negative inside) in unit coordinates, p = (pixel - centre) / radius
SHAPES = {
    "circle": lambda px, py: np.hypot(px, py) - 1.0,
    "square": lambda px, py: _box(px, py, 0.8, 0.8),
    "triangle": _triangle,
    "plus": _plus,
    "ring": lambda px, py: np.abs(np.hypot(px, py) - 0.72) - 0.25,
    "diamond": lambda px, py: (np.abs(px) + np.abs(py) - 1.0) / math.sqrt(2),
    "x": lambda px, py: _plus((px + py) / math.sqrt(2), (py - px) / math.sqrt(2)),
    "hbar": lambda px, py: _box(px, py, 1.0, 0.35),
}
SHAPE_NAMES = list(SHAPES)


def pixel_grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) coordinates of the pixel centres in [-1, 1], each (resolution, resolution)."""
    coords = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution * 2 - 1
    gy, gx = np.meshgrid(coords, coords, indexing="ij")
    return gy, gx


class ProceduralShapes(ImageDataset):
    """Procedural shapes (circle, square, triangle, plus, ...), one class per shape, any resolution.

    Random colours (foreground contrasting with background), position and size. ``num_classes`` k
    uses the first k shapes; 0 draws all shapes unlabeled (labels 0). The size (circumradius) is drawn
    uniformly from [``min_radius``, ``max_radius``], in units of half the image side; larger shapes
    read better at small resolutions.
    """

    channels = 3
    is_latent = False
    opens_quickly = True

    def __init__(self, resolution: int = 32, num_classes: int = 4, size: int = 10000, seed: Seed = 0,
                 min_radius: float = 0.4, max_radius: float = 0.8):
        if not 0 <= num_classes <= len(SHAPES):
            raise DataError(f"procedural: num_classes={num_classes}; there are {len(SHAPES)} shapes "
                            f"({', '.join(SHAPE_NAMES)}), so use 0..{len(SHAPES)}")
        if resolution < 4:
            raise DataError(f"procedural: resolution={resolution} is too small to draw shapes; use >= 4")
        if size < 1:
            raise DataError(f"procedural: size={size}; it is the number of items, use >= 1")
        if not 0 < min_radius <= max_radius <= 1:
            raise DataError(f"procedural: min_radius={min_radius}, max_radius={max_radius}; the shape must fit "
                            f"the image, so use 0 < min_radius <= max_radius <= 1")
        self.resolution = resolution
        self.num_classes = num_classes
        self.classes = SHAPE_NAMES[:num_classes]
        self.size = size
        self.seed = seed
        self.min_radius, self.max_radius = min_radius, max_radius
        self._gy, self._gx = pixel_grid(resolution)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(f"procedural: index {index} out of range for size {self.size}")
        rng = np.random.default_rng([self.seed, index])
        shape = int(rng.integers(self.num_classes or len(SHAPES)))
        radius = rng.uniform(self.min_radius, self.max_radius)
        cx, cy = rng.uniform(-1 + radius, 1 - radius, size=2)
        dark, light = rng.uniform(0.0, 0.35, size=3), rng.uniform(0.6, 1.0, size=3)
        background, foreground = (dark, light) if rng.random() < 0.5 else (light, dark)
        distance = SHAPES[SHAPE_NAMES[shape]]((self._gx - cx) / radius, (self._gy - cy) / radius)
        pixels_per_unit = radius * self.resolution / 2
        alpha = np.clip(0.5 - distance * pixels_per_unit, 0.0, 1.0)[None]
        image = background[:, None, None] * (1 - alpha) + foreground[:, None, None] * alpha
        x = torch.from_numpy((image * 2 - 1).astype(np.float32))
        return x, (shape if self.num_classes else 0)
