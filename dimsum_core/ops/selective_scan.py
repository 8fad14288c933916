"""The Mamba-1 selective scan in pure PyTorch, and the float64 step-by-step reference it is tested against.

Both take mamba-ssm's ``selective_scan_fn`` arguments, so one call site serves every backend. Per batch
row n, channel d and state s::

    h_t = exp(delta_t[d] * A[d, s]) * h_{t-1} + delta_t[d] * B_t[s] * u_t[d]      (h_{-1} = 0)
    y_t = sum_s C_t[s] * h_t[s] + D[d] * u_t[d]          out = y * silu(z)

:func:`selective_scan` is a chunked scan with a hand-written backward (the reverse-time adjoint scan).
The sequence is cut into chunks of Q steps; each Python step advances *all* chunks at once, so a
length-L scan costs about 2·Q + L/Q tensor steps per direction, each on a cache-sized slice. Per
direction it exponentiates once per element: pass 1 writes the decays ``exp(delta·A)`` into the state
buffer while it runs every chunk from a zero state, a short loop carries the true state from chunk to
chunk, and pass 2 overwrites each decay with the true state. Every exponent is ``delta·A`` or a sum of
them, never positive for ``delta >= 0`` and ``A <= 0``, so nothing overflows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from dimsum_core.nn.precision import autocast_off


def selective_scan_reference(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """The selective scan as a plain loop over time, computed in float64.

    u: (N, d_inner, L)        delta: (N, d_inner, L)      A: (d_inner, d_state)
    B: (N, d_state, L)        C: (N, d_state, L)          D: (d_inner,) or None
    z: (N, d_inner, L) or None                            delta_bias: (d_inner,) or None
    Any float dtype in; every operation runs in float64; returns out (N, d_inner, L) in u's dtype.
    ``delta_bias`` is added before the optional softplus, as in mamba-ssm.
    """
    dtype_in = u.dtype
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.double()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = u.new_zeros(u.shape[0], A.shape[0], A.shape[1])  # (N, d_inner, d_state)
    ys = []
    for delta_t, u_t, B_t, C_t in zip(delta.unbind(-1), u.unbind(-1), B.unbind(-1), C.unbind(-1), strict=True):
        h = torch.exp(delta_t[..., None] * A) * h + (delta_t * u_t)[..., None] * B_t[:, None, :]
        ys.append((h * C_t[:, None, :]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.double()[:, None]
    if z is not None:
        y = y * F.silu(z.double())
    return y.to(dtype_in)


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    *,
    chunk_length: int | None = None,
) -> Tensor:
    """The selective scan, vectorised (same arguments and shapes as :func:`selective_scan_reference`).

    Runs in float32 (float64 when ``u`` is float64), with autocast off, whatever the input dtypes, and
    returns ``out`` in u's dtype, like mamba-ssm's kernel. ``chunk_length`` (Q) defaults to about
    √L, which balances the 2·Q in-chunk steps against the L/Q chunk-carry steps.
    """
    if B.dim() != 3 or C.dim() != 3:
        raise ValueError(f"B and C must be input-dependent, of shape (N, d_state, L) (one group); got "
                         f"{tuple(B.shape)} and {tuple(C.shape)}")
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    length = u.shape[-1]
    chunk = chunk_length if chunk_length is not None else _default_chunk_length(length)
    if chunk < 1:
        raise ValueError(f"chunk_length must be >= 1, got {chunk}")
    with autocast_off(u.device.type):
        u_, delta_ = u.to(dtype), delta.to(dtype)
        if delta_bias is not None:
            delta_ = delta_ + delta_bias.to(dtype)[:, None]
        if delta_softplus:
            delta_ = F.softplus(delta_)
        y = _ChunkedScan.apply(u_, delta_, A.to(dtype), B.to(dtype), C.to(dtype), min(chunk, length))
        if D is not None:
            y = y + u_ * D.to(dtype)[:, None]
        if z is not None:
            y = y * F.silu(z.to(dtype))
    return y.to(u.dtype)


def _default_chunk_length(length: int) -> int:
    """⌈√L⌉ (16 for L = 256): measured within noise of the best on a 2-core CPU for L = 256."""
    return math.isqrt(length - 1) + 1 if length > 1 else 1


def _to_chunks(t: Tensor, chunk: int) -> Tensor:
    """(N, C, L), any strides -> (Q, K, N, C) contiguous, step t = k·Q + q, zero-padded at the end.

    Cheapest when t's memory is (N, L, C) (then each copied row is C contiguous values)."""
    n, c, length = t.shape
    full, rest = divmod(length, chunk)
    out = t.new_empty(chunk, full + (rest > 0), n, c)
    if full:
        out[:, :full].copy_(t[..., : full * chunk].unflatten(-1, (full, chunk)).permute(3, 2, 0, 1))
    if rest:
        out[:rest, full].copy_(t[..., full * chunk :].permute(2, 0, 1))
        out[rest:, full].zero_()
    return out


def _from_chunks(t: Tensor, length: int, time_major: bool) -> Tensor:
    """(Q, K, N, C) -> (N, C, L), laid out in memory as (N, L, C) if ``time_major`` else (N, C, L)
    (match the layout of the tensor this one meets next: mixed layouts make elementwise ops slow)."""
    chunk, num_chunks, n, c = t.shape
    if time_major:
        return t.permute(2, 1, 0, 3).reshape(n, num_chunks * chunk, c)[:, :length].transpose(1, 2)
    return t.permute(2, 3, 1, 0).reshape(n, c, num_chunks * chunk)[..., :length].contiguous()


def _time_major(t: Tensor) -> bool:
    """Whether an (N, C, L) tensor is stored as (N, L, C)."""
    return t.stride(-2) < t.stride(-1)


def _next_step(t: Tensor) -> Tensor:
    """Chunked (Q, K, ...) tensor of step t -> the same of step t+1 (zero after the last step)."""
    out = torch.empty_like(t)
    out[:-1] = t[1:]
    out[-1, :-1] = t[0, 1:]
    out[-1, -1] = 0
    return out


def _states(delta: Tensor, At2: Tensor, w: Tensor, V: Tensor, reverse: bool, out: list[Tensor]
            ) -> Iterator[tuple[int, Tensor]]:
    """Yields ``(q, h[q])`` for every in-chunk step q, the states of all K chunks at once, where
    ``h_t = exp(delta_t · A) h_prev + w_t ⊗ V_t`` from a zero state; ``prev`` is t-1, or t+1 when
    ``reverse``. delta, w: (Q, K, N, D); V: (Q, K, N, S); At2: (S, D) = Aᵀ·log2(e), because exp2 is
    2-3x cheaper than exp on CPU and the decays are most of the work; out: Q tensors (K, N, S, D)
    that receive the states (valid once the generator is exhausted). One tensor per step rather than
    one big one: allocations of a few MB are recycled by malloc, a fresh 50 MB one page-faults."""
    chunk, num_chunks = delta.shape[:2]
    steps = range(chunk - 1, -1, -1) if reverse else range(chunk)
    # Pass 1: decays into `out`; `run` advances every chunk from a zero state to its far end.
    run = torch.zeros_like(out[0])  # (K, N, S, D)
    for q in steps:
        decay = torch.mul(delta[q].unsqueeze(-2), At2, out=out[q]).exp2_()
        run.mul_(decay).addcmul_(w[q].unsqueeze(-2), V[q].unsqueeze(-1))
    # Carry: the true state entering chunk k is the neighbour's zero-start end state plus the state
    # that entered the neighbour, decayed across its whole length.
    whole_chunk_decay = torch.exp2(delta.sum(0).unsqueeze(-2) * At2)  # (K, N, S, D)
    entering = torch.zeros_like(run)
    for k in range(num_chunks - 2, -1, -1) if reverse else range(1, num_chunks):
        j = k + 1 if reverse else k - 1
        torch.addcmul(run[j], whole_chunk_decay[j], entering[j], out=entering[k])
    # Pass 2: overwrite each decay with the state, starting from the entering states.
    prev = entering
    for q in steps:
        h = out[q].mul_(prev).addcmul_(w[q].unsqueeze(-2), V[q].unsqueeze(-1))
        yield q, h
        prev = h


class _ChunkedScan(torch.autograd.Function):
    """y = sum_s C_t h_t for the recurrence above (no D, z or bias: the caller adds those)."""

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk: int) -> Tensor:
        length, d_state = u.shape[-1], A.shape[1]
        At = A.t().contiguous()
        delta_q, u_q = _to_chunks(delta, chunk), _to_chunks(u, chunk)  # (Q, K, N, D)
        B_q, C_q = _to_chunks(B, chunk), _to_chunks(C, chunk)  # (Q, K, N, S)
        du_q = delta_q * u_q
        h = [u.new_empty(*delta_q.shape[1:3], d_state, delta_q.shape[-1]) for _ in range(chunk)]
        y_q = torch.empty_like(u_q)
        for q, h_q in _states(delta_q, At * math.log2(math.e), du_q, B_q, False, h):
            torch.matmul(C_q[q].unsqueeze(-2), h_q, out=y_q[q].unsqueeze(-2))  # sum_s C h
        ctx.save_for_backward(At, delta_q, u_q, du_q, B_q, C_q, *h)
        ctx.layouts = tuple(_time_major(t) for t in (u, delta, B, C))
        return _from_chunks(y_q, length, ctx.layouts[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: Tensor):
        At, delta_q, u_q, du_q, B_q, C_q, *h = ctx.saved_tensors
        length = grad_y.shape[-1]
        with autocast_off(grad_y.device.type):
            gy_q = _to_chunks(grad_y.to(u_q.dtype), delta_q.shape[0])
            # Adjoint g_t = dL/dh_t = C_t gy_t + exp(delta_{t+1} A) g_{t+1}: the same scan in reverse
            # time with the decay of the next step.
            g_du, g_delta_a = torch.empty_like(u_q), torch.empty_like(u_q)  # (Q, K, N, D)
            g_B, g_C = torch.empty_like(B_q), torch.empty_like(C_q)  # (Q, K, N, S)
            g_A_acc = torch.zeros_like(h[0])  # (K, N, S, D)
            z = torch.empty_like(h[0])
            g_out = [torch.empty_like(h_q) for h_q in h]
            for q, g in _states(_next_step(delta_q), At * math.log2(math.e), gy_q, C_q, True, g_out):
                h_q = h[q]
                torch.matmul(B_q[q].unsqueeze(-2), g, out=g_du[q].unsqueeze(-2))  # sum_s g B
                torch.linalg.vecdot(g, du_q[q].unsqueeze(-2), out=g_B[q])  # sum_d g du
                torch.linalg.vecdot(h_q, gy_q[q].unsqueeze(-2), out=g_C[q])  # sum_d h gy
                # dL/d(delta A) = g_t * exp(delta_t A) h_{t-1} = g_t * (h_t - delta_t u_t B_t)
                torch.addcmul(h_q, du_q[q].unsqueeze(-2), B_q[q].unsqueeze(-1), value=-1, out=z).mul_(g)
                torch.linalg.vecdot(z, At, dim=-2, out=g_delta_a[q])  # sum_s z A
                g_A_acc.addcmul_(z, delta_q[q].unsqueeze(-2))
                g_out[q] = None  # free each adjoint slice once used
            u_major, delta_major, B_major, C_major = ctx.layouts
            g_u = _from_chunks(g_du * delta_q, length, u_major)
            g_delta = _from_chunks(g_du * u_q + g_delta_a, length, delta_major)
            g_B, g_C = _from_chunks(g_B, length, B_major), _from_chunks(g_C, length, C_major)
            g_A = g_A_acc.sum((0, 1)).t()
        return g_u, g_delta, g_A, g_B, g_C, None
