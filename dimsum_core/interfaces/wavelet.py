"""Wavelet transforms over image-shaped tensors.

A transform of ``levels`` levels is a *wavelet packet* decomposition: every subband is split again
at each level, giving ``4**levels`` subbands of size (H / 2**levels, W / 2**levels), as the official
DiMSUM code does. Coefficients are stacked band-major on the channel axis:

    coeffs[:, band * C + ch]   with   band = sum_l  b_l * 4**(levels - 1 - l)

where ``b_l`` in [LL, LH, HL, HH] = [0, 1, 2, 3] is the band taken at level ``l`` (level 0 first).
LH is the vertical high-pass (top rows minus bottom rows), HL the horizontal one (left minus right).
Transforms run in float32 even under autocast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class WaveletTransform(nn.Module, ABC):
    levels: int

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C * 4**levels, H / 2**levels, W / 2**levels)."""

    @abstractmethod
    def inverse(self, coeffs: torch.Tensor) -> torch.Tensor:
        """The exact inverse of :meth:`forward`."""
