"""A plain Mamba block for Mamba-only (ZigMa-like) baselines: the DiT block with attention replaced
by a Mamba mixer over this layer's scan order."""

from __future__ import annotations

import torch

from dimsum_core.config.build import build
from dimsum_core.config.spec import MixerSpec, ScanSpec
from dimsum_core.interfaces.block import ConditionedBlock
from dimsum_core.interfaces.scan import ScanIndex
from dimsum_core.nn.layers import RMSNorm, ada_ln, mlp, modulate


class MambaBlock(ConditionedBlock):
    """``x += g1·unscan(Mamba(scan(modulate(RMSNorm(x)))))``, then an optional adaLN MLP."""

    def __init__(self, dim: int, cond_dim: int, layer: int, grid: int, /, *, scan: ScanSpec = "zigzag8",
                 mixer: MixerSpec = "mamba", use_mlp: bool = True, mlp_ratio: float = 4.0,
                 gated_mlp: bool = True):
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.mixer = build("mixer", mixer, dim, cond_dim)
        self.scan = ScanIndex(build("scan", scan), grid, grid, layer)
        self.use_mlp = use_mlp
        chunks = 6 if use_mlp else 3
        if use_mlp:
            self.norm2 = RMSNorm(dim)
            self.mlp = mlp(dim, mlp_ratio, gated_mlp)
        self.adaLN_modulation = ada_ln(cond_dim, chunks * dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        mod = self.adaLN_modulation(c).chunk(6 if self.use_mlp else 3, dim=1)
        h = modulate(self.norm1(x), mod[0], mod[1])
        x = x + mod[2].unsqueeze(1) * self.scan.unscan(self.mixer(self.scan.scan(h), c))
        if self.use_mlp:
            x = x + mod[5].unsqueeze(1) * self.mlp(modulate(self.norm2(x), mod[3], mod[4]))
        return x
