"""Classifier-free guidance: one batched forward of the conditional and the null-class half."""

from __future__ import annotations

import torch

from dimsum_core.errors import DimsumError
from dimsum_core.interfaces.model import FlowModel


class GuidedVelocity:
    """The sampler-facing velocity ``v(x, t)`` of a model, with classifier-free guidance.

    With labels and ``scale != 1`` the batch doubles: the first half carries ``y``, the second the null
    class ``model.num_classes``, and ``v = v_u + scale * (v_c - v_u)``. That is applied to ALL channels
    (the official DiMSUM default) or, with ``guide_channels=k``, to the first k only as in DiT's
    ``forward_with_cfg`` (the other channels keep the conditional output). ``scale == 1`` or
    ``y is None`` (unconditional model) is one plain forward.

    ``forwards`` counts model calls; a guided pair is one call, as NFE counts it.
    """

    def __init__(self, model: FlowModel, y: torch.Tensor | None, scale: float = 1.0,
                 guide_channels: int | None = None):
        if y is None and scale != 1.0:
            raise DimsumError(f"guidance scale {scale} needs class labels, but the model is unconditional "
                              f"(num_classes=0); use a guidance scale of 1")
        if guide_channels is not None and guide_channels < 1:
            raise DimsumError(f"guide_channels must be a positive channel count or null, got {guide_channels}")
        self.model = model
        self.y = y
        self.scale = float(scale)
        self.guide_channels = guide_channels
        self.forwards = 0

    @property
    def guided(self) -> bool:
        return self.y is not None and self.scale != 1.0

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        n = x.shape[0]
        t = t.to(device=x.device, dtype=x.dtype).reshape(1)
        if not self.guided:
            return self.model(x, t.repeat(n), self.y)
        null = torch.full_like(self.y, self.model.num_classes)
        out = self.model(torch.cat([x, x]), t.repeat(2 * n), torch.cat([self.y, null]))
        v_cond, v_uncond = out[:n], out[n:]  # (N, C, H, W) each
        k = v_cond.shape[1] if self.guide_channels is None else self.guide_channels
        guided = v_uncond[:, :k] + self.scale * (v_cond[:, :k] - v_uncond[:, :k])
        return torch.cat([guided, v_cond[:, k:]], dim=1)
