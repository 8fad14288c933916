"""The DiM block: a spatial Mamba branch and a wavelet Mamba branch, fused, then a gated MLP.

Official semantics (spec §1.4, §2.1), Vim-style residual stream kept in float32::

    res = x if first block else res + DropPath(x)
    h   = RMSNorm(res)
    y1  = SpatialBranch(h[..., :D/2], c);  y2 = WaveletBranch(h[..., D/2:], c)
    h   = h + Fusion(y1, y2)
    h   = h + gate · MLP(modulate(RMSNorm2(h), shift, scale))
    return h, res          # built on the normalised h, not on res (official)
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from dimsum_core.config.build import build
from dimsum_core.config.spec import FusionSpec, MixerSpec, ScanSpec, WaveletSpec
from dimsum_core.interfaces.block import ResidualBlock
from dimsum_core.interfaces.scan import ScanIndex
from dimsum_core.nn.layers import DropPath, RMSNorm, ada_ln, mlp, modulate
from dimsum_core.nn.wavelet_tokens import Layout, tokens_to_wavelet, wavelet_to_tokens


class SpatialBranch(nn.Module):
    """``y = x + gate · unscan(Mixer(scan(modulate(x))))`` over the token grid in this layer's order."""

    def __init__(self, width: int, cond_dim: int, layer: int, grid: int, scan: Any, mixer: Any):
        super().__init__()
        self.adaLN_modulation = ada_ln(cond_dim, 3 * width)
        self.mixer = build("mixer", mixer, width, cond_dim)
        self.scan = ScanIndex(build("scan", scan), grid, grid, layer)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.adaLN_modulation(c).chunk(3, dim=1)
        m = self.scan.unscan(self.mixer(self.scan.scan(modulate(x, shift, scale)), c))
        return x + gate.unsqueeze(1) * m


class WaveletBranch(nn.Module):
    """The same residual Mamba update, in the wavelet domain (spec §2.3):
    tokens -> wavelet tokens -> window scan -> ``w + gate · Mixer(modulate(w))`` -> unscan -> inverse."""

    def __init__(self, width: int, cond_dim: int, layer: int, grid: int, scan: Any, mixer: Any,
                 wavelet: Any, layout: Layout, normalize: bool):
        super().__init__()
        self.adaLN_modulation = ada_ln(cond_dim, 3 * width)
        self.mixer = build("mixer", mixer, width, cond_dim)
        self.transform = build("wavelet", wavelet)
        side = 2**self.transform.levels
        if grid % side:
            raise ValueError(f"a {self.transform.levels}-level wavelet needs a token grid divisible by {side}, "
                             f"got {grid} (input_size / patch_size); make the grid a multiple of {side}")
        if layout == "interleaved" and width % (side * side):
            raise ValueError(f"the interleaved wavelet layout needs the branch width ({width}) divisible by "
                             f"{side * side}")
        self.grid, self.layout = grid, layout
        # official: coefficients divided by 2**levels, so LL is the mean of each block
        self.coeff_scale = 2.0**-self.transform.levels if normalize else 1.0
        self.scan = ScanIndex(build("scan", scan), grid, grid, layer)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.adaLN_modulation(c).chunk(3, dim=1)
        w = tokens_to_wavelet(x, self.grid, self.transform, self.layout, self.coeff_scale).to(x.dtype)
        m = self.scan.unscan(self.mixer(self.scan.scan(modulate(w, shift, scale)), c))
        w = w + gate.unsqueeze(1) * m
        return wavelet_to_tokens(w, self.grid, self.transform, self.layout, self.coeff_scale).to(x.dtype)


class DiMBlock(ResidualBlock):
    """DiMSUM's block: spatial + wavelet Mamba branches, fusion, gated MLP (official 'combined' block).

    ``branches="spatial"`` drops the wavelet branch and the fusion: one Mamba branch over the full width
    (the paper's 'Conditional Mamba only' ablation).
    """

    def __init__(self, dim: int, cond_dim: int, layer: int, grid: int, drop_path: float, /, *,
                 spatial_scan: ScanSpec = "sweep4", wavelet_scan: ScanSpec = "window",
                 wavelet: WaveletSpec = "haar", wavelet_layout: Layout = "interleaved",
                 wavelet_normalize: bool = True, fusion: FusionSpec = "cross-attention",
                 mixer: MixerSpec = "mamba", mlp_ratio: float = 4.0, gated_mlp: bool = True,
                 branches: Literal["both", "spatial"] = "both"):
        super().__init__()
        self.branches = branches
        self.norm = RMSNorm(dim)
        self.drop_path = DropPath(drop_path)
        if branches == "both":
            half = dim // 2
            self.spatial_mamba = SpatialBranch(half, cond_dim, layer, grid, spatial_scan, mixer)
            self.freq_mamba = WaveletBranch(half, cond_dim, layer, grid, wavelet_scan, mixer, wavelet,
                                            wavelet_layout, wavelet_normalize)
            self.proj = build("fusion", fusion, dim)
        else:
            self.spatial_mamba = SpatialBranch(dim, cond_dim, layer, grid, spatial_scan, mixer)
        self.norm_2 = RMSNorm(dim)
        self.adaLN_modulation = ada_ln(cond_dim, 3 * dim)
        self.mlp = mlp(dim, mlp_ratio, gated_mlp)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None,
                c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        residual = hidden.float() if residual is None else residual + self.drop_path(hidden).float()
        h = self.norm(residual).to(hidden.dtype)  # (N, T, D)
        if self.branches == "both":
            x1, x2 = h.chunk(2, dim=-1)
            h = h + self.proj(self.spatial_mamba(x1, c), self.freq_mamba(x2, c))
        else:
            h = self.spatial_mamba(h, c)
        shift, scale, gate = self.adaLN_modulation(c).chunk(3, dim=1)
        h = h + gate.unsqueeze(1) * self.mlp(modulate(self.norm_2(h), shift, scale))
        return h, residual
