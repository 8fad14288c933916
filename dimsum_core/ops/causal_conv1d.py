"""Causal depthwise 1-D convolution over channels-last sequences (the Mamba short convolution)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def causal_conv1d(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``nn.Conv1d(C, C, K, groups=C, padding=K-1)`` cropped to the first L outputs, on (N, L, C).

    x: (N, L, C); weight: (C, 1, K), nn.Conv1d's layout; bias: (C,) or None. Returns (N, L, C):
    ``out_t = bias + sum_k weight[:, 0, k] * x_{t-K+1+k}`` with zeros before t = 0. Written as K
    shifted multiply-adds so the sequence stays channels-last (no transposes around the conv);
    the weights take x's dtype, as under autocast.
    """
    length, k = x.shape[1], weight.shape[-1]
    w = weight.to(x.dtype)[:, 0, :]  # (C, K)
    padded = F.pad(x, (0, 0, k - 1, 0))  # (N, K-1+L, C)
    out = padded[:, :length] * w[:, 0]
    for i in range(1, k):
        out = out.addcmul(padded[:, i : i + length], w[:, i])
    return out if bias is None else out + bias.to(x.dtype)
