"""The on-disk format of precomputed VAE latents (written by ``dimsum prepare-latents``).

A latent store is a directory::

    DIR/
      latents.json   sidecar: VAE, scaling factor, latent shape, image count, classes, progress
      latents.npy    float32 (flips * count, C, h, w); row f * count + i is image i, h-flipped when f = 1
      labels.npy     int64 (count,)

``latents.npy`` is a standard .npy file, so it opens memory-mapped (``np.load(mmap_mode="r")``) and
every size comes from the sidecar, never from constants. Rows are written in image order and
``done`` counts finished images, which makes an interrupted encode resumable.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dimsum_core.errors import DataError

SIDECAR = "latents.json"
LATENTS = "latents.npy"
LABELS = "labels.npy"
FORMAT = "dimsum-latents/1"


@dataclass
class LatentInfo:
    vae: str
    scaling_factor: float
    #: (C, h, w) of one latent
    shape: list[int]
    #: number of source images (the store holds flips * count rows)
    count: int
    flips: int
    resolution: int
    num_classes: int
    classes: list[str] = field(default_factory=list)
    #: identifies the source image list, so a resume never mixes two image sets
    source: str = ""
    #: images encoded so far (rows [0, done) and [count, count + done) are final)
    done: int = 0
    format: str = FORMAT

    @property
    def complete(self) -> bool:
        return self.done >= self.count

    @property
    def rows(self) -> int:
        return self.flips * self.count


def read_info(directory: str | Path) -> LatentInfo:
    directory = Path(directory).expanduser()
    path = directory / SIDECAR
    if not directory.is_dir():
        raise DataError(f"{directory}: no such latent folder; create it with "
                        f"`dimsum prepare-latents IMAGE_DIR --vae VAE_DIR --out {directory}`")
    if not path.is_file():
        raise DataError(f"{directory}: not a latent store (no {SIDECAR}); create it with "
                        f"`dimsum prepare-latents IMAGE_DIR --vae VAE_DIR --out {directory}`")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: unreadable ({exc.msg} at line {exc.lineno})") from None
    if raw.get("format") != FORMAT:
        raise DataError(f"{path}: format {raw.get('format')!r} is not {FORMAT!r}")
    names = {f.name for f in dataclasses.fields(LatentInfo)}
    try:
        return LatentInfo(**{k: v for k, v in raw.items() if k in names})
    except TypeError as exc:
        raise DataError(f"{path}: incomplete sidecar ({exc})") from None


def write_info(directory: Path, info: LatentInfo) -> None:
    """Replace the sidecar atomically (a kill leaves the old or the new one, never half a file)."""
    tmp = directory / f".{SIDECAR}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(dataclasses.asdict(info), indent=1))
    os.replace(tmp, directory / SIDECAR)


def create_arrays(directory: Path, info: LatentInfo, labels: np.ndarray) -> np.memmap:
    """Allocate ``latents.npy`` (memory-mapped, writable) and write ``labels.npy``."""
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / LABELS, labels.astype(np.int64))
    latents = np.lib.format.open_memmap(directory / LATENTS, mode="w+", dtype=np.float32,
                                        shape=(info.rows, *info.shape))
    write_info(directory, info)
    return latents


def open_latents(directory: Path, info: LatentInfo, writable: bool = False) -> np.ndarray:
    path = directory / LATENTS
    try:
        latents = np.load(path, mmap_mode="r+" if writable else "r")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable latent array ({exc})") from None
    expected = (info.rows, *info.shape)
    if tuple(latents.shape) != expected:
        raise DataError(f"{path}: shape {tuple(latents.shape)} does not match {SIDECAR} ({expected})")
    return latents


def open_labels(directory: Path, info: LatentInfo) -> np.ndarray:
    path = directory / LABELS
    try:
        labels = np.load(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable labels ({exc})") from None
    if labels.shape != (info.count,):
        raise DataError(f"{path}: {labels.shape[0]} labels for {info.count} images in {SIDECAR}")
    return labels

