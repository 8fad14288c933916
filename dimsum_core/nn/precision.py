"""Turning autocast off for the parts that must run in float32 (wavelet transforms, the pure-PyTorch scan)."""

from __future__ import annotations

import contextlib

import torch


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
