"""The sampling pipeline: seeded noise and labels per global index -> sampler -> decoder -> uint8.

Each sample is defined by (seed, global index) alone (see :mod:`dimsum_core.sampling.noise`), so
batch size and rank count do not change which image index i is. Ranks take every ``world``-th index.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dimsum_core.cpu_threads import make_room
from dimsum_core.errors import DimsumError
from dimsum_core.interfaces.model import FlowModel
from dimsum_core.interfaces.sampler import Sampler, VelocityFn
from dimsum_core.nn.precision import Precision, autocast, precision_scope
from dimsum_core.sampling.cuda_graph import CudaGraphForward
from dimsum_core.sampling.guidance import GuidedVelocity
from dimsum_core.sampling.noise import initial_noise, sample_labels, solver_generators

#: latents (N, C, h, w) -> images (N, 3, H, W) in [-1, 1]
Decoder = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class GeneratedBatch:
    indices: list[int]
    #: (N, C, H, W) uint8 on the CPU
    images: torch.Tensor
    #: (N,) int64 class labels, None for unconditional models
    labels: torch.Tensor | None
    nfe: int
    seconds: float


def rank_indices(n: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """The global sample indices rank ``rank`` of ``world_size`` produces: every world_size-th."""
    return list(range(rank, n, world_size))


def gather_to_main(item: Any, world_size: int) -> list[Any] | None:
    """Every rank's ``item`` on rank 0 (a list in rank order), None elsewhere; ``[item]`` without torchrun."""
    if world_size == 1:
        return [item]
    import torch.distributed as dist

    items: list[Any] | None = [None] * world_size if dist.get_rank() == 0 else None
    dist.gather_object(item, items, dst=0)
    return items


def merge_batches(batches: list[GeneratedBatch]) -> tuple[list[int], torch.Tensor, torch.Tensor | None]:
    """Batches from any ranks -> (indices, images, labels) in global index order."""
    indices = [i for b in batches for i in b.indices]
    order = sorted(range(len(indices)), key=indices.__getitem__)
    images = torch.cat([b.images for b in batches])[order]
    labels = None if batches[0].labels is None else torch.cat([b.labels for b in batches])[order]
    return sorted(indices), images, labels


@dataclass
class SamplingStats:
    """Cost of a sampling run: NFE per sample (a guided pair counts once) and seconds per image."""

    samples: int = 0
    #: sum over samples of the NFE of the batch each sample was in
    nfe_total: int = 0
    seconds: float = 0.0

    def add(self, batch: GeneratedBatch) -> None:
        self.samples += len(batch.indices)
        self.nfe_total += batch.nfe * len(batch.indices)
        self.seconds += batch.seconds

    @classmethod
    def combined(cls, parts: list[SamplingStats]) -> SamplingStats:
        return cls(sum(p.samples for p in parts), sum(p.nfe_total for p in parts), sum(p.seconds for p in parts))

    @property
    def mean_nfe(self) -> float:
        return self.nfe_total / self.samples if self.samples else 0.0

    @property
    def seconds_per_image(self) -> float:
        """Device seconds per image, summed over ranks (so it does not shrink with more GPUs)."""
        return self.seconds / self.samples if self.samples else 0.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 as the official code rounds (``clamp(127.5 x + 128)``, truncated)."""
    return torch.clamp(127.5 * images.float() + 128.0, 0, 255).to(torch.uint8)


def _in_precision(velocity: VelocityFn, precision: Precision, device: torch.device) -> VelocityFn:
    """bf16 autocast for the network only; the solver state stays float32."""
    if precision != "bf16":
        return velocity

    def bf16_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with autocast(precision, device.type):
            return velocity(x, t).float()

    return bf16_velocity


def check_classes(model: FlowModel, classes: Sequence[int] | None) -> None:
    if not classes:
        return
    if model.num_classes == 0:
        raise DimsumError("class labels were given, but the model is unconditional (num_classes=0); "
                          "drop --class")
    bad = [c for c in classes if not 0 <= c < model.num_classes]
    if bad:
        raise DimsumError(f"class {bad[0]} is out of range: the model has classes 0..{model.num_classes - 1}")


def generate(model: FlowModel, sampler: Sampler, indices: Sequence[int], *, seed: int = 0,
             batch_size: int = 64, cfg_scale: float = 1.0, guide_channels: int | None = None,
             classes: Sequence[int] | None = None, decode: Decoder | None = None,
             precision: Precision = "fp32", cuda_graph: bool = False,
             compile: bool = False) -> Iterator[GeneratedBatch]:
    """Sample the given global indices in batches; yields uint8 images on the CPU.

    ``cuda_graph`` replays the model's forward from CUDA graphs (one per batch shape): much faster at
    small batch on a GPU, identical results. ``compile`` compiles the model's blocks first
    (:meth:`FlowModel.compile_regions`, in place); the graphs then replay the compiled kernels.

    ``decode`` maps model outputs to [-1, 1] images (the VAE for latent models; None for pixels).
    Class labels are ``classes`` cycled over the indices, or uniform random per index.
    """
    if batch_size < 1:
        raise DimsumError(f"batch size must be positive, got {batch_size}")
    check_classes(model, classes)
    device = next(model.parameters()).device
    shape = (model.in_channels, model.input_size, model.input_size)
    indices = list(indices)
    if compile:
        model.compile_regions()
    forward = CudaGraphForward(model) if cuda_graph else model
    with precision_scope(precision), torch.no_grad():
        for start in range(0, len(indices), batch_size):
            if device.type == "cpu":
                make_room()  # threads follow the cores other processes leave free
            chunk = indices[start:start + batch_size]
            began = time.perf_counter()
            x0 = initial_noise(seed, chunk, shape).to(device)  # (N, C, H, W)
            labels = sample_labels(seed, chunk, model.num_classes, classes)
            guided = GuidedVelocity(forward, None if labels is None else labels.to(device),
                                    cfg_scale, guide_channels)
            result = sampler.sample(_in_precision(guided, precision, device), x0,
                                    solver_generators(seed, chunk))
            x = result.x.float()
            images = to_uint8(decode(x) if decode is not None else x).cpu()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            yield GeneratedBatch(chunk, images, labels, result.nfe, time.perf_counter() - began)
