"""Fusion of the two branch outputs of a DiM block into one hidden state."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class Fusion(nn.Module, ABC):
    """Constructed as ``Fusion(dim, **kwargs)`` where each branch has width ``dim // 2``."""

    @abstractmethod
    def forward(self, spatial: torch.Tensor, wavelet: torch.Tensor) -> torch.Tensor:
        """(N, T, dim/2), (N, T, dim/2) -> (N, T, dim)."""
