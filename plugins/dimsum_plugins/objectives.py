"""Built-in training objectives: velocity matching on the GVP (official) or the linear path.

Time convention: t = 0 is noise, t = 1 is data; ``x_t = alpha(t) x1 + sigma(t) x0``.
"""

from __future__ import annotations

from dimsum_core.flow.objective import TimeSampling, VelocityMatching
from dimsum_core.flow.paths import GVPPath, LinearPath
from dimsum_core.plugin import hookimpl


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


@hookimpl
def dimsum_add_objectives(registry):
    registry.add("gvp", gvp)
    registry.add("linear", linear)
