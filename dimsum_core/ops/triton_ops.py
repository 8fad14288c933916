"""dimsum's GPU kernels as ``torch.library`` custom ops with autograd and shape-only twins, so eager code
calls them like any op and ``torch.compile(fullgraph=True)`` traces through them.

Two implementations of the selective scan: the Gluon kernels (:mod:`dimsum_core.ops.gluon_kernels`, time
held in each thread, the forward's chunk states handed to the backward), which train wherever Triton >=
3.6 compiles for a GPU; and the Triton kernels (:mod:`dimsum_core.ops.triton_kernels`), for inference, for
older Triton and for Triton's interpreter, which runs the CPU tests and cannot run Gluon. The conv has one.

The kernel modules (and so Triton) are imported inside the op bodies: importing this module is harmless
on a machine without Triton. Both ops take ``(N, d, L)`` sequences, fastest with time contiguous (see
the kernel module), and return contiguous ``(N, d, L)`` tensors, but for the Gluon forward's output, which is
stored channels-last for the mixer's out_proj (:func:`_channels_last`).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable

import torch
from torch import Tensor

# Tiles (longest chunk of time T, channel block BD, warps) of the forward and the backward scan, and the
# (time, channel, warps) tile of the conv: chosen on an H200 by `benchmarks/scan.py --sweep`
# (docs/benchmarks.md).
SCAN_FWD = (256, 8, 4)
SCAN_BWD = (128, 4, 1)
CONV = (256, 8, 4)
# The Gluon scan's tile (T steps in each thread, warps; BD = 32 x warps channels), chosen on an H200 by
# the fastest forward + backward pair at dimsum's shapes (docs/benchmarks.md).
GLUON_SCAN = (16, 1)
# States the Gluon forward's state loop takes an iteration (the largest of 4, 2, 1 dividing d_state): 8-13%
# faster at every dimsum shape on an H200, bitwise equal. The backward stays at one: unrolled it was slower.
GLUON_FWD_UNROLL = 4
_SCAN_KERNELS: str | None = None  # "gluon" or "triton", decided on first use


@torch.compiler.assume_constant_result
def scan_kernels() -> str:
    """Which scan kernels :func:`selective_scan_triton` runs: "gluon", or "triton" under Triton's
    interpreter and before Triton 3.6 (the Gluon API the kernels are written against)."""
    global _SCAN_KERNELS
    if _SCAN_KERNELS is None:
        _SCAN_KERNELS = "triton"
        if os.environ.get("TRITON_INTERPRET") != "1":
            try:
                import triton
                from triton.experimental import gluon  # noqa: F401
            except ImportError:
                pass
            else:
                if tuple(int(x) for x in triton.__version__.split(".")[:2]) >= (3, 6):
                    _SCAN_KERNELS = "gluon"
    return _SCAN_KERNELS


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
    longest, block, warps = SCAN_BWD
    chunk = min(_next_pow2(length), longest)
    n_blocks = -(-dim // block)
    groups = _block_groups(batch, n_blocks, warps, u.device)
    programs = -(-n_blocks // groups)
    grads = _grad_buffers(u, delta, z, n, programs, torch.zeros)  # a program adds its blocks' dB, dC
    scratch = u.new_empty((batch, programs, -(-length // chunk), block, np_), dtype=torch.float32)
    k.scan_bwd_kernel[(programs, batch)](
        u, delta, z, B, C, A, D, delta_bias, dout, *grads, scratch, length, dim, n, n_blocks, groups,
        *u.stride(), *delta.stride(), *z.stride(), *B.stride(), *C.stride(), *dout.stride(),
        T=chunk, BD=block, NP=np_, num_warps=warps)
    return _summed(grads, A, B, C, D, delta_bias)


def _grad_buffers(u: Tensor, delta: Tensor, z: Tensor, n: int, programs: int,
                  partial: Callable[..., Tensor]) -> tuple[Tensor, ...]:
    """What a backward kernel writes: du, ddelta, dz in their inputs' dtypes; float32 partials dB, dC
    (N, programs, n, L) from ``partial``, dA (N, d, n), dD and dbias (N, d)."""
    return (*_input_grad_buffers(u, delta, z), *_partial_buffers(u, n, programs, partial, 1))


def _input_grad_buffers(u: Tensor, delta: Tensor, z: Tensor) -> tuple[Tensor, ...]:
    return tuple(torch.empty(u.shape, dtype=x.dtype, device=u.device) for x in (u, delta, z))


def _partial_buffers(u: Tensor, n: int, programs: int, partial: Callable[..., Tensor],
                     branches: int) -> tuple[Tensor, ...]:
    """The float32 partials of :func:`_grad_buffers` for ``branches`` scans of u's shape, stacked on the batch."""
    batch, dim, length = u.shape
    batch *= branches
    f32 = dict(dtype=torch.float32, device=u.device)
    return (*(partial((batch, programs, n, length), **f32) for _ in range(2)),
            torch.empty((batch, dim, n), **f32), torch.empty((batch, dim), **f32), torch.empty((batch, dim), **f32))


def _summed(grads: tuple[Tensor, ...], A: Tensor, B: Tensor, C: Tensor, D: Tensor,
            delta_bias: Tensor) -> tuple[Tensor, ...]:
    """The gradients of (u, delta, A, B, C, D, z, delta_bias): partials summed, in their inputs' dtypes."""
    du, ddelta, dz, dB, dC, dA, dD, dbias = grads
    return (du, ddelta, dA.sum(0).to(A.dtype), dB.sum(1).to(B.dtype), dC.sum(1).to(C.dtype),
            dD.sum(0).to(D.dtype), dz, dbias.sum(0).to(delta_bias.dtype))


@_scan_bwd.register_fake
def _scan_bwd_fake(u, delta, A, B, C, D, z, delta_bias, *states_and_dout):  # noqa: ANN001, ANN202
    return tuple(torch.empty_like(x, memory_format=torch.contiguous_format) for x in (u, delta, A, B, C, D, z, delta_bias))


def _scan_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    ctx.save_for_backward(*inputs)


def _scan_backward(ctx, dout):  # noqa: ANN001, ANN202
    return torch.ops.dimsum.triton_scan_bwd(*ctx.saved_tensors, _time_contiguous(dout))


_scan_fwd.register_autograd(_scan_backward, setup_context=_scan_setup)


# -- the Gluon pair, for one branch or a DiM block's two in one launch --------------------------------------
# A launch runs one or two "branches" (the 8 scan inputs each: same shapes and dtypes, their own tensors) over
# a grid of batch x branches; the second branch's tensors go to the kernels' *2 pointers, in the first's
# strides. What the caller sees is per branch; the chunk states and float32 partials are one (2N, ...) buffer.

Branch = tuple[Tensor, ...]  # (u, delta, A, B, C, D, z, delta_bias)
_BothGrads = tuple[(Tensor,) * 16]  # an op's schema names every returned tensor


def _strided_like(x: Tensor, like: Tensor) -> Tensor:
    """x in like's strides (the kernels read both branches at one set of strides): a copy only if they differ."""
    return x if x.stride() == like.stride() else torch.empty_strided(x.shape, like.stride(), dtype=x.dtype,
                                                                      device=x.device).copy_(x)


_KERNEL_ORDER = (0, 1, 6, 3, 4, 2, 5, 7)  # a branch's u, delta, z, B, C, A, D, bias: the kernels' parameter order


def _kernel_pointers(branches: list[Branch]) -> list[Tensor]:
    """The scan inputs of the first branch in the kernels' order, then the second's (the first's again for a
    one-branch launch), the second's in the first's strides."""
    first, second = branches[0], branches[-1]
    return [first[i] for i in _KERNEL_ORDER] + [_strided_like(second[i], first[i]) for i in _KERNEL_ORDER]


def _gluon_forward(branches: list[Branch]) -> tuple[list[Tensor], Tensor]:
    """-> (each branch's out, the float32 state entering each chunk after the first: (N x branches, blocks,
    chunks - 1, n, BD), for the backward)."""
    from dimsum_core.ops import gluon_kernels as g

    first = branches[0]
    u, A = first[0], first[2]
    batch, dim, length = u.shape
    chunk, warps = GLUON_SCAN
    outs = [_channels_last(u) for _ in branches]
    states = _gluon_states(u, A, len(branches))
    pointers = _kernel_pointers(branches)
    g.scan_fwd_kernel[(states.shape[1], batch * len(branches))](
        *pointers[:8], outs[0], *pointers[8:], outs[-1], states, batch, length, dim, A.shape[1], *outs[0].stride(),
        *u.stride(), *first[1].stride(), *first[6].stride(), *first[3].stride(), *first[4].stride(),
        T=chunk, BD=32 * warps, EVEN=length % chunk == 0, U=math.gcd(A.shape[1], GLUON_FWD_UNROLL), num_warps=warps)
    return outs, states


def _gluon_backward_launch(branches: list[Branch], states: Tensor, douts: list[Tensor]) -> list[Tensor]:
    """-> each branch's gradients of (u, delta, A, B, C, D, z, delta_bias) in turn, in the inputs' dtypes."""
    from dimsum_core.ops import gluon_kernels as g

    first = branches[0]
    u, A = first[0], first[2]
    batch, dim, length = u.shape
    n = A.shape[1]
    chunk, warps = GLUON_SCAN
    blocks = states.shape[1]
    k = len(branches)
    # du, ddelta, dz per branch; the float32 partials of dB, dC, dA, dD, dbias for all branches at once
    per_branch = [_input_grad_buffers(br[0], br[1], br[6]) for br in branches]
    joint = _partial_buffers(u, n, blocks, torch.empty, k)
    carry = u.new_empty((k * batch, blocks, n, 32 * warps), dtype=torch.float32)
    pointers = _kernel_pointers(branches)
    dout = douts[0]
    g.scan_bwd_kernel[(blocks, k * batch)](
        *pointers[:8], dout, *per_branch[0], *pointers[8:], _strided_like(douts[-1], dout), *per_branch[-1],
        *joint, states, carry, batch, length, dim, n,
        *u.stride(), *first[1].stride(), *first[6].stride(), *first[3].stride(), *first[4].stride(), *dout.stride(),
        T=chunk, BD=32 * warps, EVEN=length % chunk == 0, num_warps=warps)
    grads = []
    for i, br in enumerate(branches):
        part = slice(i * batch, (i + 1) * batch)
        grads += _summed((*per_branch[i], *(x[part] for x in joint)), *(br[j] for j in (2, 3, 4, 5, 7)))
    return grads


@torch.library.custom_op("dimsum::gluon_scan_fwd", mutates_args=())
def _gluon_scan_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                    delta_bias: Tensor) -> tuple[Tensor, Tensor]:
    """-> (out, the float32 state entering each chunk after the first: (N, blocks, chunks - 1, n, BD)),
    the second for the backward."""
    (out,), states = _gluon_forward([(u, delta, A, B, C, D, z, delta_bias)])
    return out, states


@torch.library.custom_op("dimsum::gluon_scan_both_fwd", mutates_args=())
def _gluon_scan_both_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                         delta_bias: Tensor, u2: Tensor, delta2: Tensor, A2: Tensor, B2: Tensor, C2: Tensor,
                         D2: Tensor, z2: Tensor, delta_bias2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Two scans of the same shapes as one launch -> (out, out2, both's chunk states: (2N, ...))."""
    (out, out2), states = _gluon_forward([(u, delta, A, B, C, D, z, delta_bias),
                                          (u2, delta2, A2, B2, C2, D2, z2, delta_bias2)])
    return out, out2, states


def _channels_last(u: Tensor) -> Tensor:
    """An (N, d, L) output stored as (N, L, d): its transpose, the mixer's out_proj input, is then rows already
    (H200, compiled dimsum-L/2 step: the transpose copy this removes was one kernel of ~17 us a scan)."""
    batch, dim, length = u.shape
    return u.new_empty((batch, length, dim)).transpose(1, 2)


def _gluon_states(u: Tensor, A: Tensor, branches: int = 1) -> Tensor:
    batch, dim, length = u.shape
    chunk, warps = GLUON_SCAN
    block = 32 * warps
    return u.new_empty((branches * batch, -(-dim // block), -(-length // chunk) - 1, A.shape[1], block),
                       dtype=torch.float32)


@_gluon_scan_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias):  # noqa: ANN001, ANN202
    return _channels_last(u), _gluon_states(u, A)


@_gluon_scan_both_fwd.register_fake
def _(u, delta, A, B, C, D, z, delta_bias, *second):  # noqa: ANN001, ANN202
    return _channels_last(u), _channels_last(second[0]), _gluon_states(u, A, 2)


@torch.library.custom_op("dimsum::gluon_scan_bwd", mutates_args=())
def _gluon_scan_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                    delta_bias: Tensor, states: Tensor,
                    dout: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """-> gradients of (u, delta, A, B, C, D, z, delta_bias), each in its input's dtype."""
    return tuple(_gluon_backward_launch([(u, delta, A, B, C, D, z, delta_bias)], states, [dout]))


_gluon_scan_bwd.register_fake(_scan_bwd_fake)


@torch.library.custom_op("dimsum::gluon_scan_both_bwd", mutates_args=())
def _gluon_scan_both_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                         delta_bias: Tensor, u2: Tensor, delta2: Tensor, A2: Tensor, B2: Tensor, C2: Tensor,
                         D2: Tensor, z2: Tensor, delta_bias2: Tensor, states: Tensor, dout: Tensor,
                         dout2: Tensor) -> _BothGrads:
    """-> the gradients of both scans' inputs, in gluon_scan_both_fwd's order."""
    return tuple(_gluon_backward_launch([(u, delta, A, B, C, D, z, delta_bias),
                                         (u2, delta2, A2, B2, C2, D2, z2, delta_bias2)], states, [dout, dout2]))


@_gluon_scan_both_bwd.register_fake
def _(*args):  # noqa: ANN002, ANN202
    return _scan_bwd_fake(*args[:8]) + _scan_bwd_fake(*args[8:16])


def _gluon_setup(ctx, inputs, output) -> None:  # noqa: ANN001
    ctx.save_for_backward(*inputs, output[-1])


def _gluon_backward(ctx, dout, _dstates):  # noqa: ANN001, ANN202
    # dout as it comes (out_proj's backward gives it channels-last): a lane reads a channel, so that layout
    # is coalesced too, and the copy to time-contiguous cost ~100 us a call at L/2 256 px (H200)
    return torch.ops.dimsum.gluon_scan_bwd(*ctx.saved_tensors, dout)


def _gluon_both_backward(ctx, dout, dout2, _dstates):  # noqa: ANN001, ANN202
    return torch.ops.dimsum.gluon_scan_both_bwd(*ctx.saved_tensors, dout, dout2)


_gluon_scan_fwd.register_autograd(_gluon_backward, setup_context=_gluon_setup)
_gluon_scan_both_fwd.register_autograd(_gluon_both_backward, setup_context=_gluon_setup)


def selective_scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                          delta_bias: Tensor) -> Tensor:
    """``out = y · silu(z)`` of the selective scan with ``delta = softplus(delta + delta_bias)``:
    ``selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)`` of mamba-ssm.

    u, delta, z: (N, d, L); B, C: (N, n, L), one group shared by all channels; A: (d, n); D,
    delta_bias: (d,). Any strides (time-contiguous is fastest); the parameters are used in float32.
    Returns (N, d, L) contiguous in u's dtype.
    """
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    if gluon_pair(*inputs):
        return torch.ops.dimsum.gluon_scan_fwd(*_kernel_parameters(inputs))[0]
    return torch.ops.dimsum.triton_scan_fwd(*_kernel_parameters(inputs))


def _kernel_parameters(branch: Branch) -> Branch:
    """A scan's inputs with its parameters (A, D, delta_bias) as the kernels read them: float32, contiguous."""
    u, delta, A, B, C, D, z, delta_bias = branch
    A, D, delta_bias = (p.float().contiguous() for p in (A, D, delta_bias))
    return u, delta, A, B, C, D, z, delta_bias


def selective_scan_triton_both(first: Branch, second: Branch) -> tuple[Tensor, Tensor]:
    """:func:`selective_scan_triton` of two independent scans, e.g. a DiM block's spatial and wavelet
    branches: where the Gluon pair runs and the two have the same shapes and dtypes, as one launch of twice the
    batch (fills the GPU where one scan's grid does not: H200, docs/benchmarks.md); else one after the other."""
    same = all(a.shape == b.shape and a.dtype == b.dtype for a, b in zip(first, second, strict=True))
    if not (same and gluon_pair(*first, *second)):
        return selective_scan_triton(*first), selective_scan_triton(*second)
    out, out2, _ = torch.ops.dimsum.gluon_scan_both_fwd(*_kernel_parameters(first), *_kernel_parameters(second))
    return out, out2


def gluon_pair(*inputs: Tensor) -> bool:
    """Whether a scan runs as the Gluon forward + backward pair: where Gluon runs and a backward will
    follow. Without one, the Triton forward runs: it spreads a call over more threads than the Gluon
    forward (one thread a channel walks all of L), which matters at small batch (sampling), and it keeps
    no states (docs/benchmarks.md)."""
    return scan_kernels() == "gluon" and torch.is_grad_enabled() and any(t.requires_grad for t in inputs)


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
    grid = (tiles, -(-dim // channels), batch)
    dp = torch.empty((batch, dim, length), dtype=torch.float32, device=x.device)
    dw = torch.empty((batch * tiles, dim, weight.shape[1]), dtype=torch.float32, device=x.device)
    db = torch.empty((batch * tiles, dim), dtype=torch.float32, device=x.device)
    k.conv_bwd_dp_kernel[grid](x, weight, bias, dout, dp, dw, db, length, dim, *x.stride(), *dout.stride(),
                               K=weight.shape[1], BC=channels, BT=steps, num_warps=warps)
    dx = torch.empty((batch, dim, length), dtype=x.dtype, device=x.device)
    k.conv_bwd_dx_kernel[grid](dp, weight, dx, length, dim, K=weight.shape[1], BC=channels, BT=steps,
                               num_warps=warps)
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
