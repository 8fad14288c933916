"""Which items and which random numbers each (rank, micro-batch) of each step uses.

A step draws one global batch of ``G`` items from a per-epoch permutation (seeded by the run seed
and the epoch), and cuts it into ``V = world_size * grad_accum`` equal *slots*; rank r handles slots
``r * grad_accum ... r * grad_accum + grad_accum - 1``. Every random number of a slot (noise, t,
label dropout, drop-path) comes from a seed derived from ``(seed * V + slot, step)``: with one
micro-batch per rank this is DiT's per-rank seed ``global_seed * world_size + rank``.

Consequences: a step's data and noise depend only on (seed, step, V), so a resumed run is bitwise
the run that never stopped, and 2 ranks x 1 micro-batch equals 1 rank x 2 micro-batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from dimsum_core.errors import DataError


def slot_seeds(seed: int, slot: int, slots: int, step: int) -> tuple[int, int]:
    """Two independent 63-bit seeds (data noise generator, global torch RNG) for one slot of one step."""
    words = np.random.SeedSequence([seed * slots + slot, step]).generate_state(4, dtype=np.uint32)
    mask = (1 << 63) - 1
    return ((int(words[0]) << 32 | int(words[1])) & mask, (int(words[2]) << 32 | int(words[3])) & mask)


def epoch_permutation(size: int, seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The order of ``size`` items in ``epoch``: a fresh permutation drawn from (seed, epoch) alone, so a
    resumed run knows any epoch's order without replaying the ones before it."""
    g = torch.Generator(device).manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(size, generator=g, device=device)


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches of dataset indices, step after step, from ``start_step`` on.

    Shuffles without replacement within an epoch and drops the incomplete last global batch, like
    ``DistributedSampler(shuffle=True, drop_last=True)``; unlike it, any step can be the first.
    """

    def __init__(self, dataset_size: int, global_batch_size: int, *, rank: int, world_size: int,
                 grad_accum: int, seed: int, start_step: int = 0):
        slots = world_size * grad_accum
        if global_batch_size % slots:
            raise DataError(f"train.global_batch_size={global_batch_size} does not split into "
                            f"{world_size} rank(s) x {grad_accum} micro-batch(es); use a multiple of {slots}")
        if dataset_size < global_batch_size:
            raise DataError(f"the dataset has {dataset_size} items, fewer than one global batch "
                            f"({global_batch_size}); lower train.global_batch_size or add data")
        self.size, self.global_batch = dataset_size, global_batch_size
        self.rank, self.grad_accum, self.seed = rank, grad_accum, seed
        self.micro = global_batch_size // slots
        self.start_step = start_step

    @property
    def steps_per_epoch(self) -> int:
        return self.size // self.global_batch

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while True:
            epoch, position = divmod(step, self.steps_per_epoch)
            perm = epoch_permutation(self.size, self.seed, epoch)
            for k in range(position, self.steps_per_epoch):
                batch = perm[k * self.global_batch:(k + 1) * self.global_batch]
                for j in range(self.grad_accum):
                    slot = self.rank * self.grad_accum + j
                    yield batch[slot * self.micro:(slot + 1) * self.micro].tolist()
            step = (epoch + 1) * self.steps_per_epoch
