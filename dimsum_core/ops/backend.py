"""Which implementation runs the Mamba mixer: dimsum's Triton kernels, mamba-ssm's CUDA kernels, or the
pure-PyTorch scan.

On a CUDA device ``auto`` takes dimsum's Triton kernels (Triton ships with every CUDA build of torch, so
they need no compiler; with the Gluon scan a forward + backward of scan and conv is faster than
mamba-ssm's at DiMSUM-L/2's and S/2's 256-px shapes: docs/benchmarks.md). mamba-ssm's kernels (the
optional ``[cuda]`` extra, a ~10-minute CUDA build) run only when asked for, as a reference. On the CPU
``auto`` takes the PyTorch scan, the only path there, silently.
``mamba_ssm`` is imported only here, lazily, and only when asked for: importing any of its submodules
runs its package ``__init__``, which needs the compiled extension. Like mamba-ssm itself (PR #265), an
explicit backend never falls back silently; ``auto`` on a GPU without Triton falls back with one
warning per process.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from dimsum_core.errors import DimsumError
from dimsum_core.ops.kernels import causal_conv1d_status, mamba_status, triton_status

Backend = Literal["auto", "triton", "cuda", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "triton", "cuda", "torch")

INSTALL_HINT = 'pip install --no-build-isolation -e ".[cuda]"'

_fallback_warned = False


@dataclass(frozen=True)
class CudaKernels:
    """mamba-ssm's fused entry point, usable only with causal-conv1d present."""

    mamba_inner_fn: Callable[..., torch.Tensor]
    has_causal_conv1d: bool


def require_backend(backend: str) -> None:
    """Raise a one-line :class:`DimsumError` unless ``backend``'s kernels load here."""
    if backend not in BACKENDS:
        raise DimsumError(f"unknown mixer backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "cuda" and not (status := mamba_status()).loads:
        raise DimsumError(f"backend='cuda' needs mamba-ssm's fused kernels, which are unavailable here "
                          f"({status.detail}); on a CUDA machine run `{INSTALL_HINT}`, or use "
                          f"backend='auto', 'triton' or 'torch'")
    if backend == "triton" and not (status := triton_status()).loads:
        raise DimsumError(f"backend='triton' needs Triton and a CUDA device, unavailable here ({status.detail}); "
                          f"install a CUDA build of torch (it brings Triton), or use backend='auto' or 'torch'")


def resolve_backend(requested: Backend, device: torch.device) -> Literal["triton", "cuda", "torch"]:
    """The backend that runs an input on ``device``."""
    if requested == "torch":
        return "torch"
    if requested in ("cuda", "triton"):
        require_backend(requested)
        if device.type != "cuda":
            raise DimsumError(f"backend='{requested}' needs the input on a CUDA device, got '{device.type}'; "
                              f"move the model to the GPU or use backend='auto'")
        return requested
    require_backend(requested)
    if device.type != "cuda":  # CPU (the only path there) or meta (shape-only runs compute nothing)
        return "torch"
    status = triton_status()
    if status.loads:
        return "triton"
    _warn_fallback_once(f"dimsum's Triton kernels are unavailable ({status.detail}); install a CUDA build of "
                        f"torch, which brings Triton")
    return "torch"


def auto_path_reason() -> tuple[str, str]:
    """(backend, why) that ``auto`` takes on this machine's first CUDA device, or on the CPU."""
    if not torch.cuda.is_available():
        return "torch", "no CUDA device: the pure-PyTorch scan (fine for tests and tiny models)"
    status = triton_status()
    if status.loads:
        return "triton", f"dimsum's kernels (triton {status.version}; no CUDA build needed): {status.detail}"
    return "torch", f"the pure-PyTorch scan, slow on a GPU: Triton is unavailable ({status.detail})"


def _warn_fallback_once(reason: str) -> None:
    global _fallback_warned
    if _fallback_warned:
        return
    _fallback_warned = True
    warnings.warn(f"Mamba mixer: using the pure-PyTorch selective scan on the GPU because {reason} "
                  f"(backend='torch' silences this warning)", RuntimeWarning, stacklevel=4)


@functools.cache
def cuda_kernels() -> CudaKernels:
    """Imports mamba-ssm (call only after :func:`resolve_backend` returned ``"cuda"``)."""
    from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn

    return CudaKernels(mamba_inner_fn, causal_conv1d_status().loads)
