"""Built-in fusions of the spatial (y1) and wavelet (y2) branch outputs, each (N, T, dim/2) -> (N, T, dim)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dimsum_core.config.spec import PositiveInt
from dimsum_core.interfaces.fusion import Fusion


class CrossAttentionFusion(Fusion):
    """Cross-attention fusion with swapped queries (official default, 'CAFL swap q').

    ``o12 = attn(q1, k2, v2)``: spatial queries read wavelet keys/values; ``o21 = attn(q2, k1, v1)``.
    With ``swap="k"``: ``o12 = attn(q2, k1, v2)`` and ``o21 = attn(q1, k2, v1)``.
    Output ``proj(concat[o12, o21])``; no residual or gate inside (the block adds it).
    """

    def __init__(self, dim: int, /, *, num_heads: PositiveInt = 8, swap: str = "q", qkv_bias: bool = True):
        super().__init__()
        half = dim // 2
        if half % num_heads:
            raise ValueError(f"fusion: branch width {half} is not divisible by num_heads={num_heads}; use a "
                             f"num_heads that divides it")
        if swap not in ("q", "k"):
            raise ValueError(f"fusion: swap must be 'q' or 'k', got {swap!r}")
        self.num_heads, self.swap = num_heads, swap
        self.qkv1 = nn.Linear(half, 3 * half, bias=qkv_bias)
        self.qkv2 = nn.Linear(half, 3 * half, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, t, c3 = qkv.shape
        q, k, v = qkv.view(n, t, 3, self.num_heads, c3 // (3 * self.num_heads)).permute(2, 0, 3, 1, 4)
        return q, k, v  # each (N, heads, T, head_dim)

    def forward(self, spatial: torch.Tensor, wavelet: torch.Tensor) -> torch.Tensor:
        n, t, half = spatial.shape
        q1, k1, v1 = self._heads(self.qkv1(spatial))
        q2, k2, v2 = self._heads(self.qkv2(wavelet))
        if self.swap == "q":
            o12 = F.scaled_dot_product_attention(q1, k2, v2)
            o21 = F.scaled_dot_product_attention(q2, k1, v1)
        else:
            o12 = F.scaled_dot_product_attention(q2, k1, v2)
            o21 = F.scaled_dot_product_attention(q1, k2, v1)
        return self.proj(torch.cat([self._merge(o12), self._merge(o21)], dim=-1))

    @staticmethod
    def _merge(o: torch.Tensor) -> torch.Tensor:
        n, heads, t, d = o.shape
        return o.transpose(1, 2).reshape(n, t, heads * d)  # (N, T, heads·head_dim)

    def macs(self, spatial: torch.Tensor) -> int:
        """Attention-core multiply-adds (two cross-attentions, QKᵀ and AV each)."""
        n, t, half = spatial.shape
        return 4 * n * t * t * half


class ConcatFusion(Fusion):
    """Concatenate the branches and mix them with one Linear (the paper's 'Linear' ablation)."""

    def __init__(self, dim: int, /):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, spatial: torch.Tensor, wavelet: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([spatial, wavelet], dim=-1))


class SumFusion(Fusion):
    """Add the branches and project to the block width (the cheapest fusion)."""

    def __init__(self, dim: int, /):
        super().__init__()
        self.proj = nn.Linear(dim // 2, dim)

    def forward(self, spatial: torch.Tensor, wavelet: torch.Tensor) -> torch.Tensor:
        return self.proj(spatial + wavelet)
