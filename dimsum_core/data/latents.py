"""``latents``: VAE latents precomputed by ``dimsum prepare-latents`` (memory-mapped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dimsum_core.data.latent_store import open_labels, open_latents, read_info
from dimsum_core.errors import DataError
from dimsum_core.interfaces.dataset import ImageDataset


class LatentDataset(ImageDataset):
    """Precomputed VAE latents (both flip states) read from a memory-mapped .npy store.

    Every size (count, latent shape, flips, classes) comes from the store's ``latents.json``.
    """

    is_latent = True

    def __init__(self, root: str, hflip: bool = True):
        info = read_info(root)
        if not info.complete:
            raise DataError(f"{root}: latents are incomplete ({info.done} of {info.count} images encoded); "
                            f"rerun the same `dimsum prepare-latents` command to finish")
        self.root = Path(root).expanduser()
        self.info = info
        self.channels, height, width = info.shape
        if height != width:
            raise DataError(f"{root}: latents are {height}x{width}; only square latents are supported")
        self.resolution = height
        self.num_classes = info.num_classes
        self.classes = info.classes
        self.scaling_factor = info.scaling_factor
        self.vae = info.vae
        # without hflip only the unflipped rows are used
        self.flips = info.flips if hflip else 1
        self._latents: np.ndarray | None = None
        self._labels = open_labels(self.root, info)
        open_latents(self.root, info)  # checks the array now, not in a worker later

    def __len__(self) -> int:
        return self.info.count * self.flips

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self._latents is None:  # opened lazily, so each DataLoader worker maps it itself
            self._latents = open_latents(self.root, self.info)
        x = torch.from_numpy(np.array(self._latents[index], dtype=np.float32))
        return x, int(self._labels[index % self.info.count])
