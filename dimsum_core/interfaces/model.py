"""The model contract every preset returns.

Time convention (all of dimsum): ``t`` in [0, 1] with **t = 0 noise and t = 1 data**; the model
returns the velocity ``dx/dt`` of the probability-flow ODE.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn


class FlowModel(nn.Module, ABC):
    #: channels of the input (4 for SD-VAE latents, 3 for pixels)
    in_channels: int
    #: spatial size of the input (latent side for latent models)
    input_size: int
    #: number of real classes; the null (guidance) class is index ``num_classes``. 0 = unconditional
    num_classes: int

    @abstractmethod
    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, C, H, W), t (N,) in [0, 1], y (N,) int64 or None -> velocity (N, C, H, W)."""

    def config(self) -> dict[str, Any]:
        """The registry name and keyword arguments that rebuild this model (saved with checkpoints)."""
        return dict(getattr(self, "_dimsum_config", {}))
