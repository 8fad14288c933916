"""Numeric precision, written once for training, sampling and the benchmarks: the ``fp32``/``tf32``/``bf16``
choice, its TF32 flags and bf16 autocast, and turning autocast off for the parts that must run in float32
(wavelet transforms, the pure-PyTorch scan)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal, get_args

import torch

from dimsum_core.errors import DimsumError

#: fp32: strict float32; tf32: float32 with TF32 matmuls and convs (the official setting); bf16: bf16 autocast
Precision = Literal["fp32", "tf32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


@contextlib.contextmanager
def precision_scope(precision: Precision, *, training: bool = False) -> Iterator[None]:
    """TF32 matmuls and convs (no effect on a CPU) for ``tf32``, restored on exit. In training ``bf16``
    gets them too: what autocast leaves in float32 trains as the official fp32+TF32 does."""
    if precision not in PRECISIONS:
        raise DimsumError(f"unknown precision '{precision}'; choose {', '.join(PRECISIONS)}")
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    tf32 = precision == "tf32" or (training and precision == "bf16")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def autocast(precision: Precision, device_type: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``bf16``, nothing for the float32 precisions."""
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.compiler.assume_constant_result
def _autocast_available(device_type: str) -> bool:
    # decided outside the traced graph: dynamo cannot trace torch._C._is_autocast_available
    return torch.amp.is_autocast_available(device_type)


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """``torch.autocast(device_type, enabled=False)``, or nothing where that device has no autocast
    (the meta device of shape-only runs)."""
    if _autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()
