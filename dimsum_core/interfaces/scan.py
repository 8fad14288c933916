"""Scan orders: how a mixer visits an H×W token grid.

A scan order is a permutation ``perm`` of the raster token indices (``row * W + col``): the mixer
sees ``tokens[:, perm]`` and its output is put back with the inverse permutation. It may differ per
layer (e.g. the official sweep-4 cycle). Scans are applied *outside* an unmodified mixer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from dimsum_core.errors import ScanError


class ScanOrder(ABC):
    """A per-layer permutation of an ``height × width`` token grid. A model gives its scans its token grid,
    ``input_size / patch_size`` on each side; DiMSUM's wavelet branch scans that same grid."""

    #: how many distinct orders the cycle over layers has (sweep-4: 4)
    period: int = 1

    @abstractmethod
    def order(self, height: int, width: int, layer: int) -> torch.Tensor:
        """The visiting order: a LongTensor of shape (height*width,) holding raster token indices.

        Raise :class:`ScanError` with a one-line reason when the grid is not supported.
        """

    def check(self, height: int, width: int) -> None:
        """Raise :class:`ScanError` if this order cannot cover the grid (default: any grid)."""
        if height < 1 or width < 1:
            raise ScanError(f"{type(self).__name__}: grid {height}x{width} is empty")


def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.numel(), device=perm.device)
    return inv


def checked_order(scan: ScanOrder, height: int, width: int, layer: int) -> torch.Tensor:
    """``scan.order`` with the bijection checked, so a faulty plugin fails at build time (and so in
    `dimsum validate`), naming the scan and its plugin."""
    who = getattr(scan, "dimsum_component", type(scan).__name__)
    n = height * width
    try:
        scan.check(height, width)
        with torch.device("cpu"):  # index tables are built on the CPU, also inside a meta-device context
            perm = torch.as_tensor(scan.order(height, width, layer), dtype=torch.long).flatten()
            valid = perm.numel() == n and torch.equal(torch.sort(perm).values, torch.arange(n))
    except ScanError as exc:
        raise ScanError(f"{who}: {exc}") from None
    except Exception as exc:  # a plugin's bug: its order() has another signature, fails on this grid, ...
        raise ScanError(f"{who}: order(height={height}, width={width}, layer={layer}) failed "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not valid:
        raise ScanError(f"{who} returned an order that is not a permutation of the {n} tokens of a "
                        f"{height}x{width} grid")
    return perm


class _Permute(torch.autograd.Function):
    """``x.index_select(1, perm)`` whose gradient gathers by the inverse permutation. The default gradient of a
    gather is a scatter-add (``index_add``: a zero fill plus atomics, and under compile a kernel inductor cannot
    fuse); for a permutation every token receives exactly one gradient, so the gather gives the same values."""

    @staticmethod
    def forward(x: torch.Tensor, perm: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, perm)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
        ctx.save_for_backward(inputs[1], inputs[2])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # noqa: ANN001
        perm, inv = ctx.saved_tensors
        return _Permute.apply(grad, inv, perm), None, None


class ScanIndex(nn.Module):
    """A fixed scan of one layer, stored as non-persistent buffers (they follow `.to(device)`
    and stay out of checkpoints).

    ``scan(x)`` reorders (N, T, C) tokens into visiting order; ``unscan`` puts them back.
    """

    def __init__(self, scan: ScanOrder, height: int, width: int, layer: int):
        super().__init__()
        perm = checked_order(scan, height, width, layer)
        self.identity = bool(torch.equal(perm, torch.arange(perm.numel(), device="cpu")))
        self.register_buffer("perm", perm, persistent=False)
        self.register_buffer("inv", inverse_permutation(perm), persistent=False)

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        return x if self._skip() else _Permute.apply(x, self.perm, self.inv)

    def unscan(self, x: torch.Tensor) -> torch.Tensor:
        return x if self._skip() else _Permute.apply(x, self.inv, self.perm)

    def _skip(self) -> bool:
        # compiled code gathers even in identity order, so one compiled block serves every layer (a
        # Python branch here was a recompile per kind of layer); eager code skips the copy
        return not torch.compiler.is_compiling() and self.identity  # in this order: no guard on identity
