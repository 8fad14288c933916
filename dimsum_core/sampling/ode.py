"""Probability-flow ODE solvers through torchdiffeq (SiT's ``transport/integrators.py::ode``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from dimsum_core.config.spec import Positive
from dimsum_core.errors import DimsumError
from dimsum_core.interfaces.sampler import Sampler, SampleResult, VelocityFn

ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_METHODS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams")
OdeMethod = Literal["dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun",
                    "euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams"]


class ODESampler(Sampler):
    """Probability-flow ODE dx/dt = v(x, t) from t = 0 to 1 with a torchdiffeq method.

    The official sampler is ``dopri5`` with atol 1e-6, rtol 1e-3 and a 250-point output grid of which
    only the last state is kept. For adaptive methods that grid only decides which intermediate states
    torchdiffeq stores (steps are not clipped to it), so dimsum integrates straight to t = 1: the same
    final state without a (250, N, C, H, W) trajectory in memory. For fixed-grid methods ``num_steps``
    points make ``num_steps - 1`` steps.

    NFE counts calls of the velocity; a guided (conditional + null) pair batched together counts once.
    An adaptive method takes one step size for the whole batch, so batch composition changes a sample's
    result only within the solver tolerance.
    """

    def __init__(self, *, method: OdeMethod = "dopri5", num_steps: int = 250,
                 atol: Positive = 1e-6, rtol: Positive = 1e-3):
        if method not in ADAPTIVE_METHODS + FIXED_METHODS:
            raise DimsumError(f"unknown ODE method '{method}'; choose one of "
                              f"{', '.join(ADAPTIVE_METHODS + FIXED_METHODS)}")
        if num_steps < 2:
            raise DimsumError(f"num_steps must be at least 2 (grid points from t=0 to t=1), got {num_steps}")
        self.method, self.num_steps, self.atol, self.rtol = method, num_steps, atol, rtol

    @property
    def adaptive(self) -> bool:
        return self.method in ADAPTIVE_METHODS

    def sample(self, velocity: VelocityFn, x0: torch.Tensor,
               generator: torch.Generator | Sequence[torch.Generator] | None = None) -> SampleResult:
        from torchdiffeq import odeint

        nfe = 0

        def rhs(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            nonlocal nfe
            nfe += 1
            return velocity(x, t)

        points = 2 if self.adaptive else self.num_steps
        grid = torch.linspace(0.0, 1.0, points, device=x0.device, dtype=torch.float64).to(x0.dtype)
        with torch.no_grad():
            trajectory = odeint(rhs, x0, grid, method=self.method, atol=self.atol, rtol=self.rtol)
        return SampleResult(trajectory[-1], nfe)


def dopri5(*, num_steps: int = 250, atol: Positive = 1e-6, rtol: Positive = 1e-3) -> ODESampler:
    """Adaptive Dormand-Prince 5(4) ODE solver: the official DiMSUM sampler (atol 1e-6, rtol 1e-3)."""
    return ODESampler(method="dopri5", num_steps=num_steps, atol=atol, rtol=rtol)
