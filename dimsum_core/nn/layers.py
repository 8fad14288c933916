"""Norms, adaLN modulation, MLPs, attention and drop-path."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x (N, T, C) * (1 + scale (N, C)) + shift (N, C); one fused multiply-add over the tokens."""
    return torch.addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1))


def gated_add(x: torch.Tensor, gate: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """adaLN-Zero's gated residual: x (N, T, C) + gate (N, C) * y (N, T, C), one fused multiply-add."""
    return torch.addcmul(x, gate.unsqueeze(1), y)


def ada_ln(cond_dim: int, out_dim: int) -> nn.Sequential:
    """SiLU -> Linear(cond_dim, out_dim); index 1 is the Linear (official key `adaLN_modulation.1`)."""
    return nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, out_dim, bias=True))


class RMSNorm(nn.Module):
    """RMSNorm with a learnable weight (eps 1e-5 as in the official fused Triton kernel).
    Computed in float32, returned in the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        out = F.rms_norm(x.to(dtype), (x.shape[-1],), self.weight.to(dtype), self.eps)
        return out.to(x.dtype)


class GatedMLP(nn.Module):
    """w12: D -> 2·hidden, GELU(tanh)(first half) ⊙ second half, w3: hidden -> D (official `mlp.py`)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Two products over the weight's halves rather than one product split in two: the split's backward
        # concatenates the halves' gradients into a fresh buffer (H200 A/B, compiled L/2 step: -3%).
        w, bias, h = self.w12.weight, self.w12.bias, self.w12.out_features // 2
        a = F.linear(x, w[:h], bias[:h])
        b = F.linear(x, w[h:], bias[h:])
        return self.w3(F.gelu(a, approximate="tanh") * b)


class Mlp(nn.Module):
    """fc1 -> GELU(tanh) -> fc2 (the DiT/timm MLP)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def mlp(dim: int, ratio: float, gated: bool) -> nn.Module:
    hidden = int(dim * ratio)
    return GatedMLP(dim, hidden) if gated else Mlp(dim, hidden)


class Attention(nn.Module):
    """Multi-head self-attention through SDPA (timm layout: `qkv`, `proj`)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads; use a head count "
                             f"that divides the width")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, T, head_dim)
        return self.proj(out.transpose(1, 2).reshape(n, t, d))

    def macs(self, x: torch.Tensor) -> int:
        """Multiply-adds of the attention core (QKᵀ and AV), which no Linear hook sees."""
        n, t, d = x.shape
        return 2 * n * t * t * d


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode, and where not ``active``).

    ``active`` (default: p > 0) says whether training draws masks. A model whose blocks should share one
    compiled graph makes every block active, since a Python branch on it is a recompile: a block at
    p = 0 then draws a mask of ones (the same output, one more random draw)."""

    def __init__(self, p: float, active: bool | None = None):
        super().__init__()
        self.active = p > 0.0 if active is None else active
        # the keep probability as a tensor, so one compiled block serves every depth (a Python float
        # would be a compile-time constant: one recompile per rate, beyond dynamo's cache limit)
        self.register_buffer("keep_prob", torch.tensor(1.0 - p), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.active and self.training):
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(self.keep_prob)
        return x * keep / self.keep_prob


class FinalLayer(nn.Module):
    """LayerNorm (no affine) -> adaLN modulate -> Linear(D, p²·C_out)."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = ada_ln(hidden_size, 2 * hidden_size)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


def unpatchify(x: torch.Tensor, patch_size: int, channels: int) -> torch.Tensor:
    """(N, T, p·p·C) -> (N, C, H, W) for a square token grid."""
    n, t, _ = x.shape
    g = int(round(t**0.5))
    x = x.reshape(n, g, g, patch_size, patch_size, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(n, channels, g * patch_size, g * patch_size)
