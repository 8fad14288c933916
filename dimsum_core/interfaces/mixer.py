"""Sequence mixers: causal token mixers applied along the (already permuted) sequence."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class SequenceMixer(nn.Module, ABC):
    """Constructed as ``Mixer(d_model, **kwargs)``."""

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, L, d_model) -> (N, L, d_model), causal along L."""
