"""Where samples go: a PNG grid (``.png``), a folder of PNGs, or an ADM-style ``.npz``.

Every file is written to a temporary name first and renamed, so an interrupted run never leaves a half-written
file under the final name; the commands refuse an existing output first (:mod:`dimsum_core.cli.outputs`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from dimsum_core.errors import DimsumError

OutputKind = Literal["grid", "folder", "npz"]
#: PNG grids enlarge smaller tiles (nearest-neighbour, by a whole factor) to at least this side in pixels
MIN_TILE = 64


def output_kind(path: Path) -> OutputKind:
    """``.png`` -> grid, ``.npz`` -> npz, an existing directory or a name without suffix -> folder."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        return "grid"
    if path.suffix.lower() == ".npz":
        return "npz"
    if path.is_dir() or path.suffix == "":
        return "folder"
    raise DimsumError(f"{path}: unknown output type '{path.suffix}'; use .png (grid), .npz (ADM style) "
                      f"or a directory (one PNG per sample)")


def check_output(path: Path) -> OutputKind:
    """The output kind, after checking that a file's folder exists."""
    path = Path(path)
    kind = output_kind(path)
    if kind != "folder" and not path.parent.exists():
        raise DimsumError(f"{path.parent}: no such directory for --out")
    return kind


def _hwc(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) uint8 -> (H, W, C) or (H, W) numpy for PIL."""
    array = image.permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def grid_columns(n: int, classes: int = 0) -> int:
    """Columns for ``n`` images: one per class when labels cycle through ``classes`` (so each column is
    one class), else the smallest divisor of ``n`` from sqrt(n) up (a near-square grid without empty cells)."""
    if classes > 0:
        return min(classes, n)
    return next(c for c in range(math.isqrt(max(n, 1) - 1) + 1, n + 1) if n % c == 0)


def upscale_factor(side: int) -> int:
    """The whole factor that brings a tile of ``side`` pixels to at least :data:`MIN_TILE` (1 if it is)."""
    return max(1, math.ceil(MIN_TILE / side))


def image_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> torch.Tensor:
    """(N, C, H, W) uint8 -> one (C, H', W') uint8 grid with ``nrow`` images per row (default:
    :func:`grid_columns`)."""
    n, c, h, w = images.shape
    nrow = nrow or grid_columns(n)
    rows = math.ceil(n / nrow)
    grid = torch.zeros(c, rows * (h + padding) + padding, nrow * (w + padding) + padding, dtype=torch.uint8)
    for i in range(n):
        top, left = padding + (i // nrow) * (h + padding), padding + (i % nrow) * (w + padding)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid


def grid_picture(images: torch.Tensor, nrow: int | None = None, upscale: int | None = None) -> Image.Image:
    """(N, C, H, W) uint8 -> a PIL image of the grid, each tile enlarged ``upscale`` times by repeating
    pixels (default: :func:`upscale_factor`, so tiny images stay visible; 1 keeps them as they are)."""
    factor = upscale or upscale_factor(max(images.shape[-2:]))
    tiles = images.cpu().repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
    return Image.fromarray(_hwc(image_grid(tiles, nrow)))


def write_grid(path: Path, images: torch.Tensor, nrow: int | None = None, upscale: int | None = None) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    grid_picture(images, nrow, upscale).save(tmp)
    os.replace(tmp, path)


def write_npz(path: Path, images: torch.Tensor, labels: torch.Tensor | None) -> None:
    """ADM layout: ``arr_0`` uint8 (N, H, W, C) and, for class-conditional samples, ``arr_1`` labels."""
    path = Path(path)
    arrays = {"arr_0": images.permute(0, 2, 3, 1).numpy()}
    if labels is not None:
        arrays["arr_1"] = labels.numpy().astype(np.int64)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def write_pngs(folder: Path, indices: list[int], images: torch.Tensor) -> None:
    """One ``{index:06d}.png`` per sample; ranks write disjoint names, so no gather is needed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in zip(indices, images, strict=True):
        final = folder / f"{index:06d}.png"
        tmp = folder / f".{final.name}.tmp-{os.getpid()}.png"
        Image.fromarray(_hwc(image)).save(tmp)
        os.replace(tmp, final)
