"""Learning-rate schedules: the lr of a step as a pure function of the step.

The official DiMSUM trains at a constant lr (its `train.py`), the default. Short runs gain a lot from
annealing to ~0, so ``cosine`` and ``linear`` decay from ``lr`` towards ``lr * min_lr_ratio`` at
the end of training, after an optional linear warm-up. Being a function of the step (no scheduler
state), the lr after a resume is the lr the uninterrupted run would have used.
"""

from __future__ import annotations

import math
from typing import Literal

LrSchedule = Literal["constant", "cosine", "linear"]


def lr_at(step: int, *, lr: float, total_steps: int, schedule: LrSchedule = "constant", warmup_steps: int = 0,
          min_lr_ratio: float = 0.0) -> float:
    """The lr for optimizer step ``step`` (0-based: the update that takes the model from step to step + 1)."""
    if warmup_steps > 0 and step < warmup_steps:
        # (step + 1): the first update already moves, and step warmup_steps - 1 reaches the full lr
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    # progress 0 on the first update after warm-up, (n - 1) / n on the last: no update is wasted at lr 0
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    if schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "linear":
        factor = 1.0 - progress
    else:
        raise ValueError(f"unknown lr schedule {schedule!r}")
    return lr * (min_lr_ratio + (1.0 - min_lr_ratio) * factor)
