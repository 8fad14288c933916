"""``procedural-scenes``: class-conditional scenes for convergence studies, drawn on the fly.

A scene is a shaded background (a two-colour gradient with soft waves), 0-3 small distractor
shapes behind the main object, the main object (its shape is the class) filled with one of four
textures (solid, stripes, checker, marbled noise) and, half of the time, a small occluder drawn
over the main object's edge. A model must get the global layout right (one large object of the
right shape, placed anywhere, at any size) and the fine local structure (textures, edges).

Item ``i`` of split ``s`` depends only on ``(seed, s, i)``: its parameters come from its own
generator, and the train and val splits draw from disjoint generator streams. Drawing is
vectorised over a batch of items (one signed-distance evaluation per shape class present).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from dimsum_core.config.spec import Seed
from dimsum_core.data.procedural import SHAPES as BASIC_SHAPES
from dimsum_core.data.procedural import pixel_grid
from dimsum_core.errors import DataError
from dimsum_core.interfaces.dataset import ImageDataset

Split = Literal["train", "val"]
SPLIT_STREAMS = {"train": 0, "val": 1}
TEXTURES = ("solid", "stripes", "checker", "noise")


def _star(px: np.ndarray, py: np.ndarray) -> np.ndarray:
    # five-pointed star as a polar radius function (approximately a distance near the edge)
    r, a = np.hypot(px, py), np.arctan2(px, -py)  # apex up
    edge = 0.62 + 0.38 * np.cos(5 * a) ** 3
    return (r - edge) * 0.8


def _crescent(px: np.ndarray, py: np.ndarray) -> np.ndarray:
    return np.maximum(np.hypot(px, py) - 1.0, 0.78 - np.hypot(px - 0.45, py + 0.1))


#: the class of a scene is the shape of its main object, in this order
SHAPES = {**BASIC_SHAPES, "star": _star, "crescent": _crescent}
SHAPE_NAMES = list(SHAPES)


class SceneParams:
    """The random parameters of a batch of scenes, one row per item (arrays of length B).

    Each item draws one vector of uniforms from its own generator; every parameter is a slice of it.
    """

    UNIFORMS = 64

    def __init__(self, rngs: list[np.random.Generator], num_classes: int):
        u = np.stack([g.random(self.UNIFORMS, dtype=np.float32) for g in rngs]) if rngs else \
            np.zeros((0, self.UNIFORMS), np.float32)
        cursor = 0

        def take(n: int = 1, low: float = 0.0, high: float = 1.0) -> np.ndarray:
            nonlocal cursor
            cols = u[:, cursor:cursor + n]
            cursor += n
            out = low + (high - low) * cols
            return out[:, 0] if n == 1 else out

        self.label = np.minimum((take() * num_classes).astype(np.int64), num_classes - 1)
        # background: dark or light, two colours along a gradient direction, a soft wave
        self.bg_dark = take() < 0.5
        self.bg_a, self.bg_b = take(3, 0.0, 0.4), take(3, 0.0, 0.4)
        self.bg_angle = take(1, 0, 2 * math.pi)
        self.wave = np.concatenate([take(2, 1.0, 3.0) * np.where(take(2) < 0.5, -1, 1),
                                    take(1, 0, 2 * math.pi)[:, None]], axis=1)
        # main object: radius, centre, small rotation, two fill colours, texture and its parameters
        self.radius = take(1, 0.35, 0.7)
        self.centre = (take(2, -1.0, 1.0) * (1 - self.radius[:, None]))
        self.rotation = take(1, -0.25, 0.25)
        # fill colours: the first contrasts with the backdrop, the second is shifted towards it
        bright, shift = take(3, 0.6, 1.0), take(1, 0.3, 0.5)[:, None]
        self.fg_a = np.where(self.bg_dark[:, None], bright, 1 - bright)
        self.fg_b = np.clip(np.where(self.bg_dark[:, None], self.fg_a - shift, self.fg_a + shift), 0, 1)
        self.texture = np.minimum((take() * len(TEXTURES)).astype(np.int64), len(TEXTURES) - 1)
        self.tex_angle = take(1, 0, math.pi)
        self.tex_freq = take(1, 2.5, 5.0)
        self.noise_waves = np.concatenate([take(6, -5.0, 5.0).reshape(-1, 3, 2),
                                           take(3, 0, 2 * math.pi).reshape(-1, 3, 1)], axis=2)
        # up to three distractors behind the object: shape, centre, radius, colour
        self.n_distractors = np.minimum((take() * 4).astype(np.int64), 3)
        self.distractors = np.concatenate([np.floor(take(3, 0, len(SHAPES) - 1e-6))[..., None],
                                           take(6, -0.85, 0.85).reshape(-1, 3, 2),
                                           take(3, 0.12, 0.25)[..., None],
                                           take(9, 0.1, 1.0).reshape(-1, 3, 3)], axis=2)
        # half of the scenes: an occluder over the object's edge: shape, angle on the edge, radius, colour
        self.occluded = take() < 0.5
        self.occluder = np.concatenate([np.floor(take(1, 0, len(SHAPES) - 1e-6))[:, None],
                                        take(1, 0, 2 * math.pi)[:, None], take(1, 0.14, 0.22)[:, None],
                                        take(3, 0.1, 1.0)], axis=1)
        assert cursor <= self.UNIFORMS


class ProceduralScenes(ImageDataset):
    """Procedural scenes: one textured main object (its shape is the class), distractors, occlusion.

    ``num_classes`` k uses the first k of the 10 shapes (circle, square, triangle, plus, ring,
    diamond, x, hbar, star, crescent). ``split`` selects one of two disjoint item streams.
    """

    channels = 3
    is_latent = False
    opens_quickly = True

    def __init__(self, resolution: int = 32, num_classes: int = 10, size: int = 50000, split: Split = "train",
                 seed: Seed = 0):
        if not 1 <= num_classes <= len(SHAPES):
            raise DataError(f"procedural-scenes: num_classes={num_classes}; there are {len(SHAPES)} shapes "
                            f"({', '.join(SHAPE_NAMES)}), so use 1..{len(SHAPES)}")
        if resolution < 8:
            raise DataError(f"procedural-scenes: resolution={resolution} is too small for scenes; use >= 8")
        if size < 1:
            raise DataError(f"procedural-scenes: size={size}; it is the number of items, use >= 1")
        if split not in SPLIT_STREAMS:
            raise DataError(f"procedural-scenes: split='{split}'; use 'train' or 'val'")
        self.resolution, self.num_classes, self.size = resolution, num_classes, size
        self.split, self.seed = split, seed
        self.classes = SHAPE_NAMES[:num_classes]
        self._gy, self._gx = pixel_grid(resolution)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(f"procedural-scenes: index {index} out of range for size {self.size}")
        images, labels = self.render([index])
        return torch.from_numpy(images[0]), int(labels[0])

    def render(self, indices: list[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Items ``indices`` at once: images (B, 3, R, R) float32 in [-1, 1] and labels (B,) int64."""
        rngs = [np.random.default_rng([self.seed, SPLIT_STREAMS[self.split], int(i)]) for i in indices]
        p = SceneParams(rngs, self.num_classes)
        gx, gy = self._gx[None], self._gy[None]  # (1, R, R)
        image = self._background(p, gx, gy)  # (B, 3, R, R)
        for k in range(p.distractors.shape[1]):
            d = p.distractors[:, k]
            present = p.n_distractors > k
            alpha = self._shape_alpha(d[:, 0].astype(int), d[:, 1], d[:, 2], d[:, 3], np.zeros(len(d)), gx, gy)
            image = _over(image, d[:, 4:7], alpha * present[:, None, None])
        alpha = self._shape_alpha(p.label, p.centre[:, 0], p.centre[:, 1], p.radius, p.rotation, gx, gy)
        image = _over(image, self._texture(p, gx, gy), alpha)
        o = p.occluder
        ox = p.centre[:, 0] + p.radius * np.cos(o[:, 1])
        oy = p.centre[:, 1] + p.radius * np.sin(o[:, 1])
        alpha = self._shape_alpha(o[:, 0].astype(int), ox, oy, o[:, 2], np.zeros(len(o)), gx, gy)
        image = _over(image, o[:, 3:6], alpha * p.occluded[:, None, None])
        return (image * 2 - 1).astype(np.float32), p.label.astype(np.int64)

    # -- drawing ----------------------------------------------------------------------------------
    def _background(self, p: SceneParams, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
        # dark or light backdrop; the main object's first colour is on the other side (SceneParams)
        a = np.where(p.bg_dark[:, None], p.bg_a, 1 - p.bg_a)[:, :, None, None]
        b = np.where(p.bg_dark[:, None], p.bg_b, 1 - p.bg_b)[:, :, None, None]
        along = (np.cos(p.bg_angle)[:, None, None] * gx + np.sin(p.bg_angle)[:, None, None] * gy) * 0.5 + 0.5
        wave = 0.05 * np.sin(math.pi * (p.wave[:, 0, None, None] * gx + p.wave[:, 1, None, None] * gy)
                             + p.wave[:, 2, None, None])
        mix = np.clip(along + wave, 0, 1)[:, None]
        return a * (1 - mix) + b * mix

    def _texture(self, p: SceneParams, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
        """The main object's fill (B, 3, R, R): a blend of its two colours by the texture's pattern."""
        u = (gx - p.centre[:, 0, None, None]) / p.radius[:, None, None]  # object coordinates
        v = (gy - p.centre[:, 1, None, None]) / p.radius[:, None, None]
        c, s = np.cos(p.tex_angle)[:, None, None], np.sin(p.tex_angle)[:, None, None]
        f = p.tex_freq[:, None, None] * math.pi
        mix = np.ones_like(u)  # solid: the first colour everywhere
        for texture in range(1, len(TEXTURES)):
            rows = p.texture == texture
            if not rows.any():
                continue
            ur, vr, cr, sr, fr = u[rows], v[rows], c[rows], s[rows], f[rows]
            if TEXTURES[texture] == "stripes":
                pattern = np.sin(fr * (cr * ur + sr * vr))
            elif TEXTURES[texture] == "checker":
                pattern = np.sin(fr * (cr * ur + sr * vr)) * np.sin(fr * (cr * vr - sr * ur))
            else:  # "noise": marbling from three random plane waves
                w = p.noise_waves[rows]
                pattern = sum(np.sin(w[:, k, 0, None, None] * ur + w[:, k, 1, None, None] * vr
                                     + w[:, k, 2, None, None]) for k in range(w.shape[1])) / math.sqrt(w.shape[1])
            # a soft two-level pattern, in about [-1, 1] before the clip
            mix[rows] = np.clip(0.5 + 1.5 * pattern, 0, 1)
        mix = mix[:, None]
        return p.fg_a[:, :, None, None] * mix + p.fg_b[:, :, None, None] * (1 - mix)

    def _shape_alpha(self, shape: np.ndarray, cx: np.ndarray, cy: np.ndarray, radius: np.ndarray,
                     rotation: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
        """Anti-aliased coverage (B, R, R) of shape ``shape[b]`` at centre, radius and rotation."""
        c, s = np.cos(rotation)[:, None, None], np.sin(rotation)[:, None, None]
        dx = (gx - cx[:, None, None]) / radius[:, None, None]
        dy = (gy - cy[:, None, None]) / radius[:, None, None]
        px, py = c * dx + s * dy, c * dy - s * dx
        distance = np.empty_like(px)
        for k in np.unique(shape):
            rows = shape == k
            distance[rows] = SHAPES[SHAPE_NAMES[k]](px[rows], py[rows])
        pixels_per_unit = radius[:, None, None] * self.resolution / 2
        return np.clip(0.5 - distance * pixels_per_unit, 0.0, 1.0)


def _over(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Paint ``colour`` ((B, 3) or (B, 3, R, R)) over ``image`` (B, 3, R, R) with coverage (B, R, R)."""
    if colour.ndim == 2:
        colour = colour[:, :, None, None]
    a = alpha[:, None]
    return image * (1 - a) + colour * a
