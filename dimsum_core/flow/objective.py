"""Velocity matching on an interpolation path: the training objective of DiMSUM (and SiT).

``loss = mean_flat((v_theta(x_t, t, y) - u_t)^2)`` with t = 0 noise and t = 1 data, x0 ~ N(0, I).
"""

from __future__ import annotations

from typing import Literal

import torch

from dimsum_core.flow.paths import GVPPath, InterpolationPath, LinearPath
from dimsum_core.interfaces.objective import Objective

TimeSampling = Literal["uniform", "logit-normal"]


class VelocityMatching(Objective):
    """Regress the path velocity ``u_t = alpha'(t) x1 + sigma'(t) x0`` at times drawn from
    U[0, 1] (official) or a logit-normal distribution (``sigmoid(N(mean, std))``)."""

    def __init__(self, interpolation: InterpolationPath, t_sampling: TimeSampling = "uniform",
                 logit_mean: float = 0.0, logit_std: float = 1.0):
        if t_sampling not in ("uniform", "logit-normal"):
            raise ValueError(f"t_sampling must be 'uniform' or 'logit-normal', got {t_sampling!r}")
        if logit_std <= 0:
            raise ValueError(f"logit_std must be positive, got {logit_std}")
        self.interpolation = interpolation
        self.t_sampling = t_sampling
        self.logit_mean = logit_mean
        self.logit_std = logit_std

    def sample_t(self, n: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        if self.t_sampling == "uniform":
            return torch.rand(n, generator=generator, device=device)
        z = torch.randn(n, generator=generator, device=device)
        return torch.sigmoid(self.logit_mean + self.logit_std * z)

    def path(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.interpolation.interpolate(x0, x1, t)

    def __repr__(self) -> str:
        extra = f", mean={self.logit_mean}, std={self.logit_std}" if self.t_sampling == "logit-normal" else ""
        return f"{type(self).__name__}({type(self.interpolation).__name__}, t~{self.t_sampling}{extra})"


def gvp(t_sampling: TimeSampling = "uniform", logit_mean: float = -0.5,
        logit_std: float = 1.0) -> VelocityMatching:
    """Velocity matching on the trigonometric path x_t = sin(pi t/2) x1 + cos(pi t/2) x0 (official).

    ``logit_mean``/``logit_std`` apply to ``t_sampling: logit-normal`` only; their defaults are the
    official code's unused ``logitnormal(-0.5, 1)`` option.
    """
    return VelocityMatching(GVPPath(), t_sampling, logit_mean, logit_std)


def linear(t_sampling: TimeSampling = "uniform", logit_mean: float = 0.0,
           logit_std: float = 1.0) -> VelocityMatching:
    """Velocity matching on the linear path x_t = t x1 + (1 - t) x0 (rectified flow, SiT Linear)."""
    return VelocityMatching(LinearPath(), t_sampling, logit_mean, logit_std)
