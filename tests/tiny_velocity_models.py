"""Tiny velocity models for sampler, guidance and CLI tests, registered as a test plugin.

``tiny-linear``: v = a * x + b + e[y], an exactly solvable field. ``tiny-gaussian``: the exact
marginal velocity of Gaussian data N(mean, std^2) on a path. ``tiny-conv``: a small trainable conv
net; :func:`train_tiny_conv` fits it for a few steps on two-class toy images.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path

import torch
from torch import nn

from dimsum_core.checkpoint import write_weights
from dimsum_core.flow.paths import PATHS
from dimsum_core.interfaces.model import FlowModel
from dimsum_core.models import create_model
from dimsum_core.plugin import hookimpl
from dimsum_core.plugin.manager import get_manager
from dimsum_core.registry import Provenance


class TinyLinear(FlowModel):
    """v = a * x + b + offset[y] (offset row ``num_classes`` is the null class); counts forwards."""

    def __init__(self, *, in_channels: int = 3, input_size: int = 4, num_classes: int = 0,
                 a: float = -0.7, b: float = 0.3):
        super().__init__()
        self.in_channels, self.input_size, self.num_classes = in_channels, input_size, num_classes
        self.a = nn.Parameter(torch.tensor(a))
        self.b = nn.Parameter(torch.tensor(b))
        rows = torch.arange(num_classes + 1, dtype=torch.float32)[:, None] * 0.1 + torch.linspace(0, 0.05, in_channels)
        self.offset = nn.Parameter(rows)  # (num_classes + 1, C)
        self.calls, self.batch_sizes = 0, []

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.calls += 1
        self.batch_sizes.append(x.shape[0])
        v = self.a * x + self.b
        if y is not None:
            v = v + self.offset[y][:, :, None, None]
        return v


class TinyGaussian(FlowModel):
    """Exact marginal velocity when the data are N(mean, std^2 I) on the given path."""

    def __init__(self, *, in_channels: int = 2, input_size: int = 1, mean: float = 1.5, std: float = 0.5,
                 path: str = "gvp"):
        super().__init__()
        self.in_channels, self.input_size, self.num_classes = in_channels, input_size, 0
        self.mean, self.std, self.path = mean, std, PATHS[path]()
        self.register_buffer("unused", torch.zeros(1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        t = t.to(x.dtype).contiguous().reshape(-1, *([1] * (x.ndim - 1)))  # stride-0 float64 trig is slow
        a, s = self.path.alpha(t), self.path.sigma(t)
        var = a**2 * self.std**2 + s**2
        centred = x - a * self.mean
        x1 = self.mean + a * self.std**2 / var * centred  # E[x1 | x_t]
        x0 = s / var * centred  # E[x0 | x_t]
        return self.path.d_alpha(t) * x1 + self.path.d_sigma(t) * x0


def gaussian_endpoint(x0: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Where the exact Gaussian flow takes noise x0 at t = 1 (the flow is affine per coordinate)."""
    return mean + std * x0


class TinyConv(FlowModel):
    """A small conv velocity net with time and class embeddings, for end-to-end sampling tests."""

    def __init__(self, *, in_channels: int = 3, input_size: int = 8, num_classes: int = 2, width: int = 32):
        super().__init__()
        self.in_channels, self.input_size, self.num_classes = in_channels, input_size, num_classes
        self.label = nn.Embedding(num_classes + 1, width)
        self.time = nn.Sequential(nn.Linear(16, width), nn.SiLU(), nn.Linear(width, width))
        self.inp = nn.Conv2d(in_channels, width, 3, padding=1)
        self.mid = nn.Conv2d(width, width, 3, padding=1)
        self.out = nn.Conv2d(width, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        freqs = torch.arange(8, device=x.device, dtype=x.dtype)
        angles = t.to(x.dtype)[:, None] * math.pi * 2.0 ** freqs[None] / 8
        c = self.time(torch.cat([angles.sin(), angles.cos()], dim=1))  # (N, width)
        if y is not None:
            c = c + self.label(y)
        h = torch.nn.functional.silu(self.inp(x) + c[:, :, None, None])
        h = torch.nn.functional.silu(self.mid(h) + c[:, :, None, None])
        return self.out(h)


def toy_images(n: int, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes in [-1, 1]: class 0 bright on top, class 1 bright at the bottom (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(2, (n,), generator=g)
    x = -torch.ones(n, 3, size, size)
    top = torch.arange(size)[None, :, None] < size // 2  # (1, H, 1)
    bright = torch.where(y[:, None, None, None] == 0, top[None], ~top[None])  # (N, 1, H, 1)
    x = torch.where(bright.expand_as(x), torch.full_like(x, 0.8), x)
    return (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1), y


def train_tiny_conv(steps: int = 150, seed: int = 0) -> TinyConv:
    """150 Adam steps of GVP velocity matching, with 10% label dropout for guidance (trained once per
    process; each call returns a fresh copy)."""
    model = create_model("tiny-conv")
    model.load_state_dict(_trained_tiny_conv_state(steps, seed))
    return model.eval()


@functools.cache
def _trained_tiny_conv_state(steps: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = create_model("tiny-conv")
    path = PATHS["gvp"]()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    data, labels = toy_images(256, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        idx = torch.randint(len(data), (32,), generator=g)
        x1, y = data[idx], labels[idx]
        y = torch.where(torch.rand(32, generator=g) < 0.1, torch.full_like(y, model.num_classes), y)
        x0 = torch.randn(x1.shape, generator=g)
        t = torch.rand(32, generator=g)
        xt, ut = path.interpolate(x0, x1, t)
        loss = ((model(xt, t, y) - ut) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def write_checkpoint(directory: Path, model: FlowModel) -> Path:
    write_weights(directory, model, ema=model)
    return directory


@hookimpl
def dimsum_add_models(registry):  # noqa: ANN001 - pluggy hook
    registry.add("tiny-linear", TinyLinear)
    registry.add("tiny-gaussian", TinyGaussian)
    registry.add("tiny-conv", TinyConv)


def register() -> None:
    """Register this module as a plugin into the current process-wide manager (idempotent)."""
    manager = get_manager()
    if "tiny-conv" not in manager.registry("model"):
        manager.register(sys.modules[__name__], Provenance("tests-tiny-velocity-models", "tests", "0"))
