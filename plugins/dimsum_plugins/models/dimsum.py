"""The DiMSUM network (official `DiM` with `--block-type combined`, spec §1).

    x (N, C, H, W) -> PatchEmbed + learnable pos      (N, T, D)
    c = TimestepEmbed(t) + LabelEmbed(y)              (N, D)
    for i in range(depth):  x, res = DiMBlock_i(x, res, c)
                            after every K-th block: x = SharedDiTBlock(x, c)   (one set of weights)
    FinalLayer(x, c) -> unpatchify                    (N, C, H, W) velocity

As in the official code, the final layer reads the last block output and the float32 residual
stream is discarded; the shared transformer acts on the block output.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from dimsum_core.config.build import build
from dimsum_core.config.spec import (
    BlockSpec,
    Fraction,
    FusionSpec,
    MixerSpec,
    NonNegativeInt,
    Positive,
    PositiveInt,
    ScanSpec,
    WaveletSpec,
)
from dimsum_core.nn.backbone import PatchFlowModel
from dimsum_core.nn.wavelet_tokens import Layout
from dimsum_plugins.blocks.dit import DiTBlock


class DiMSUM(PatchFlowModel):
    """DiMSUM: spatial + wavelet Mamba branches fused by cross-attention, a shared transformer every K blocks."""

    def __init__(self, *, input_size: PositiveInt = 32, in_channels: PositiveInt = 4, patch_size: PositiveInt = 2,
                 hidden_size: PositiveInt = 1024, depth: PositiveInt = 16, num_classes: NonNegativeInt = 1,
                 null_class: bool | None = None,
                 block: BlockSpec = "dim", spatial_scan: ScanSpec = "sweep4",
                 wavelet_scan: ScanSpec = "window", wavelet: WaveletSpec = "haar",
                 wavelet_layout: Layout = "interleaved", fusion: FusionSpec = "cross-attention",
                 mixer: MixerSpec = "mamba", branches: Literal["both", "spatial"] = "both",
                 attn_every: PositiveInt = 4, transformer: Literal["shared", "independent", "none"] = "shared",
                 attn_heads: PositiveInt = 16, mlp_ratio: Positive = 4.0, gated_mlp: bool = True,
                 drop_path: Fraction = 0.1,
                 learnable_pos_embed: bool = True):
        super().__init__(input_size=input_size, in_channels=in_channels, patch_size=patch_size,
                         hidden_size=hidden_size, num_classes=num_classes, null_class=null_class,
                         learnable_pos_embed=learnable_pos_embed)
        if attn_every < 1:
            raise ValueError("attn_every must be >= 1")
        self.attn_every, self.transformer = attn_every, transformer
        # independent transformers replace Mamba depth, as the official ablation does
        n_blocks = depth - depth // attn_every if transformer == "independent" else depth
        # official: block i uses ([0] + linspace(0, drop_path, depth))[i]
        rates = [0.0] + [drop_path * i / max(n_blocks - 1, 1) for i in range(n_blocks)]
        self.blocks = nn.ModuleList(
            build("block", block, hidden_size, hidden_size, i, self.grid, rates[i],
                  spatial_scan=spatial_scan, wavelet_scan=wavelet_scan, wavelet=wavelet,
                  wavelet_layout=wavelet_layout, fusion=fusion, mixer=mixer, branches=branches,
                  mlp_ratio=mlp_ratio, gated_mlp=gated_mlp)
            for i in range(n_blocks))
        attn_kwargs = dict(num_heads=attn_heads, mlp_ratio=mlp_ratio, gated_mlp=gated_mlp)
        if transformer == "shared":
            self.attn_block = DiTBlock(hidden_size, hidden_size, **attn_kwargs)
        elif transformer == "independent":
            self.attn_blocks = nn.ModuleList(DiTBlock(hidden_size, hidden_size, **attn_kwargs)
                                             for _ in range(n_blocks // attn_every))
        self.initialize_weights(depth)

    def initialize_weights(self, depth: int) -> None:
        """Official order (spec §1.7): DiT-style init, then Vim/GPT-2 `_init_weights`."""
        self.init_embeddings()
        for blk in self.blocks:
            mod = getattr(blk, "adaLN_modulation", None)
            if mod is not None:  # only the top-level MLP adaLN of each DiM block is zeroed
                nn.init.zeros_(mod[-1].weight)
                nn.init.zeros_(mod[-1].bias)
        # Vim/GPT-2: zero every Linear bias (but dt_proj's), re-draw embeddings, and rescale the
        # residual output projections (a parameter named exactly `out_proj.weight`/`fc2.weight`)
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.bias is not None \
                    and not getattr(module.bias, "_no_reinit", False):
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            for name in ("out_proj", "fc2"):
                child = getattr(module, name, None)
                if isinstance(child, nn.Linear):
                    nn.init.kaiming_uniform_(child.weight, a=math.sqrt(5))
                    with torch.no_grad():
                        child.weight /= math.sqrt(depth)

    def body(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        residual = None
        for i, blk in enumerate(self.blocks):
            x, residual = blk(x, residual, c)
            if (i + 1) % self.attn_every == 0:
                if self.transformer == "shared":
                    x = self.attn_block(x, c)
                elif self.transformer == "independent":
                    x = self.attn_blocks[(i + 1) // self.attn_every - 1](x, c)
        return x
