"""mamba-ssm's selective-scan CUDA kernels as ``torch.library`` custom ops, so ``torch.compile`` traces
through a Mamba mixer instead of breaking the graph at it.

mamba-ssm calls its kernels from an ``autograd.Function`` through a pybind module that dynamo cannot
see into, so a compiled DiMSUM broke its graph at every mixer (measured: compiled DiMSUM-L/2 training
ran slower than eager, docs/benchmarks.md). Here the forward and backward kernels are two opaque ops,
each with a shape-only ("fake") twin for tracing, and autograd is registered on the forward op.
:func:`selective_scan_op` takes ``selective_scan_fn``'s arguments (with ``D``, ``z`` and
``delta_bias`` given, as the Mamba mixer always gives them) and returns the same result.

The kernels are imported inside the op bodies, so importing this module on a CPU machine is harmless.
"""

from __future__ import annotations

import torch
from torch import Tensor

_CHUNK = 2048  # the kernel keeps one state per 2048 steps for the backward pass


@torch.library.custom_op("dimsum::selective_scan_fwd", mutates_args=())
def _scan_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
              delta_bias: Tensor, delta_softplus: bool) -> tuple[Tensor, Tensor, Tensor]:
    """-> (out before the gate, chunk states for the backward, out * silu(z))."""
    import selective_scan_cuda

    out, states, out_z = selective_scan_cuda.fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return out, states, out_z


@_scan_fwd.register_fake
def _scan_fwd_fake(u, delta, A, B, C, D, z, delta_bias, delta_softplus):  # noqa: ANN001, ANN202
    batch, dim, length = u.shape
    states = u.new_empty((batch, dim, -(-length // _CHUNK), 2 * A.shape[1]), dtype=A.dtype)
    return torch.empty_like(delta), states, torch.empty_like(z)


@torch.library.custom_op("dimsum::selective_scan_bwd", mutates_args=())
def _scan_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
              delta_bias: Tensor, dout: Tensor, states: Tensor, out: Tensor,
              delta_softplus: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> gradients of (u, delta, A, B, C, D, z, delta_bias), each in its input's dtype."""
    import selective_scan_cuda

    grads = selective_scan_cuda.bwd(u, delta, A, B, C, D, z, delta_bias, dout, states, out, None,
                                    delta_softplus, False)
    du, ddelta, dA, dB, dC, dD, ddelta_bias, dz = grads[:8]
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    # the kernel accumulates dB, dC (and the float32 parameters) in float32; cast like autograd would
    return tuple(g.to(x.dtype) for g, x in zip((du, ddelta, dA, dB, dC, dD, dz, ddelta_bias), inputs, strict=True))


@_scan_bwd.register_fake
def _scan_bwd_fake(u, delta, A, B, C, D, z, delta_bias, dout, states, out, delta_softplus):  # noqa: ANN001, ANN202
    return tuple(torch.empty_like(x) for x in (u, delta, A, B, C, D, z, delta_bias))


def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001
    u, delta, A, B, C, D, z, delta_bias, delta_softplus = inputs
    out, states, _ = output
    ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states, out)
    ctx.delta_softplus = delta_softplus


def _backward(ctx, _dout, _dstates, dout_z):  # noqa: ANN001, ANN202
    u, delta, A, B, C, D, z, delta_bias, states, out = ctx.saved_tensors
    grads = torch.ops.dimsum.selective_scan_bwd(u, delta, A, B, C, D, z, delta_bias, dout_z.contiguous(),
                                                states, out, ctx.delta_softplus)
    return (*grads, None)


_scan_fwd.register_autograd(_backward, setup_context=_setup_context)


def selective_scan_op(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                      delta_bias: Tensor, delta_softplus: bool = False) -> Tensor:
    """``selective_scan_fn(u, delta, A, B, C, D, z=z, delta_bias=..., delta_softplus=...)`` as custom ops.

    u, delta, z: (N, d, L); A: (d, n) float32; B, C: (N, n, L); D, delta_bias: (d,) float32.
    Returns out * silu(z): (N, d, L) in u's dtype.
    """
    B, C = B.unsqueeze(1).contiguous(), C.unsqueeze(1).contiguous()  # one group: (N, 1, n, L)
    return torch.ops.dimsum.selective_scan_fwd(u.contiguous(), delta.contiguous(), A.contiguous(), B, C,
                                               D.contiguous(), z.contiguous(), delta_bias.contiguous(),
                                               delta_softplus)[2]
