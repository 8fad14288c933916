"""Euler-Maruyama sampling of the reverse-time SDE that shares the flow's marginals (SiT's ``sde``).

For any diffusion ``w(t) >= 0`` the SDE ``dx = [v + w(t)/2 * score] dt + sqrt(w(t)) dW`` has the same
marginals as the probability-flow ODE ``dx = v dt``; the score comes from the velocity through the
training path (``InterpolationPath.velocity_to_score``), so ``path`` must match the objective.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from dimsum_core.config.spec import NonNegative
from dimsum_core.errors import DimsumError
from dimsum_core.flow.paths import PATHS, InterpolationPath
from dimsum_core.interfaces.sampler import Sampler, SampleResult, VelocityFn
from dimsum_core.sampling.noise import randn_like

DiffusionForm = Literal["sigma", "constant", "linear", "decreasing", "increasing-decreasing"]


def diffusion_coefficient(form: DiffusionForm, path: InterpolationPath, t: torch.Tensor,
                          norm: float = 1.0) -> torch.Tensor:
    """w(t), the squared noise scale; twice SiT's ``compute_diffusion`` so that ``norm`` means the same.

    ``sigma``: 2 norm sigma(t) (SiT's sampling default), ``constant``: 2 norm, ``linear``: 2 norm (1 - t),
    ``decreasing``: (norm cos(pi t) + 1)^2 / 2, ``increasing-decreasing``: 2 norm sin(pi t)^2.
    """
    if form == "sigma":
        d = norm * path.sigma(t)
    elif form == "constant":
        d = torch.full_like(t, norm)
    elif form == "linear":
        d = norm * (1 - t)
    elif form == "decreasing":
        d = 0.25 * (norm * torch.cos(math.pi * t) + 1) ** 2
    elif form == "increasing-decreasing":
        d = norm * torch.sin(math.pi * t) ** 2
    else:
        raise DimsumError(f"unknown diffusion form '{form}'; choose sigma, constant, linear, decreasing "
                          f"or increasing-decreasing")
    return 2 * d


class EulerMaruyamaSampler(Sampler):
    """Euler-Maruyama SDE sampler with a final deterministic step (SiT's ``sample_sde`` defaults).

    ``steps - 1`` stochastic steps on a uniform grid over [0, 1 - last_step_size], then one noise-free
    step to t = 1: ``mean`` uses the SDE drift (SiT's "Mean"), ``euler`` the plain velocity. The score
    is undefined at t = 1, hence the last step. NFE = ``steps`` (a guided pair counts once).
    """

    def __init__(self, *, path: Literal["gvp", "linear"] = "gvp", steps: int = 250,
                 diffusion: DiffusionForm = "sigma", diffusion_norm: NonNegative = 1.0,
                 last_step: Literal["mean", "euler"] = "mean", last_step_size: float = 0.04):
        if path not in PATHS:
            raise DimsumError(f"unknown path '{path}'; choose {' or '.join(PATHS)} (as trained)")
        if steps < 2:
            raise DimsumError(f"steps must be at least 2 (one stochastic and the last step), got {steps}")
        if not 0.0 < last_step_size < 1.0:
            raise DimsumError(f"last_step_size must be in (0, 1), got {last_step_size}")
        if last_step not in ("mean", "euler"):
            raise DimsumError(f"last_step must be 'mean' or 'euler', got '{last_step}'")
        diffusion_coefficient(diffusion, PATHS[path](), torch.zeros(()), diffusion_norm)  # checks the form
        self.path_name, self.path = path, PATHS[path]()
        self.steps, self.diffusion, self.diffusion_norm = steps, diffusion, diffusion_norm
        self.last_step, self.last_step_size = last_step, last_step_size

    def _drift(self, velocity: VelocityFn, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(SDE drift v + w/2 score, w) at (x, t)."""
        v = velocity(x, t)
        w = diffusion_coefficient(self.diffusion, self.path, t, self.diffusion_norm)
        return v + 0.5 * w * self.path.velocity_to_score(v, x, t), w

    def sample(self, velocity: VelocityFn, x0: torch.Tensor,
               generator: torch.Generator | Sequence[torch.Generator] | None = None) -> SampleResult:
        ts = torch.linspace(0.0, 1.0 - self.last_step_size, self.steps, dtype=torch.float64)
        x = x0
        with torch.no_grad():
            for t, t_next in zip(ts[:-1], ts[1:], strict=True):
                h = float(t_next - t)
                drift, w = self._drift(velocity, x, t.to(x0))
                x = x + h * drift + torch.sqrt(w * h) * randn_like(x, generator)
            t_last = ts[-1].to(x0)
            if self.last_step == "mean":
                drift, _ = self._drift(velocity, x, t_last)
            else:
                drift = velocity(x, t_last)
            x = x + self.last_step_size * drift
        return SampleResult(x, self.steps)
