"""Feature extractors used by sample metrics (FID, KID, precision/recall)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class FeatureExtractor(nn.Module, ABC):
    #: length of one feature vector
    dim: int

    @abstractmethod
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, 3, H, W) -> float features (N, dim)."""

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features and, for extractors with a classifier head, its logits (N, classes) for the
        Inception Score; None where there is no head. One forward pass for both."""
        return self(images), None
