"""Triton kernels for the Mamba mixer: the selective scan (forward and backward) and the causal depthwise
conv + SiLU in front of it. Their float64 twins are :func:`~dimsum_core.ops.selective_scan.selective_scan_reference`
and :func:`~dimsum_core.ops.causal_conv1d.causal_conv1d`; ``tests/test_triton_kernels.py`` holds them to it.

Layout: sequences are ``(N, d, L)`` and B, C ``(N, n, L)`` (B and C shared by all channels), any strides,
fastest with time contiguous: the mixer gets that layout for free by writing its projections as
``W @ x`` (as mamba-ssm's fused path does). A is ``(d, n)`` float32, D and the delta bias ``(d,)``
float32. Arithmetic is float32.

Why time-contiguous: Triton lays a tile out along its contiguous memory axis, and a scan is cheap only
along an axis each thread holds a run of (in registers) and a warp spans (shuffles); across warps it
goes through shared memory. Measured on an H200 (docs/benchmarks.md): the same kernels on
channels-last tiles ran 3.3x (forward) and 1.9x (backward) slower.

Scan. A program owns one batch row and a block of BD channels, and holds a (BD, T) tile of the sequence
(T up to the whole sequence). The state index is the inner loop: for each of the n states the recurrence
``h_t = a_t h_{t-1} + b_t`` (``a = exp(delta·A[:, s])``, ``b = delta·u·B[s]``) over the tile is one
``tl.associative_scan`` over time, and ``y = sum_s C[s] h`` accumulates in registers, so no state tensor
is ever stored. Sequences longer than T are walked in chunks, the state entering each chunk carried in
a (BD, n) register tile.

The backward recomputes the states instead of storing them. It walks the chunks in reverse (a first pass
writes the state entering each chunk to a small per-program scratch when there is more than one), and
for each state s runs the adjoint ``q_t = C_t·gy_t + a_{t+1} q_{t+1}`` as a reverse scan beside the
recomputed forward scan; du and ddelta accumulate over s in registers. dB and dC need a sum over channels:
each program sums over its BD channels (and over the G channel blocks it walks in turn) before anything
reaches global memory, then writes one partial per program group; the caller sums the few partials.
Nothing is atomic, so the gradients are deterministic.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _affine(a1, b1, a2, b2):
    """Composition of h -> a1 h + b1, then h -> a2 h + b2."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _batch_element(b, u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, su_b, sdl_b, sz_b, sB_b, sC_b):
    """The scan inputs' pointers moved to batch element b."""
    return u_ptr + b * su_b, delta_ptr + b * sdl_b, z_ptr + b * sz_b, B_ptr + b * sB_b, C_ptr + b * sC_b


@triton.jit
def _grad_element(b, program, d, L, n, dout_ptr, sg_b, du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr):
    """A backward's pointers moved to batch element b: dout (any strides), du, ddelta, dz (N, d, L) and dA
    (N, d, n) contiguous; dB and dC to this program's (N, programs, n, L) partial."""
    part = program * n * L
    return (dout_ptr + b * sg_b, du_ptr + b * d * L, ddelta_ptr + b * d * L, dz_ptr + b * d * L,
            dA_ptr + b * d * n, dB_ptr + part, dC_ptr + part)


@triton.jit
def _input_grads(du_ptr, ddelta_ptr, dz_ptr, cols, t, L, mask, u, z, delta, delta_raw, dout, gy, y, qB, wA, Dv,
                 sig_z, sig_raw):
    """A chunk's gradients of u, the raw delta and z, stored ((N, d, L) contiguous, the inputs' dtypes), from
    the state loop's sums qB and wA and its output y (before the skip D·u and the gate); sig_z, sig_raw:
    each dialect's own sigmoids of z and of the raw delta. Returns the chunk's per-channel dD and dbias sums."""
    y += Dv[:, None] * u
    g_u = delta * qB + Dv[:, None] * gy
    g_delta = u * qB + wA
    g_delta_raw = tl.where(mask, g_delta * tl.where(delta_raw > 20.0, 1.0, sig_raw), 0.0)  # softplus' slope
    dz = dout * y * sig_z * (1.0 + z * (1.0 - sig_z))
    offs = cols[:, None] * L + t[None, :]
    tl.store(du_ptr + offs, g_u.to(du_ptr.dtype.element_ty), mask=mask)
    tl.store(ddelta_ptr + offs, g_delta_raw.to(ddelta_ptr.dtype.element_ty), mask=mask)
    tl.store(dz_ptr + offs, dz.to(dz_ptr.dtype.element_ty), mask=mask)
    return tl.sum(gy * u, axis=1), tl.sum(g_delta_raw, axis=1)


@triton.jit
def _softplus(x):
    # torch's threshold: above 20, softplus(x) == x in float32
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))


@triton.jit
def _column(x, states, s):
    """Column s of a (BD, NP) register tile (registers cannot be indexed, so a masked sum)."""
    return tl.sum(tl.where(states[None, :] == s, x, 0.0), axis=1)


@triton.jit
def _with_column(x, states, s, col):
    return tl.where(states[None, :] == s, col[:, None], x)


@triton.jit
def _at_step(x, steps, i):
    """Time step i of a (BD, T) tile."""
    return tl.sum(tl.where(steps[None, :] == i, x, 0.0), axis=1)


@triton.jit
def _load_tile(ptr, s_d, s_t, cols, t, mask):
    return tl.load(ptr + cols[:, None] * s_d + t[None, :] * s_t, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _raw_delta(delta_ptr, s_d, s_t, cols, t, mask, bias):
    """delta + bias on a (BD, T) tile, before the softplus."""
    return _load_tile(delta_ptr, s_d, s_t, cols, t, mask) + bias[:, None]


@triton.jit
def _load_delta(delta_ptr, s_d, s_t, cols, t, mask, bias):
    """softplus(delta + bias) on a (BD, T) tile, 0 where masked (so masked steps neither decay nor add)."""
    return tl.where(mask, _softplus(_raw_delta(delta_ptr, s_d, s_t, cols, t, mask, bias)), 0.0)


@triton.jit
def _gy(dout_ptr, z_ptr, sg_d, sg_t, sz_d, sz_t, cols, t, mask):
    """dL/dy = dout · silu(z) on a (BD, T) tile."""
    z = _load_tile(z_ptr, sz_d, sz_t, cols, t, mask)
    return _load_tile(dout_ptr, sg_d, sg_t, cols, t, mask) * z * tl.sigmoid(z)


@triton.jit
def _state_scan(delta, du, A_s, B_s, h0):
    """States h (BD, T) of state s over one chunk from its entering state h0 (BD,), and the input b."""
    a = tl.exp2(delta * (A_s * LOG2E)[:, None])
    b = du * B_s[None, :]
    a_cum, b_cum = tl.associative_scan((a, b), 1, _affine)
    return a_cum * h0[:, None] + b_cum, b


@triton.jit
def _entering_states(u_ptr, delta_ptr, B_ptr, A_ptr, scratch_ptr, su_d, su_t, sdl_d, sdl_t, sB_n, sB_t,
                     L, n, cols, mask_d, bias, steps, states, n_chunks,
                     T: tl.constexpr, BD: tl.constexpr, NP: tl.constexpr):
    """Writes the state entering every chunk, (BD, NP) each, to scratch[chunk]."""
    tile_off = tl.arange(0, BD)[:, None] * NP + states[None, :]
    H = tl.zeros((BD, NP), tl.float32)
    tl.store(scratch_ptr + tile_off, H)
    for c in range(0, n_chunks - 1):
        t = c * T + steps
        mask = mask_d[:, None] & (t < L)[None, :]
        u = _load_tile(u_ptr, su_d, su_t, cols, t, mask)
        delta = _load_delta(delta_ptr, sdl_d, sdl_t, cols, t, mask, bias)
        du = delta * u
        H_next = tl.zeros((BD, NP), tl.float32)
        for s in range(0, n):
            A_s = tl.load(A_ptr + cols * n + s, mask=mask_d, other=0.0)
            B_s = tl.load(B_ptr + s * sB_n + t * sB_t, mask=t < L, other=0.0).to(tl.float32)
            h, _ = _state_scan(delta, du, A_s, B_s, _column(H, states, s))
            H_next = _with_column(H_next, states, s, _at_step(h, steps, T - 1))
        H = H_next
        tl.store(scratch_ptr + (c + 1) * BD * NP + tile_off, H)


@triton.jit
def scan_fwd_kernel(
    u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, A_ptr, D_ptr, bias_ptr, out_ptr,
    L, d, n,
    su_b, su_d, su_t, sdl_b, sdl_d, sdl_t, sz_b, sz_d, sz_t, sB_b, sB_n, sB_t, sC_b, sC_n, sC_t,
    T: tl.constexpr, BD: tl.constexpr, NP: tl.constexpr,
):
    """out = y · silu(z), (N, d, L) contiguous."""
    pid_d, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    cols = pid_d * BD + tl.arange(0, BD)
    states = tl.arange(0, NP)
    steps = tl.arange(0, T)
    mask_d = cols < d
    Dv = tl.load(D_ptr + cols, mask=mask_d, other=0.0)
    bias = tl.load(bias_ptr + cols, mask=mask_d, other=0.0)
    u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr = _batch_element(b, u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr,
                                                           su_b, sdl_b, sz_b, sB_b, sC_b)
    out_ptr += b * d * L
    H = tl.zeros((BD, NP), tl.float32)  # state entering the chunk, for sequences longer than T
    for t0 in range(0, L, T):
        t = t0 + steps
        mask = mask_d[:, None] & (t < L)[None, :]
        u = _load_tile(u_ptr, su_d, su_t, cols, t, mask)
        delta = _load_delta(delta_ptr, sdl_d, sdl_t, cols, t, mask, bias)
        du = delta * u
        y = Dv[:, None] * u
        more = t0 + T < L
        for s in range(0, n):
            A_s = tl.load(A_ptr + cols * n + s, mask=mask_d, other=0.0)
            B_s = tl.load(B_ptr + s * sB_n + t * sB_t, mask=t < L, other=0.0).to(tl.float32)
            C_s = tl.load(C_ptr + s * sC_n + t * sC_t, mask=t < L, other=0.0).to(tl.float32)
            h, _ = _state_scan(delta, du, A_s, B_s, _column(H, states, s))
            y += h * C_s[None, :]
            if more:
                H = _with_column(H, states, s, _at_step(h, steps, T - 1))
        z = _load_tile(z_ptr, sz_d, sz_t, cols, t, mask)
        out = y * z * tl.sigmoid(z)
        tl.store(out_ptr + cols[:, None] * L + t[None, :], out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def scan_bwd_kernel(
    u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, A_ptr, D_ptr, bias_ptr, dout_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, scratch_ptr,
    L, d, n, n_blocks, G,
    su_b, su_d, su_t, sdl_b, sdl_d, sdl_t, sz_b, sz_d, sz_t, sB_b, sB_n, sB_t, sC_b, sC_n, sC_t,
    sg_b, sg_d, sg_t,
    T: tl.constexpr, BD: tl.constexpr, NP: tl.constexpr,
):
    """Gradients of scan_fwd_kernel's output. du, ddelta, dz: (N, d, L) contiguous, input dtype.
    dB, dC: float32 (N, P, n, L) partials over the P program groups, zero-initialised (each group adds
    its G channel blocks in turn); dA: float32 (N, d, n); dD, dbias: float32 (N, d); the caller sums
    them over the batch. scratch: float32 (N, P, chunks, BD, NP)."""
    pid_g, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    P = tl.num_programs(0)
    states = tl.arange(0, NP)
    steps = tl.arange(0, T)
    n_chunks = tl.cdiv(L, T)
    u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr = _batch_element(b, u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr,
                                                           su_b, sdl_b, sz_b, sB_b, sC_b)
    dout_ptr, du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr = _grad_element(
        b, b * P + pid_g, d, L, n, dout_ptr, sg_b, du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr)
    scratch_ptr += (b * P + pid_g) * n_chunks * BD * NP
    tile_off = tl.arange(0, BD)[:, None] * NP + states[None, :]
    for blk in range(pid_g * G, tl.minimum(pid_g * G + G, n_blocks)):
        cols = blk * BD + tl.arange(0, BD)
        mask_d = cols < d
        Dv = tl.load(D_ptr + cols, mask=mask_d, other=0.0)
        bias = tl.load(bias_ptr + cols, mask=mask_d, other=0.0)
        if n_chunks > 1:
            _entering_states(u_ptr, delta_ptr, B_ptr, A_ptr, scratch_ptr, su_d, su_t, sdl_d, sdl_t, sB_n, sB_t,
                             L, n, cols, mask_d, bias, steps, states, n_chunks, T, BD, NP)
            tl.debug_barrier()
        Q = tl.zeros((BD, NP), tl.float32)  # adjoint at the first step of the chunk after
        dA_acc = tl.zeros((BD, NP), tl.float32)
        dD_acc = tl.zeros((BD,), tl.float32)
        dbias_acc = tl.zeros((BD,), tl.float32)
        for ci in range(0, n_chunks):
            c = n_chunks - 1 - ci
            t = c * T + steps
            mask = mask_d[:, None] & (t < L)[None, :]
            mask_next = mask_d[:, None] & (t + 1 < L)[None, :]
            H0 = tl.zeros((BD, NP), tl.float32)
            if c > 0:
                H0 = tl.load(scratch_ptr + c * BD * NP + tile_off)
            delta = _load_delta(delta_ptr, sdl_d, sdl_t, cols, t, mask, bias)
            delta_next = _load_delta(delta_ptr, sdl_d, sdl_t, cols, t + 1, mask_next, bias)
            gy = _gy(dout_ptr, z_ptr, sg_d, sg_t, sz_d, sz_t, cols, t, mask)
            du = delta * _load_tile(u_ptr, su_d, su_t, cols, t, mask)
            y = tl.zeros((BD, T), tl.float32)
            qB = tl.zeros((BD, T), tl.float32)  # sum_s q B
            wA = tl.zeros((BD, T), tl.float32)  # sum_s dL/d(delta·A) A
            Q_prev = tl.zeros((BD, NP), tl.float32)
            for s in range(0, n):
                A_s = tl.load(A_ptr + cols * n + s, mask=mask_d, other=0.0)
                B_s = tl.load(B_ptr + s * sB_n + t * sB_t, mask=t < L, other=0.0).to(tl.float32)
                C_s = tl.load(C_ptr + s * sC_n + t * sC_t, mask=t < L, other=0.0).to(tl.float32)
                h, b_in = _state_scan(delta, du, A_s, B_s, _column(H0, states, s))
                y += h * C_s[None, :]
                # adjoint: q_t = C_t gy_t + a_{t+1} q_{t+1}, a reverse scan with the next step's decay
                a_next = tl.exp2(delta_next * (A_s * LOG2E)[:, None])
                a_cum, q_loc = tl.associative_scan((a_next, C_s[None, :] * gy), 1, _affine, reverse=True)
                q = q_loc + a_cum * _column(Q, states, s)[:, None]
                if c > 0:
                    Q_prev = _with_column(Q_prev, states, s, _at_step(q, steps, 0))
                qB += q * B_s[None, :]
                w = q * (h - b_in)  # dL/d(delta·A) = q_t a_t h_{t-1}
                wA += w * A_s[:, None]
                dA_acc = _with_column(dA_acc, states, s, _column(dA_acc, states, s) + tl.sum(w * delta, axis=1))
                # dB_t = sum_d q_t du_t, dC_t = sum_d h_t gy_t: summed over this block's channels first
                dB_s = tl.sum(q * du, axis=0) + tl.load(dB_ptr + s * L + t, mask=t < L, other=0.0)
                dC_s = tl.sum(h * gy, axis=0) + tl.load(dC_ptr + s * L + t, mask=t < L, other=0.0)
                tl.store(dB_ptr + s * L + t, dB_s, mask=t < L)
                tl.store(dC_ptr + s * L + t, dC_s, mask=t < L)
            Q = Q_prev
            # what the state loop does not use is loaded again here (cache hits), not held in registers
            u = _load_tile(u_ptr, su_d, su_t, cols, t, mask)
            delta_raw = _raw_delta(delta_ptr, sdl_d, sdl_t, cols, t, mask, bias)
            z = _load_tile(z_ptr, sz_d, sz_t, cols, t, mask)
            dout = _load_tile(dout_ptr, sg_d, sg_t, cols, t, mask)
            dD_t, dbias_t = _input_grads(du_ptr, ddelta_ptr, dz_ptr, cols, t, L, mask, u, z, delta, delta_raw, dout,
                                         gy, y, qB, wA, Dv, tl.sigmoid(z), tl.sigmoid(delta_raw))
            dD_acc += dD_t
            dbias_acc += dbias_t
        tl.store(dA_ptr + cols[:, None] * n + states[None, :], dA_acc, mask=mask_d[:, None] & (states < n)[None, :])
        tl.store(dD_ptr + b * d + cols, dD_acc, mask=mask_d)
        tl.store(dbias_ptr + b * d + cols, dbias_acc, mask=mask_d)
        tl.debug_barrier()


@triton.jit
def _conv_pre(x_ptr, w_ptr, bias_ptr, cols, mask_c, t, L, sx_d, sx_t,
              K: tl.constexpr, BC: tl.constexpr, BT: tl.constexpr):
    """The pre-activation bias + sum_k w[:, k] x_{t-K+1+k} of a (BC, BT) tile, zeros before t = 0: the
    forward's, and the backward's recomputation of it (same order of sums)."""
    pre = tl.zeros((BC, BT), tl.float32) + tl.load(bias_ptr + cols, mask=mask_c, other=0.0)[:, None]
    for k in tl.static_range(K):
        ts = t - (K - 1) + k
        m = mask_c[:, None] & ((ts >= 0) & (ts < L))[None, :]
        x = tl.load(x_ptr + cols[:, None] * sx_d + ts[None, :] * sx_t, mask=m, other=0.0).to(tl.float32)
        pre += x * tl.load(w_ptr + cols * K + k, mask=mask_c, other=0.0)[:, None]
    return pre


@triton.jit
def conv_fwd_kernel(x_ptr, w_ptr, bias_ptr, out_ptr, L, d, sx_b, sx_d, sx_t,
                    K: tl.constexpr, BC: tl.constexpr, BT: tl.constexpr):
    """out = silu(bias + sum_k w[:, k] x_{t-K+1+k}) on (N, d, L), zeros before t = 0; out contiguous."""
    pid_t, pid_c, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    t = pid_t * BT + tl.arange(0, BT)
    cols = pid_c * BC + tl.arange(0, BC)
    mask_c = cols < d
    acc = _conv_pre(x_ptr + b * sx_b, w_ptr, bias_ptr, cols, mask_c, t, L, sx_d, sx_t, K, BC, BT)
    out = acc * tl.sigmoid(acc)
    m = mask_c[:, None] & (t < L)[None, :]
    tl.store(out_ptr + b * d * L + cols[:, None] * L + t[None, :], out.to(out_ptr.dtype.element_ty), mask=m)


@triton.jit
def conv_bwd_dp_kernel(x_ptr, w_ptr, bias_ptr, dout_ptr, dp_ptr, dw_ptr, dbias_ptr, L, d,
                       sx_b, sx_d, sx_t, sg_b, sg_d, sg_t,
                       K: tl.constexpr, BC: tl.constexpr, BT: tl.constexpr):
    """The conv's backward, first pass: dp = dout · silu'(pre), the gradient at the pre-activation, (N, d,
    L) float32, and dw (N·tiles, d, K), dbias (N·tiles, d) float32 partials per time tile. The second pass
    (conv_bwd_dx_kernel) reads dp at K shifted steps; a tile cannot shift its registers along time, so
    dp goes through memory once instead of being recomputed at each of the K shifts."""
    pid_t, pid_c, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    t = pid_t * BT + tl.arange(0, BT)
    cols = pid_c * BC + tl.arange(0, BC)
    mask_c = cols < d
    x_ptr += b * sx_b
    pre = _conv_pre(x_ptr, w_ptr, bias_ptr, cols, mask_c, t, L, sx_d, sx_t, K, BC, BT)
    m = mask_c[:, None] & (t < L)[None, :]
    g = tl.load(dout_ptr + b * sg_b + cols[:, None] * sg_d + t[None, :] * sg_t, mask=m, other=0.0).to(tl.float32)
    sig = tl.sigmoid(pre)
    dp = tl.where(m, g * sig * (1.0 + pre * (1.0 - sig)), 0.0)
    tl.store(dp_ptr + b * d * L + cols[:, None] * L + t[None, :], dp, mask=m)
    tile = b * tl.num_programs(0) + pid_t
    tl.store(dbias_ptr + tile * d + cols, tl.sum(dp, axis=1), mask=mask_c)
    for k in tl.static_range(K):
        ts = t - (K - 1) + k
        m = mask_c[:, None] & ((ts >= 0) & (ts < L))[None, :]
        x = tl.load(x_ptr + cols[:, None] * sx_d + ts[None, :] * sx_t, mask=m, other=0.0).to(tl.float32)
        tl.store(dw_ptr + tile * d * K + cols * K + k, tl.sum(dp * x, axis=1), mask=mask_c)


@triton.jit
def conv_bwd_dx_kernel(dp_ptr, w_ptr, dx_ptr, L, d, K: tl.constexpr, BC: tl.constexpr, BT: tl.constexpr):
    """The second pass: dx_t = sum_j dp_{t+j} w[K-1-j] (dp at step t + j reaches x_t through tap K-1-j);
    dx (N, d, L) contiguous."""
    pid_t, pid_c, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    t = pid_t * BT + tl.arange(0, BT)
    cols = pid_c * BC + tl.arange(0, BC)
    mask_c = cols < d
    dp_ptr += b * d * L
    dx = tl.zeros((BC, BT), tl.float32)
    for j in tl.static_range(K):
        tj = t + j
        m = mask_c[:, None] & (tj < L)[None, :]
        dp = tl.load(dp_ptr + cols[:, None] * L + tj[None, :], mask=m, other=0.0)
        dx += dp * tl.load(w_ptr + cols * K + (K - 1 - j), mask=mask_c, other=0.0)[:, None]
    m = mask_c[:, None] & (t < L)[None, :]
    tl.store(dx_ptr + b * d * L + cols[:, None] * L + t[None, :], dx.to(dx_ptr.dtype.element_ty), mask=m)
