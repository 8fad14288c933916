"""Samplers: integrate a velocity field from noise (t = 0) to data (t = 1)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

#: v(x, t) with x (N, ...) and t a scalar tensor; returns dx/dt of the same shape as x
VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SampleResult:
    x: torch.Tensor
    #: model evaluations; a guided (conditional + unconditional) pair batched together counts once
    nfe: int


class Sampler(ABC):
    @abstractmethod
    def sample(self, velocity: VelocityFn, x0: torch.Tensor,
               generator: torch.Generator | Sequence[torch.Generator] | None = None) -> SampleResult:
        """Integrate from noise ``x0`` at t = 0 to t = 1.

        ``generator`` drives any noise drawn while integrating (SDE samplers). A sequence holds one
        generator per sample, so that a sample's noise does not depend on which batch it is in.
        """
