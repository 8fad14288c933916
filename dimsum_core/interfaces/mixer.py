"""Sequence mixers: causal token mixers applied along the (already permuted) sequence."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class SequenceMixer(nn.Module, ABC):
    """Constructed as ``Mixer(d_model, cond_dim, **recipe_kwargs)``; ``cond_dim`` is the width of the
    conditioning vector c (timestep + label embedding), which a mixer may use or ignore."""

    @abstractmethod
    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, L, d_model), c (N, cond_dim) or None -> (N, L, d_model), causal along L."""

    def forward_pair(self, x: torch.Tensor, other: SequenceMixer, x2: torch.Tensor,
                     c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(self(x, c), other(x2, c))``: two independent sequences through two mixers (a DiM block's two
        branches, when they run in turn). A mixer may run the two together where that is faster; the results
        must be the same."""
        return self(x, c), other(x2, c)
