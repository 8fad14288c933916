"""Training objectives: an interpolation path between noise and data, a time distribution and a loss.

Convention: ``x_t = alpha(t) * x1 + sigma(t) * x0`` with x0 ~ N(0, I) noise and x1 data, so
t = 0 is noise and t = 1 is data; the regression target is the path velocity
``u_t = alpha'(t) * x1 + sigma'(t) * x0``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Objective(ABC):
    @abstractmethod
    def sample_t(self, n: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        """Training times, shape (n,)."""

    @abstractmethod
    def path(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, u_t) for noise x0, data x1 and times t (N,)."""

    def loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample loss, shape (N,): mean squared error over every non-batch axis."""
        return (prediction.float() - target.float()).pow(2).flatten(1).mean(1)
