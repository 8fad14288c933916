"""Built-in samplers: torchdiffeq ODE solvers (official: dopri5), fixed-step Euler/Heun, Euler-Maruyama.

All integrate from t = 0 (noise) to t = 1 (data) and report NFE, where a guided (conditional + null)
pair batched together counts once, as the official code counts it.
"""

from __future__ import annotations

from dimsum_core.plugin import hookimpl
from dimsum_core.registry import Registry
from dimsum_core.sampling.fixed_step import EulerSampler, HeunSampler
from dimsum_core.sampling.ode import ODESampler, dopri5
from dimsum_core.sampling.sde import EulerMaruyamaSampler


@hookimpl
def dimsum_add_samplers(registry: Registry) -> None:
    for name, sampler in {"ode": ODESampler, "dopri5": dopri5, "euler": EulerSampler, "heun": HeunSampler,
                          "euler-maruyama": EulerMaruyamaSampler}.items():
        registry.add(name, sampler)
