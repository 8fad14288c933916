"""Seeded random streams per sample.

A sample's initial noise, its class label and any noise an SDE solver draws depend only on the run
seed and the sample's global index, never on the batch it lands in or on the number of ranks.
Everything is drawn on the CPU, so CPU and GPU runs start from the same noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: independent streams of one sample
NOISE_STREAM, SOLVER_STREAM, LABEL_STREAM = 0, 1, 2


def sample_generator(seed: int, index: int, stream: int = NOISE_STREAM) -> torch.Generator:
    """A CPU generator for (seed, sample index, stream); SeedSequence mixes them without collisions."""
    state = np.random.SeedSequence([seed, index, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


def initial_noise(seed: int, indices: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """x0 ~ N(0, I) of shape (len(indices), *shape), one seeded stream per sample."""
    return torch.stack([torch.randn(*shape, generator=sample_generator(seed, i)) for i in indices])


def solver_generators(seed: int, indices: Sequence[int]) -> list[torch.Generator]:
    """One generator per sample for the noise a stochastic solver draws."""
    return [sample_generator(seed, i, SOLVER_STREAM) for i in indices]


def sample_labels(seed: int, indices: Sequence[int], num_classes: int,
                  classes: Sequence[int] | None = None) -> torch.Tensor | None:
    """Class labels (N,) int64: ``classes`` repeated in index order, or uniform random per sample.

    None for an unconditional model (``num_classes == 0``).
    """
    if num_classes == 0:
        return None
    if classes:
        return torch.tensor([classes[i % len(classes)] for i in indices], dtype=torch.long)
    return torch.tensor([int(torch.randint(num_classes, (), generator=sample_generator(seed, i, LABEL_STREAM)))
                         for i in indices], dtype=torch.long)


def randn_like(x: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator] | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``; a sequence of generators gives one per sample (row)."""
    if generator is None:
        return torch.randn_like(x)
    if isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, device=generator.device,
                           dtype=x.dtype).to(x.device)
    if len(generator) != x.shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {x.shape[0]}")
    return torch.stack([torch.randn(x.shape[1:], generator=g, device=g.device, dtype=x.dtype)
                        for g in generator]).to(x.device)
