"""Detection of the GPU kernels: dimsum's own Triton kernels, and the optional compiled mamba-ssm and
causal-conv1d.

Nothing here imports ``mamba_ssm`` unless CUDA is present and the caller asks: importing any of its
submodules runs its package ``__init__``, which needs Triton and the compiled extension.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class KernelStatus:
    name: str
    installed: bool
    loads: bool
    detail: str
    version: str = ""


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@functools.cache
def mamba_status() -> KernelStatus:
    """Whether mamba-ssm's fused selective-scan kernels load here."""
    import torch

    if not _installed("mamba_ssm"):
        return KernelStatus("mamba-ssm", False, False, "not installed")
    if not torch.cuda.is_available():
        return KernelStatus("mamba-ssm", True, False, "installed, but no CUDA device: kernels unused")
    try:
        importlib.import_module("mamba_ssm.ops.selective_scan_interface")
    except Exception as exc:  # ABI mismatch, missing extension, missing triton ...
        return KernelStatus("mamba-ssm", True, False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    return KernelStatus("mamba-ssm", True, True, "fused selective scan loads")


@functools.cache
def causal_conv1d_status() -> KernelStatus:
    import torch

    if not _installed("causal_conv1d"):
        return KernelStatus("causal-conv1d", False, False, "not installed")
    if not torch.cuda.is_available():
        return KernelStatus("causal-conv1d", True, False, "installed, but no CUDA device: kernels unused")
    try:
        importlib.import_module("causal_conv1d")
    except Exception as exc:
        return KernelStatus("causal-conv1d", True, False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    return KernelStatus("causal-conv1d", True, True, "fused causal conv1d loads")


@functools.cache
def triton_status() -> KernelStatus:
    """Whether dimsum's Triton kernels can run here: Triton imports, the kernels compile to its API, and
    a CUDA device is present; the detail names the scan implementation that runs. (Nothing is compiled
    for the GPU until the first call.)"""
    import torch

    if not _installed("triton"):
        return KernelStatus("triton", False, False, "not installed (CUDA builds of torch bring it)")
    try:
        triton = importlib.import_module("triton")
        from dimsum_core.ops.triton_ops import scan_kernels

        importlib.import_module("dimsum_core.ops.triton_kernels")
        importlib.import_module(f"dimsum_core.ops.{scan_kernels()}_kernels")
    except Exception as exc:
        return KernelStatus("triton", True, False, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    if not torch.cuda.is_available():
        return KernelStatus("triton", True, False, "installed, but no CUDA device", triton.__version__)
    scan = ("the Gluon scan (Triton >= 3.6)" if scan_kernels() == "gluon" else
            "the Triton scan (Gluon's needs Triton >= 3.6)")
    return KernelStatus("triton", True, True, f"{scan} and the conv kernel load", triton.__version__)
