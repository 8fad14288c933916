"""The DiT block (adaLN, self-attention, MLP); DiMSUM's globally shared transformer is one of these."""

from __future__ import annotations

import torch
from torch import nn

from dimsum_core.config.spec import Positive, PositiveInt
from dimsum_core.interfaces.block import ConditionedBlock
from dimsum_core.nn.layers import Attention, ada_ln, mlp, modulate


class DiTBlock(ConditionedBlock):
    """``x += g1·Attn(modulate(LN(x)))``; ``x += g2·MLP(modulate(LN(x)))``; adaLN gives 6 chunks."""

    def __init__(self, dim: int, cond_dim: int, /, *, num_heads: PositiveInt = 16, mlp_ratio: Positive = 4.0,
                 gated_mlp: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(dim, mlp_ratio, gated_mlp)
        self.adaLN_modulation = ada_ln(cond_dim, 6 * dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        s1, sc1, g1, s2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(modulate(self.norm1(x), s1, sc1))
        return x + g2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), s2, sc2))
