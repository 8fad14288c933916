"""Comparing tensors in the tests."""

from __future__ import annotations

import torch


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖, computed in float64 (an all-zero ``b`` divides by 1e-30 instead of 0)."""
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()
