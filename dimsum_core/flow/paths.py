"""Interpolation paths ``x_t = alpha(t) * x1 + sigma(t) * x0`` between noise x0 and data x1.

Convention (all of dimsum): t in [0, 1], **t = 0 is noise** (alpha = 0, sigma = 1) and **t = 1 is
data** (alpha = 1, sigma = 0). The path velocity is ``u_t = alpha'(t) * x1 + sigma'(t) * x0``.

Layered like SiT's ``transport/path.py``: this module is pure math; objectives (time sampling, loss)
and samplers build on it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch


def broadcast_time(t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """t as a scalar or (N,) -> a tensor that broadcasts against x (N, ...)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        return t
    return t.reshape(-1, *([1] * (x.ndim - 1)))


class InterpolationPath(ABC):
    """Coefficients alpha(t), sigma(t) and their time derivatives; every method is elementwise in t."""

    @abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Data coefficient: 0 at t = 0, 1 at t = 1."""

    @abstractmethod
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise coefficient: 1 at t = 0, 0 at t = 1."""

    @abstractmethod
    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        """d alpha / dt."""

    @abstractmethod
    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """d sigma / dt."""

    def interpolate(self, x0: torch.Tensor, x1: torch.Tensor,
                    t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, u_t) for noise x0 and data x1 (N, ...), t scalar or (N,)."""
        t = broadcast_time(t, x1)
        x_t = self.alpha(t) * x1 + self.sigma(t) * x0
        u_t = self.d_alpha(t) * x1 + self.d_sigma(t) * x0
        return x_t, u_t

    def velocity_to_noise(self, v: torch.Tensor, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """The noise x0 that, with some x1, gives position x and velocity v at time t.

        Solving ``x = a x1 + s x0`` and ``v = a' x1 + s' x0`` for x0:
        ``x0 = (a v - a' x) / (a s' - a' s)``. The determinant is never 0 on the paths here.
        """
        t = broadcast_time(t, x)
        a, s, da, ds = self.alpha(t), self.sigma(t), self.d_alpha(t), self.d_sigma(t)
        return (a * v - da * x) / (a * ds - da * s)

    def velocity_to_score(self, v: torch.Tensor, x: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        """Score ``grad log p_t(x)`` from the (marginal) velocity, as SiT's ``get_score_from_velocity``.

        ``p_t(x | x1) = N(a x1, s^2 I)`` gives ``score = -E[x0 | x] / s``; the velocity field is
        linear in (x, E[x0 | x]), so the score is ``-velocity_to_noise(v, x, t) / s``. Undefined at
        t = 1 (s = 0): samplers stop short of it.
        """
        return -self.velocity_to_noise(v, x, t) / self.sigma(broadcast_time(t, x))


class GVPPath(InterpolationPath):
    """Trigonometric (variance-preserving) path: alpha = sin(pi t / 2), sigma = cos(pi t / 2).

    The official DiMSUM default (SiT ``--path-type GVP``).
    """

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sin(0.5 * math.pi * t)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.cos(0.5 * math.pi * t)

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)


class LinearPath(InterpolationPath):
    """Linear (rectified-flow) path: alpha = t, sigma = 1 - t; velocity x1 - x0."""

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return 1 - t

    def d_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    def d_sigma(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.ones_like(t)


PATHS: dict[str, type[InterpolationPath]] = {"gvp": GVPPath, "linear": LinearPath}
