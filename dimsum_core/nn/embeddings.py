"""Patch, position, timestep and label embeddings (DiT conventions)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class PatchEmbed(nn.Module):
    """(N, C, H, W) -> (N, T, D) with a stride-p convolution; T = (H/p)·(W/p), raster order."""

    def __init__(self, in_channels: int, hidden_size: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (N, T, D)


def sincos_pos_embed_2d(dim: int, grid: int) -> np.ndarray:
    """The DiT/MAE 2-D sin-cos table, (grid*grid, dim); first half encodes the column (w), second the row."""
    gh, gw = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")

    def axis(d: int, pos: np.ndarray) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([axis(dim // 2, gw), axis(dim // 2, gh)], axis=1)


class TimestepEmbedder(nn.Module):
    """t in [0, 1] (raw, no ×1000 as in SiT/DiMSUM) -> (N, D) through a 256-d sinusoid and an MLP."""

    def __init__(self, hidden_size: int, frequency_size: int = 256):
        super().__init__()
        self.frequency_size = frequency_size
        self.mlp = nn.Sequential(nn.Linear(frequency_size, hidden_size), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size))

    @staticmethod
    def sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        """(N,) -> (N, dim): cos half first, then sin; at least float32 (float64 stays float64)."""
        dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=dtype, device=t.device) / half)
        args = t.to(dtype)[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = self.sinusoid(t, self.frequency_size)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class labels -> (N, D). With ``null_class`` the table has one extra row, index ``num_classes``,
    used for classifier-free guidance; ``y=None`` selects that row (or row 0 without it)."""

    def __init__(self, num_classes: int, hidden_size: int, null_class: bool):
        super().__init__()
        self.num_classes = num_classes
        self.null_class = null_class
        self.embedding_table = nn.Embedding(num_classes + int(null_class), hidden_size)

    def forward(self, y: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        if y is None:
            y = torch.full((batch,), self.num_classes if self.null_class else 0, dtype=torch.long, device=device)
        return self.embedding_table(y)
