"""The part every patch-based flow model shares: patchify + position, (t, y) conditioning, final
layer and unpatchify. Subclasses implement :meth:`PatchFlowModel.body`."""

from __future__ import annotations

import torch
from torch import nn

from dimsum_core.interfaces.model import FlowModel
from dimsum_core.nn.embeddings import LabelEmbedder, PatchEmbed, TimestepEmbedder, sincos_pos_embed_2d
from dimsum_core.nn.layers import FinalLayer, unpatchify


class PatchFlowModel(FlowModel):
    def __init__(self, *, input_size: int, in_channels: int, patch_size: int, hidden_size: int,
                 num_classes: int, null_class: bool | None, learnable_pos_embed: bool):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}; use a patch "
                             f"size that divides it")
        self.input_size, self.in_channels, self.patch_size = input_size, in_channels, patch_size
        self.hidden_size = hidden_size
        self.num_classes = num_classes
        self.grid = input_size // patch_size
        self.x_embedder = PatchEmbed(in_channels, hidden_size, patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, hidden_size),
                                      requires_grad=learnable_pos_embed)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size,
                                        num_classes > 1 if null_class is None else null_class)
        self.final_layer = FinalLayer(hidden_size, patch_size, in_channels)

    @property
    def has_null_class(self) -> bool:
        return self.y_embedder.null_class

    def init_embeddings(self) -> None:
        """DiT init: sin-cos position table, Xavier patch embedding, N(0, 0.02) label and t-MLP
        weights, zeroed final adaLN and output layer (so the model starts by predicting zero)."""
        table = sincos_pos_embed_2d(self.hidden_size, self.grid)
        self.pos_embed.data.copy_(torch.from_numpy(table).float().unsqueeze(0))
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for layer in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def zero_block_modulation(self) -> None:
        """adaLN-Zero: zero the last adaLN Linear of every block in ``self.blocks``."""
        for blk in self.blocks:
            nn.init.zeros_(blk.adaLN_modulation[-1].weight)
            nn.init.zeros_(blk.adaLN_modulation[-1].bias)

    def body(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """(N, T, D) tokens and (N, D) conditioning -> (N, T, D) for the final layer.
        By default ``self.blocks`` (conditioned blocks) one after the other."""
        for blk in self.blocks:
            x = blk(x, c)
        return x

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        if t.ndim == 0:
            t = t.expand(n)
        h = self.x_embedder(x) + self.pos_embed  # (N, T, D), T = grid²
        c = self.t_embedder(t) + self.y_embedder(y, n, x.device)  # (N, D)
        h = self.body(h, c)
        return unpatchify(self.final_layer(h, c), self.patch_size, self.in_channels)  # (N, C, H, W)
