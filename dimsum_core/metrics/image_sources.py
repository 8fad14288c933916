"""Images to score: a folder of image files or an ADM-style ``.npz`` (``arr_0`` uint8 NHWC), read in
batches as uint8 (N, 3, H, W) without loading everything into memory."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dimsum_core.data.image_files import IMAGE_SUFFIXES, read_rgb
from dimsum_core.errors import DataError


def _read_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:  # noqa: ANN001 - a file object
    """Advance past the .npy header; (shape, fortran order, dtype)."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _npz_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    with zipfile.ZipFile(path) as archive, archive.open("arr_0.npy") as f:
        shape, fortran, dtype = _read_header(f)
    if fortran:
        raise DataError(f"{path}: arr_0 is stored in Fortran order; re-save it with np.savez")
    return shape, dtype


@dataclass
class ImageSource:
    """A folder of images (found recursively, sorted by path) or an ``.npz`` with ``arr_0``.

    ``resize`` (folders only) resizes every image to resize x resize with Lanczos; without it all
    images must already share one size.
    """

    path: Path
    files: list[Path]
    count: int
    resize: int | None = None

    @classmethod
    def open(cls, path: str | Path, resize: int | None = None) -> ImageSource:
        path = Path(path).expanduser()
        if resize is not None and resize < 1:
            raise DataError(f"--ref-resize {resize}: use a side of 1 pixel or more")
        if not path.exists():
            raise DataError(f"{path}: no such image folder or .npz")
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise DataError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            return cls(path, files, len(files), resize)._scorable()
        if path.suffix.lower() != ".npz":
            raise DataError(f"{path}: expected a folder of images or an .npz with arr_0 (N, H, W, C) uint8")
        try:
            shape, dtype = _npz_header(path)
        except (KeyError, zipfile.BadZipFile, ValueError, OSError) as exc:
            raise DataError(f"{path}: not an ADM-style .npz with arr_0 ({exc})") from None
        if len(shape) != 4 or shape[-1] not in (1, 3) or dtype != np.uint8:
            raise DataError(f"{path}: arr_0 must be uint8 (N, H, W, 1 or 3), got {dtype} {shape}")
        if resize is not None:
            raise DataError(f"{path}: resizing is for image folders; store the .npz at the size to score")
        return cls(path, [], shape[0], None)._scorable()

    def _scorable(self) -> ImageSource:
        if self.count < 2:
            raise DataError(f"{self.path}: holds {self.count} image(s); scoring needs at least 2 (a covariance)")
        return self

    def content_key(self) -> str:
        """A hash of what the images are: names, sizes and modification times (not the pixels)."""
        entries = [(str(p.relative_to(self.path)), p.stat().st_size, p.stat().st_mtime_ns) for p in self.files]
        if not self.files:
            entries = [(self.path.name, self.path.stat().st_size, self.path.stat().st_mtime_ns)]
        blob = json.dumps({"path": str(self.path.resolve()), "entries": entries, "resize": self.resize})
        return hashlib.sha256(blob.encode()).hexdigest()

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """uint8 (N, 3, H, W) batches in order; one-channel images are repeated to three."""
        reader = self._folder_batches(batch_size) if self.files else self._npz_batches(batch_size)
        for batch in reader:
            array = torch.from_numpy(batch).permute(0, 3, 1, 2)
            yield array.expand(-1, 3, -1, -1).contiguous() if array.shape[1] == 1 else array

    def _folder_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        size = None
        for start in range(0, self.count, batch_size):
            images = []
            for file in self.files[start:start + batch_size]:
                image = read_rgb(file)
                if self.resize is not None and image.size != (self.resize, self.resize):
                    image = image.resize((self.resize, self.resize), Image.Resampling.LANCZOS)
                array = np.asarray(image)
                size = size or array.shape
                if array.shape != size:
                    raise DataError(f"{file}: is {array.shape[1]}x{array.shape[0]} but earlier images are "
                                    f"{size[1]}x{size[0]}; pass --ref-resize N (or resize the folder)")
                images.append(array)
            yield np.stack(images)

    def _npz_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        shape, dtype = _npz_header(self.path)
        per_image = int(np.prod(shape[1:])) * dtype.itemsize
        with zipfile.ZipFile(self.path) as archive, archive.open("arr_0.npy") as f:
            _read_header(f)
            for start in range(0, self.count, batch_size):
                n = min(batch_size, self.count - start)
                yield np.frombuffer(bytearray(f.read(n * per_image)), dtype=dtype).reshape(n, *shape[1:])
