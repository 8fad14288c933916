"""torchrun integration: process group set-up (NCCL on GPU, gloo on CPU) and small collectives.

Without torchrun's environment (``WORLD_SIZE`` unset) everything runs in one process and the
collectives are no-ops.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dimsum_core.errors import RecipeError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(choice: str, local_rank: int) -> torch.device:
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RecipeError("train.device=cuda but no CUDA device is available; use train.device=auto or cpu")
    if choice in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(device_choice: str) -> DistInfo:
    """Join the process group that torchrun describes in the environment (if any)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = resolve_device(device_choice, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, device)


def shutdown(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def leave_together(info: DistInfo) -> Iterator[None]:
    """Destroy the process group when the block ends. On success every rank first waits for the others:
    a rank that tears the group down while a peer is still in a collective with it (rank 0 receiving a
    gather) can die in gloo with SIGABRT. On an error the group goes at once, so the others fail, not hang."""
    try:
        yield
        barrier(info)
    finally:
        shutdown(info)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def mean_over_ranks(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of a tensor over ranks (every rank gets it)."""
    if info.distributed:
        value = value.clone()
        dist.all_reduce(value)
        value /= info.world_size
    return value


def all_ok(ok: bool, info: DistInfo) -> bool:
    """True on every rank iff ``ok`` is True on every rank (so all stop together on an error)."""
    if not info.distributed:
        return ok
    flag = torch.tensor([0 if ok else 1], device=info.device)
    dist.all_reduce(flag)
    return int(flag.item()) == 0


def broadcast_text(text: str, info: DistInfo) -> str:
    """Rank 0's string on every rank."""
    if not info.distributed:
        return text
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return box[0]
