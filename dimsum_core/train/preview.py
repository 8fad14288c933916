"""Sample grids during training: EMA weights, fixed noise and labels, a registered sampler, one PNG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from dimsum_core.config.nodes import build
from dimsum_core.interfaces.model import FlowModel
from dimsum_core.sampling.generate import to_uint8
from dimsum_core.sampling.guidance import GuidedVelocity
from dimsum_core.sampling.outputs import grid_columns, grid_picture


class SampleGrid:
    """Draws the same ``n`` noises and labels at every call, so grids over training compare."""

    def __init__(self, sampler_node: object, n: int, cfg_scale: float, seed: int, shape: tuple[int, ...],
                 num_classes: int, decode: Callable[[torch.Tensor], torch.Tensor] | None):
        self.sampler = build("sampler", sampler_node)
        g = torch.Generator().manual_seed(seed)
        self.noise = torch.randn(n, *shape, generator=g)
        # one class per column position, cycling through the classes
        self.labels = torch.arange(n) % num_classes if num_classes > 0 else None
        self.cfg_scale = cfg_scale
        self.decode = decode

    @torch.no_grad()
    def __call__(self, model: FlowModel, path: Path) -> Path:
        device = next(model.parameters()).device
        y = self.labels.to(device) if self.labels is not None else None
        # guidance needs labels and a null class; grids of other models are drawn unguided
        scale = self.cfg_scale if self.labels is not None and getattr(model, "has_null_class", False) else 1.0
        velocity = GuidedVelocity(model, y, scale)
        x = self.sampler.sample(velocity, self.noise.to(device)).x
        if self.decode is not None:
            x = self.decode(x)
        path.parent.mkdir(parents=True, exist_ok=True)
        classes = model.num_classes if 1 < model.num_classes <= 16 else 0
        grid_picture(to_uint8(x), grid_columns(len(x), classes)).save(path)
        return path
