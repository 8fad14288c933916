"""Which implementation runs the Mamba mixer: mamba-ssm's fused CUDA kernels or the pure-PyTorch scan.

``mamba_ssm`` is imported only here, lazily, and only when the input is on a CUDA device (or the user
asked for ``backend="cuda"``): importing any of its submodules runs its package ``__init__``, which
needs Triton and the compiled extension. Like mamba-ssm itself (PR #265), an explicit ``"cuda"`` never
falls back silently; ``"auto"`` falls back with one warning per process.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from dimsum_core.errors import DimsumError
from dimsum_core.kernels import causal_conv1d_status, mamba_status

Backend = Literal["auto", "cuda", "torch"]

INSTALL_HINT = 'pip install --no-build-isolation -e ".[cuda]"'

_fallback_warned = False


@dataclass(frozen=True)
class CudaKernels:
    """mamba-ssm's fused entry point, usable only with causal-conv1d present."""

    mamba_inner_fn: Callable[..., torch.Tensor]
    has_causal_conv1d: bool


def require_cuda_kernels() -> None:
    """Raise a one-line :class:`DimsumError` unless mamba-ssm's fused kernels load here."""
    status = mamba_status()
    if not status.loads:
        raise DimsumError(f"backend='cuda' needs mamba-ssm's fused kernels, which are unavailable here "
                          f"({status.detail}); on a CUDA machine run `{INSTALL_HINT}`, or use "
                          f"backend='auto' or 'torch'")


def resolve_backend(requested: Backend, device: torch.device) -> Literal["cuda", "torch"]:
    """The backend that runs an input on ``device``."""
    if requested == "torch":
        return "torch"
    if requested == "cuda":
        require_cuda_kernels()
        if device.type != "cuda":
            raise DimsumError(f"backend='cuda' needs the input on a CUDA device, got '{device.type}'; "
                              f"move the model to the GPU or use backend='auto'")
        return "cuda"
    if requested != "auto":
        raise ValueError(f"unknown backend {requested!r}; choose 'auto', 'cuda' or 'torch'")
    if device.type == "meta":  # shape-only runs (MAC counting) compute nothing
        return "torch"
    if device.type == "cuda":
        status = mamba_status()
        if status.loads:
            return "cuda"
        reason = f"mamba-ssm's fused kernels are unavailable ({status.detail}); install them with `{INSTALL_HINT}`"
    else:
        reason = f"the input is on '{device.type}' and the fused kernels need CUDA"
    _warn_fallback_once(reason)
    return "torch"


def _warn_fallback_once(reason: str) -> None:
    global _fallback_warned
    if _fallback_warned:
        return
    _fallback_warned = True
    warnings.warn(f"Mamba mixer: using the pure-PyTorch selective scan because {reason} "
                  f"(backend='torch' silences this warning)", RuntimeWarning, stacklevel=4)


@functools.cache
def cuda_kernels() -> CudaKernels:
    """Imports mamba-ssm (call only after :func:`resolve_backend` returned ``"cuda"``)."""
    from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn

    return CudaKernels(mamba_inner_fn, causal_conv1d_status().loads)
