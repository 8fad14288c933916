"""Fixed-step ODE solvers on a uniform grid from t = 0 (noise) to t = 1 (data)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dimsum_core.errors import DimsumError
from dimsum_core.interfaces.sampler import Sampler, SampleResult, VelocityFn


def _check_steps(steps: int) -> None:
    if steps < 1:
        raise DimsumError(f"steps must be a positive integer, got {steps}")


class EulerSampler(Sampler):
    """Explicit Euler, first order: ``steps`` model evaluations.

    NFE counts velocity calls; a guided pair counts once.
    """

    def __init__(self, *, steps: int = 250):
        _check_steps(steps)
        self.steps = steps

    def sample(self, velocity: VelocityFn, x0: torch.Tensor,
               generator: torch.Generator | Sequence[torch.Generator] | None = None) -> SampleResult:
        ts = torch.linspace(0.0, 1.0, self.steps + 1, dtype=torch.float64)
        x = x0
        with torch.no_grad():
            for t, t_next in zip(ts[:-1], ts[1:], strict=True):
                h = float(t_next - t)
                x = x + h * velocity(x, t.to(x0))
        return SampleResult(x, self.steps)


class HeunSampler(Sampler):
    """Heun's method (explicit trapezoid), second order: ``2 * steps`` model evaluations.

    NFE counts velocity calls; a guided pair counts once.
    """

    def __init__(self, *, steps: int = 125):
        _check_steps(steps)
        self.steps = steps

    def sample(self, velocity: VelocityFn, x0: torch.Tensor,
               generator: torch.Generator | Sequence[torch.Generator] | None = None) -> SampleResult:
        ts = torch.linspace(0.0, 1.0, self.steps + 1, dtype=torch.float64)
        x = x0
        with torch.no_grad():
            for t, t_next in zip(ts[:-1], ts[1:], strict=True):
                h = float(t_next - t)
                v = velocity(x, t.to(x0))
                v_next = velocity(x + h * v, t_next.to(x0))
                x = x + 0.5 * h * (v + v_next)
        return SampleResult(x, 2 * self.steps)
