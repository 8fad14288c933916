"""Network blocks.

Two shapes of block exist:

* :class:`ResidualBlock` (Vim style, the DiM block and the plain Mamba block) carries a separate
  float32 residual stream: ``(hidden, residual, c) -> (hidden, residual)``.
* :class:`ConditionedBlock` (the DiT block, used as DiMSUM's shared transformer): ``(x, c) -> x``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class ResidualBlock(nn.Module, ABC):
    @abstractmethod
    def forward(
        self, hidden: torch.Tensor, residual: torch.Tensor | None, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hidden (N, T, D), residual (N, T, D) float32 or None for the first block, c (N, D)."""


class ConditionedBlock(nn.Module, ABC):
    @abstractmethod
    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (N, T, D), c (N, D) -> (N, T, D)."""
