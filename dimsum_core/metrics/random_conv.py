"""``random-conv``: a fixed, seed-initialised small conv net as a CPU stand-in feature extractor.

For tests, smoke runs and quick relative comparisons on a laptop. Its FID/KID values have no relation
to Inception-based numbers and must never be reported as FID.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dimsum_core.interfaces.feature import FeatureExtractor


class RandomConvFeatures(FeatureExtractor):
    """Seeded random conv net (CPU stand-in for Inception; not comparable to FID)."""

    def __init__(self, *, dim: int = 64, size: int = 32, seed: int = 0, num_logits: int = 10):
        super().__init__()
        self.dim, self.size = dim, size
        widths = [3, 16, 32, dim]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(widths, widths[1:], strict=False))
        self.head = nn.Linear(dim, num_logits)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # He-normal from the seed alone: the same weights on every machine
            for layer in [*self.convs, self.head]:
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                layer.bias.copy_(0.1 * torch.randn(layer.bias.shape, generator=g))
        self.requires_grad_(False).eval()

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.head.weight.dtype) / 127.5 - 1  # (N, 3, H, W) in [-1, 1]
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        for conv in self.convs:
            x = F.relu(conv(x))
        return x.mean(dim=(2, 3))  # (N, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._features(images)

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self._features(images)
        return features, self.head(features)
