"""DiT/SiT-style attention-only baseline (flow matching, velocity output, learn_sigma off)."""

from __future__ import annotations

from torch import nn

from dimsum_core.config.spec import NonNegativeInt, Positive, PositiveInt
from dimsum_core.nn.backbone import PatchFlowModel
from dimsum_plugins.blocks.dit import DiTBlock


class DiT(PatchFlowModel):
    """DiT: a stack of adaLN-Zero transformer blocks (frozen sin-cos positions, plain GELU MLP)."""

    def __init__(self, *, input_size: PositiveInt = 32, in_channels: PositiveInt = 4, patch_size: PositiveInt = 2,
                 hidden_size: PositiveInt = 1152, depth: PositiveInt = 28, num_heads: PositiveInt = 16,
                 mlp_ratio: Positive = 4.0, gated_mlp: bool = False, num_classes: NonNegativeInt = 1000,
                 null_class: bool | None = None,
                 learnable_pos_embed: bool = False):
        super().__init__(input_size=input_size, in_channels=in_channels, patch_size=patch_size,
                         hidden_size=hidden_size, num_classes=num_classes, null_class=null_class,
                         learnable_pos_embed=learnable_pos_embed)
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, hidden_size, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                             gated_mlp=gated_mlp) for _ in range(depth))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT: Xavier on every Linear, zero biases, then adaLN-Zero (block and final adaLN zeroed)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.init_embeddings()
        self.zero_block_modulation()
