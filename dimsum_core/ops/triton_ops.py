"""The Triton kernels of :mod:`dimsum_core.ops.triton_kernels` as ``torch.library`` custom ops with
autograd and shape-only twins, so eager code calls them like any op and ``torch.compile(fullgraph=True)``
traces through them.

The kernel module (and so Triton) is imported inside the op bodies: importing this module is harmless
on a machine without Triton. Both ops take ``(N, d, L)`` sequences, fastest with time contiguous (see
the kernel module), and return contiguous ``(N, d, L)`` tensors.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import Tensor

# Tiles (longest chunk of time T, channel block BD, warps) of the forward and the backward scan, and the
# (time, channel, warps) tile of the conv: chosen on an H200 by `benchmarks/scan.py --sweep`
# (docs/benchmarks.md).
SCAN_FWD = (256, 8, 4)
SCAN_BWD = (128, 4, 1)
CONV = (256, 8, 4)
# EXPERIMENT: the Gluon scan kernels (dimsum_core/ops/gluon_kernels.py), chunk T and warps (BD = 32 x warps);
# Triton's interpreter cannot run Gluon, so there the Triton kernels stay
GLUON_SCAN = (16, 4)
USE_GLUON = os.environ.get("TRITON_INTERPRET") != "1" and os.environ.get("DIMSUM_SCAN_KERNELS", "gluon") == "gluon"


def _time_contiguous(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


@functools.cache
def _multiprocessors(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count if torch.cuda.is_available() else 1


def _block_groups(batch: int, n_blocks: int, warps: int, device: torch.device) -> int:
    """G, the channel blocks one backward program walks in turn: as many as keep ~16 warps per
    multiprocessor busy, since each G fewer programs means G times fewer dB/dC partials to write."""
    warps_wanted = 16 * _multiprocessors(device.index or 0) if device.type == "cuda" else 1
    return max(1, min(n_blocks, (batch * n_blocks * warps) // warps_wanted))


@torch.library.custom_op("dimsum::triton_scan_fwd", mutates_args=())
def _scan_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
              delta_bias: Tensor) -> Tensor:
    from dimsum_core.ops import triton_kernels as k

    batch, dim, length = u.shape
    n = A.shape[1]
    out = torch.empty((batch, dim, length), dtype=u.dtype, device=u.device)
    if USE_GLUON:
        return _gluon_fwd(u, delta, A, B, C, D, z, delta_bias)[0]
    longest, block, warps = SCAN_FWD
    chunk = min(_next_pow2(length), longest)
    k.scan_fwd_kernel[(-(-dim // block), batch)](
        u, delta, z, B, C, A, D, delta_bias, out, length, dim, n,
        *u.stride(), *delta.stride(), *z.stride(), *B.stride(), *C.stride(),
        T=chunk, BD=block, NP=_next_pow2(n), num_warps=warps)
    return out


@_scan_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias):  # noqa: ANN001, ANN202
    return u.new_empty(u.shape)


@torch.library.custom_op("dimsum::triton_scan_bwd", mutates_args=())
def _scan_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
              delta_bias: Tensor, dout: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> gradients of (u, delta, A, B, C, D, z, delta_bias), each in its input's dtype."""
    from dimsum_core.ops import triton_kernels as k

    batch, dim, length = u.shape
    n, np_ = A.shape[1], _next_pow2(A.shape[1])
    if USE_GLUON:
        return _gluon_bwd(u, delta, A, B, C, D, z, delta_bias, None, dout)
    longest, block, warps = SCAN_BWD
    chunk = min(_next_pow2(length), longest)
    n_blocks = -(-dim // block)
    groups = _block_groups(batch, n_blocks, warps, u.device)
    programs = -(-n_blocks // groups)
    f32 = dict(dtype=torch.float32, device=u.device)
    du, ddelta, dz = (torch.empty((batch, dim, length), dtype=x.dtype, device=u.device) for x in (u, delta, z))
    dB_part, dC_part = (torch.zeros((batch, programs, n, length), **f32) for _ in range(2))
    dA_part = torch.empty((batch, dim, n), **f32)
    dD_part, dbias_part = torch.empty((batch, dim), **f32), torch.empty((batch, dim), **f32)
    scratch = torch.empty((batch, programs, -(-length // chunk), block, np_), **f32)
    k.scan_bwd_kernel[(programs, batch)](
        u, delta, z, B, C, A, D, delta_bias, dout, du, ddelta, dz, dB_part, dC_part, dA_part, dD_part,
        dbias_part, scratch, length, dim, n, n_blocks, groups,
        *u.stride(), *delta.stride(), *z.stride(), *B.stride(), *C.stride(), *dout.stride(),
        T=chunk, BD=block, NP=np_, num_warps=warps)
    dB, dC = dB_part.sum(1).to(B.dtype), dC_part.sum(1).to(C.dtype)
    return (du, ddelta, dA_part.sum(0).to(A.dtype), dB, dC, dD_part.sum(0).to(D.dtype), dz,
            dbias_part.sum(0).to(delta_bias.dtype))


def _gluon_fwd(u, delta, A, B, C, D, z, delta_bias):  # noqa: ANN001, ANN202
    """(out, the state entering each chunk) from the Gluon forward."""
    from dimsum_core.ops import gluon_kernels as g

    batch, dim, length = u.shape
    n = A.shape[1]
    chunk, warps = GLUON_SCAN
    block = 32 * warps
    blocks = -(-dim // block)
    out = torch.empty((batch, dim, length), dtype=u.dtype, device=u.device)
    states = torch.empty((batch, blocks, -(-length // chunk), n, block), dtype=torch.float32, device=u.device)
    g.scan_fwd_kernel[(blocks, batch)](
        u, delta, z, B, C, A, D, delta_bias, out, states, length, dim, n,
        *u.stride(), *delta.stride(), *z.stride(), *B.stride(), *C.stride(),
        T=chunk, BD=block, EVEN=length % chunk == 0, num_warps=warps)
    return out, states


def _gluon_bwd(u, delta, A, B, C, D, z, delta_bias, states, dout):  # noqa: ANN001, ANN202
    """The Gluon backward; ``states`` from :func:`_gluon_fwd`, or None to recompute them."""
    from dimsum_core.ops import gluon_kernels as g

    batch, dim, length = u.shape
    n = A.shape[1]
    chunk, warps = GLUON_SCAN
    block = 32 * warps
    blocks = -(-dim // block)
    f32 = dict(dtype=torch.float32, device=u.device)
    du, ddelta, dz = (torch.empty((batch, dim, length), dtype=x.dtype, device=u.device) for x in (u, delta, z))
    dB_part, dC_part = (torch.empty((batch, blocks, n, length), **f32) for _ in range(2))
    dA_part = torch.empty((batch, dim, n), **f32)
    dD_part, dbias_part = torch.empty((batch, dim), **f32), torch.empty((batch, dim), **f32)
    scratch = states if states is not None else torch.empty((batch, blocks, -(-length // chunk), n, block), **f32)
    carry = torch.empty((batch, blocks, n, block), **f32)
    g.scan_bwd_kernel[(blocks, batch)](
        u, delta, z, B, C, A, D, delta_bias, dout, du, ddelta, dz, dB_part, dC_part, dA_part, dD_part,
        dbias_part, scratch, carry, length, dim, n,
        *u.stride(), *delta.stride(), *z.stride(), *B.stride(), *C.stride(), *dout.stride(),
        T=chunk, BD=block, EVEN=length % chunk == 0, SAVED=states is not None, num_warps=warps)
    dB, dC = dB_part.sum(1).to(B.dtype), dC_part.sum(1).to(C.dtype)
    return (du, ddelta, dA_part.sum(0).to(A.dtype), dB, dC, dD_part.sum(0).to(D.dtype), dz,
            dbias_part.sum(0).to(delta_bias.dtype))


@torch.library.custom_op("dimsum::gluon_scan_fwd", mutates_args=())
def _gluon_scan_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                    delta_bias: Tensor) -> tuple[Tensor, Tensor]:
    """EXPERIMENT: the forward that keeps the chunk-entering states for its backward."""
    return _gluon_fwd(u, delta, A, B, C, D, z, delta_bias)


@_gluon_scan_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias):  # noqa: ANN001, ANN202
    batch, dim, length = u.shape
    chunk, warps = GLUON_SCAN
    block = 32 * warps
    return u.new_empty(u.shape), u.new_empty((batch, -(-dim // block), -(-length // chunk), A.shape[1], block),
                                             dtype=torch.float32)


@torch.library.custom_op("dimsum::gluon_scan_bwd", mutates_args=())
def _gluon_scan_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                    delta_bias: Tensor, states: Tensor,
                    dout: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return _gluon_bwd(u, delta, A, B, C, D, z, delta_bias, states, dout)


@_gluon_scan_bwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, states, dout):  # noqa: ANN001, ANN202
    return tuple(torch.empty_like(x, memory_format=torch.contiguous_format) for x in (u, delta, A, B, C, D, z, delta_bias))


def _gluon_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    ctx.save_for_backward(*inputs, output[1])


def _gluon_backward(ctx, dout, _dstates):  # noqa: ANN001, ANN202
    return torch.ops.dimsum.gluon_scan_bwd(*ctx.saved_tensors, _time_contiguous(dout))


_gluon_scan_fwd.register_autograd(_gluon_backward, setup_context=_gluon_setup)


@_scan_bwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, dout):  # noqa: ANN001, ANN202
    return tuple(torch.empty_like(x, memory_format=torch.contiguous_format) for x in (u, delta, A, B, C, D, z, delta_bias))


def _scan_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    ctx.save_for_backward(*inputs)


def _scan_backward(ctx, dout):  # noqa: ANN001, ANN202
    return torch.ops.dimsum.triton_scan_bwd(*ctx.saved_tensors, _time_contiguous(dout))


_scan_fwd.register_autograd(_scan_backward, setup_context=_scan_setup)


def selective_scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                          delta_bias: Tensor) -> Tensor:
    """``out = y · silu(z)`` of the selective scan with ``delta = softplus(delta + delta_bias)``:
    ``selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)`` of mamba-ssm.

    u, delta, z: (N, d, L); B, C: (N, n, L), one group shared by all channels; A: (d, n); D,
    delta_bias: (d,). Any strides (time-contiguous is fastest); the parameters are used in float32.
    Returns (N, d, L) contiguous in u's dtype.
    """
    A, D, delta_bias = (p.float().contiguous() for p in (A, D, delta_bias))
    if USE_GLUON:
        return torch.ops.dimsum.gluon_scan_fwd(u, delta, A, B, C, D, z, delta_bias)[0]
    return torch.ops.dimsum.triton_scan_fwd(u, delta, A, B, C, D, z, delta_bias)


@torch.library.custom_op("dimsum::triton_conv_silu_fwd", mutates_args=())
def _conv_fwd(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    from dimsum_core.ops import triton_kernels as k

    batch, dim, length = x.shape
    out = torch.empty((batch, dim, length), dtype=x.dtype, device=x.device)
    steps, channels, warps = CONV
    k.conv_fwd_kernel[(-(-length // steps), -(-dim // channels), batch)](
        x, weight, bias, out, length, dim, *x.stride(), K=weight.shape[1], BC=channels, BT=steps, num_warps=warps)
    return out


@_conv_fwd.register_fake
def _(x, weight, bias):  # noqa: ANN001, ANN202
    return x.new_empty(x.shape)


@torch.library.custom_op("dimsum::triton_conv_silu_bwd", mutates_args=())
def _conv_bwd(x: Tensor, weight: Tensor, bias: Tensor, dout: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    from dimsum_core.ops import triton_kernels as k

    batch, dim, length = x.shape
    steps, channels, warps = CONV
    tiles = -(-length // steps)
    dx = torch.empty((batch, dim, length), dtype=x.dtype, device=x.device)
    dw = torch.empty((batch * tiles, dim, weight.shape[1]), dtype=torch.float32, device=x.device)
    db = torch.empty((batch * tiles, dim), dtype=torch.float32, device=x.device)
    k.conv_bwd_kernel[(tiles, -(-dim // channels), batch)](
        x, weight, bias, dout, dx, dw, db, length, dim, *x.stride(), *dout.stride(),
        K=weight.shape[1], BC=channels, BT=steps, num_warps=warps)
    return dx, dw.sum(0).to(weight.dtype), db.sum(0).to(bias.dtype)


@_conv_bwd.register_fake
def _(x, weight, bias, dout):  # noqa: ANN001, ANN202
    return torch.empty_like(x, memory_format=torch.contiguous_format), torch.empty_like(weight), torch.empty_like(bias)


def _conv_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    ctx.save_for_backward(*inputs)


def _conv_backward(ctx, dout):  # noqa: ANN001, ANN202
    return torch.ops.dimsum.triton_conv_silu_bwd(*ctx.saved_tensors, _time_contiguous(dout))


_conv_fwd.register_autograd(_conv_backward, setup_context=_conv_setup)


def causal_conv1d_silu_triton(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``silu(conv1d(x))`` of ``nn.Conv1d(C, C, K, groups=C, padding=K-1)`` cropped to the first L steps,
    on x (N, C, L), any strides (time-contiguous is fastest); weight (C, 1, K), nn.Conv1d's layout, used
    in float32. Returns (N, C, L) contiguous in x's dtype."""
    w = weight[:, 0, :].float().contiguous()
    b = torch.zeros(w.shape[0], device=x.device) if bias is None else bias.float().contiguous()
    return torch.ops.dimsum.triton_conv_silu_fwd(x, w, b)
