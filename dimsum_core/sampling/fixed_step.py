"""Fixed-step ODE solvers on a uniform grid from t = 0 (noise) to t = 1 (data)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dimsum_core.errors import DimsumError
from dimsum_core.interfaces.sampler import Sampler, SampleResult, VelocityFn


def _check_steps(steps: int) -> None:
    if steps < 1:
        raise DimsumError(f"steps must be a positive integer, got {steps}")


class FixedStepSampler(Sampler):
    """A one-step method on a uniform grid of ``steps`` intervals from t = 0 to t = 1.

    NFE counts velocity calls (``steps * evals_per_step``); a guided pair counts once.
    """

    evals_per_step: int

    def __init__(self, *, steps: int):
        _check_steps(steps)
        self.steps = steps

    def step(self, velocity: VelocityFn, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, velocity: VelocityFn, x0: torch.Tensor,
               generator: torch.Generator | Sequence[torch.Generator] | None = None) -> SampleResult:
        ts = torch.linspace(0.0, 1.0, self.steps + 1, dtype=torch.float64).to(x0)
        x = x0
        with torch.no_grad():
            for t, t_next in zip(ts[:-1], ts[1:], strict=True):
                x = self.step(velocity, x, t, t_next)
        return SampleResult(x, self.steps * self.evals_per_step)


class EulerSampler(FixedStepSampler):
    """Explicit Euler, first order: ``steps`` model evaluations."""

    evals_per_step = 1

    def __init__(self, *, steps: int = 250):
        super().__init__(steps=steps)

    def step(self, velocity: VelocityFn, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        return x + (t_next - t) * velocity(x, t)


class HeunSampler(FixedStepSampler):
    """Heun's method (explicit trapezoid), second order: ``2 * steps`` model evaluations."""

    evals_per_step = 2

    def __init__(self, *, steps: int = 125):
        super().__init__(steps=steps)

    def step(self, velocity: VelocityFn, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        h = t_next - t
        v = velocity(x, t)
        v_next = velocity(x + h * v, t_next)
        return x + 0.5 * h * (v + v_next)
