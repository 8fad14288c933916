"""Mamba-only baseline (ZigMa-like): adaLN Mamba blocks over a chosen scan order, no attention."""

from __future__ import annotations

from torch import nn

from dimsum_core.config.spec import MixerSpec, NonNegativeInt, Positive, PositiveInt, ScanSpec
from dimsum_core.nn.backbone import PatchFlowModel
from dimsum_plugins.blocks.mamba import MambaBlock


class MambaOnly(PatchFlowModel):
    """A stack of adaLN-Zero Mamba blocks; layer i scans in the order ``scan`` gives for layer i."""

    def __init__(self, *, input_size: PositiveInt = 32, in_channels: PositiveInt = 4, patch_size: PositiveInt = 2,
                 hidden_size: PositiveInt = 768, depth: PositiveInt = 24, scan: ScanSpec = "zigzag8",
                 mixer: MixerSpec = "mamba", use_mlp: bool = True, mlp_ratio: Positive = 4.0,
                 gated_mlp: bool = True, num_classes: NonNegativeInt = 1, null_class: bool | None = None,
                 learnable_pos_embed: bool = True):
        super().__init__(input_size=input_size, in_channels=in_channels, patch_size=patch_size,
                         hidden_size=hidden_size, num_classes=num_classes, null_class=null_class,
                         learnable_pos_embed=learnable_pos_embed)
        self.blocks = nn.ModuleList(
            MambaBlock(hidden_size, hidden_size, i, self.grid, scan=scan, mixer=mixer, use_mlp=use_mlp,
                       mlp_ratio=mlp_ratio, gated_mlp=gated_mlp) for i in range(depth))
        self.init_embeddings()
        self.zero_block_modulation()  # every block starts as the identity
