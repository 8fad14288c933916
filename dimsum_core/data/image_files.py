"""Finding, checking and loading image files: the shared part of ``image-folder`` and
``dimsum prepare-latents``.

Pixels come out as float32 (3, R, R) in [-1, 1] after ADM's ``center_crop_arr`` (DiT, SiT, DiMSUM).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dimsum_core.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm")
LabelMode = Literal["auto", "folders", "none"]
BadImagePolicy = Literal["skip", "error"]


@dataclass
class ImageFiles:
    """Readable image files with their labels; ``skipped`` are the unreadable ones left out."""

    root: Path
    files: list[Path]
    labels: list[int]
    classes: list[str]
    skipped: list[Path]


def _images_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


#: what PIL raises for a file it cannot decode
_UNREADABLE = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _readable(path: Path) -> bool:
    """Whether PIL recognises the file (reads the header only, so it is fast)."""
    try:
        with Image.open(path) as im:
            im.size  # noqa: B018 - parsing the header is the check
        return True
    except _UNREADABLE:
        return False


def _to_rgb8(image: Image.Image) -> Image.Image:
    """8-bit RGB by bit depth: PIL's own conversion clips 16-bit and float pixels (white or black images)."""
    if image.mode == "F" or image.mode == "I" or image.mode.startswith("I;16"):
        scale = 255.0 if image.mode == "F" else 255.0 / 65535.0  # float images in [0, 1]; 16-bit integers
        array = np.clip(np.asarray(image, dtype=np.float64) * scale + 0.5, 0, 255).astype(np.uint8)
        image = Image.fromarray(array, mode="L")
    return image.convert("RGB")


def read_rgb(path: Path) -> Image.Image:
    """One image file as 8-bit RGB; a :class:`DataError` names a file that cannot be decoded."""
    try:
        with Image.open(path) as im:
            return _to_rgb8(im)
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: too large to decode safely ({exc}); shrink or remove it") from None
    except _UNREADABLE as exc:
        raise DataError(f"{path}: unreadable image ({exc}); fix or remove it") from None


def find_images(root: str | Path, labels: LabelMode = "auto",
                on_bad_image: BadImagePolicy = "skip") -> ImageFiles:
    """List the images under ``root``.

    ``labels``: ``folders`` takes one class per sub-folder (sorted names, like torchvision's
    ImageFolder), ``none`` makes every image unlabeled, ``auto`` uses folders when a sub-folder holds
    images. Unreadable files are skipped and counted, or raise a :class:`DataError` naming the file.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"{root}: no such data folder; give a folder of images (in a recipe: data.root)")
    if not root.is_dir():
        raise DataError(f"{root}: is a file; give a folder of images or of class sub-folders (in a recipe: data.root)")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    class_dirs = [d for d in class_dirs if _images_under(d)]
    if labels == "folders" and not class_dirs:
        raise DataError(f"{root}: labels=folders needs one sub-folder of images per class; none found")
    use_folders = labels == "folders" or (labels == "auto" and bool(class_dirs))
    if use_folders:
        classes = [d.name for d in class_dirs]
        pairs = [(p, k) for k, d in enumerate(class_dirs) for p in _images_under(d)]
        loose = [p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if loose:
            warnings.warn(f"{root}: left out {len(loose)} image(s) beside the class folders (e.g. {loose[0].name}): "
                          f"labels come from the sub-folders; move them into one, or set data.labels=none",
                          stacklevel=2)
    else:
        classes = []
        pairs = [(p, 0) for p in _images_under(root)]
    if not pairs:
        raise DataError(f"{root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)}); "
                        f"put images (or one sub-folder of images per class) there")
    files, kept_labels, skipped = [], [], []
    for path, label in pairs:
        if _readable(path):
            files.append(path)
            kept_labels.append(label)
        elif on_bad_image == "error":
            raise DataError(f"{path}: unreadable image; fix or remove it, or set data.on_bad_image=skip")
        else:
            skipped.append(path)
    if not files:
        raise DataError(f"{root}: none of the {len(pairs)} image files is readable")
    if skipped:
        shown = ", ".join(str(p.relative_to(root)) for p in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        warnings.warn(f"{root}: skipped {len(skipped)} unreadable image(s): {shown}{more}", stacklevel=2)
    return ImageFiles(root, files, kept_labels, classes, skipped)


def center_crop_arr(image: Image.Image, resolution: int) -> Image.Image:
    """ADM's center crop: halve with BOX while the short side is >= 2x the target, resize the
    short side to ``resolution`` with BICUBIC, then crop the centre square."""
    while min(*image.size) >= 2 * resolution:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = resolution / min(*image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    arr = np.asarray(image)
    top = (arr.shape[0] - resolution) // 2
    left = (arr.shape[1] - resolution) // 2
    return Image.fromarray(arr[top: top + resolution, left: left + resolution])


def load_image(path: Path, resolution: int) -> torch.Tensor:
    """One image as float32 (3, R, R) in [-1, 1]; a :class:`DataError` names an unreadable file."""
    arr = np.asarray(center_crop_arr(read_rgb(path), resolution), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1).div_(127.5).sub_(1.0)
