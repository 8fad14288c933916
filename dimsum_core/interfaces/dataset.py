"""Training data: images in [-1, 1] (or latents) with integer labels."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch.utils.data import Dataset


class ImageDataset(Dataset, ABC):
    #: channels, side length of one item (square)
    channels: int
    resolution: int
    #: number of classes; 0 means unlabeled (labels are all 0 then)
    num_classes: int
    #: True when items are VAE latents (sampling decodes them), False for pixels in [-1, 1]
    is_latent: bool = False
    #: True when constructing it reads nothing large (no folder scan): `dimsum validate` then opens it
    #: to check that the model fits the data
    opens_quickly: bool = False

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """(x (C, R, R) float32, label)."""
