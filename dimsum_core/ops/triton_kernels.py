"""Triton kernels for the Mamba mixer: the selective scan (forward and backward) and the causal depthwise
conv + SiLU in front of it. Their float64 twins are :func:`~dimsum_core.ops.selective_scan.selective_scan_reference`
and :func:`~dimsum_core.ops.causal_conv1d.causal_conv1d`; ``tests/test_triton_kernels.py`` holds them to it.

Layout: every sequence tensor is channels-last, ``(N, L, d)`` with unit channel stride (what ``in_proj``
and ``x_proj`` produce, so the mixer needs no transposes); B and C are ``(N, L, n)``, shared by all
channels. A is ``(d, n)`` float32, D and the delta bias ``(d,)`` float32. Arithmetic is float32.

Scan. A program owns one batch row and a block of BD channels and walks the sequence in chunks of T
steps. Inside a chunk the recurrence ``h_t = a_t h_{t-1} + b_t`` (``a = exp(delta·A)``,
``b = delta·u·B``) over the (T, BD, n) tile is one ``tl.associative_scan`` over time; the state entering
the chunk is carried in registers from the previous chunk.

The backward recomputes instead of storing states. Phase 1 runs the forward recurrence once more and
writes only the state entering each chunk to a per-program scratch (a few KB, reused, so it stays in
L2). Phase 2 walks the chunks in reverse: it recomputes the chunk's states from its entering state, runs
the adjoint ``q_t = C_t·gy_t + a_{t+1} q_{t+1}`` as a reverse scan, and forms every gradient from
(h, q) in registers. dB and dC need a sum over channels: each program sums over its BD channels (and
over the G channel blocks it walks in turn) before anything reaches global memory, then writes one
partial per program group; the caller sums the few partials. Nothing is atomic, so the gradients are
deterministic.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = 1.4426950408889634


@triton.jit
def _affine(a1, b1, a2, b2):
    """Composition of h -> a1 h + b1, then h -> a2 h + b2."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x):
    # torch's threshold: above 20, softplus(x) == x in float32
    return tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))


@triton.jit
def _row(x, rows, r: tl.constexpr):
    """Row r of a (T, ...) tile (registers cannot be indexed, so a masked sum)."""
    return tl.sum(tl.where(rows[:, None, None] == r, x, 0.0), axis=0)


@triton.jit
def _load_tile(ptr, s_t, t, cols, mask):
    return tl.load(ptr + t[:, None] * s_t + cols[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _chunk_delta(delta_ptr, s_t, t, cols, mask, bias):
    """softplus(delta + bias) on a (T, BD) tile, 0 where masked (so masked steps neither decay nor add)."""
    raw = _load_tile(delta_ptr, s_t, t, cols, mask) + bias[None, :]
    return tl.where(mask, _softplus(raw), 0.0), raw


@triton.jit
def _chunk_states(delta, u, B, A2, h0):
    """States h_t (T, BD, n) of one chunk from its entering state h0 (BD, n)."""
    a = tl.exp2(delta[:, :, None] * A2[None, :, :])
    b = (delta * u)[:, :, None] * B[:, None, :]
    a_cum, b_cum = tl.associative_scan((a, b), 0, _affine)
    return a_cum * h0[None, :, :] + b_cum, b


@triton.jit
def scan_fwd_kernel(
    u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, A_ptr, D_ptr, bias_ptr, out_ptr,
    L, d, n,
    su_b, su_t, sdl_b, sdl_t, sz_b, sz_t, sB_b, sB_t, sB_n, sC_b, sC_t, sC_n, so_b, so_t,
    T: tl.constexpr, BD: tl.constexpr, NP: tl.constexpr,
):
    pid_d, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    cols = pid_d * BD + tl.arange(0, BD)
    states = tl.arange(0, NP)
    rows = tl.arange(0, T)
    mask_d, mask_n = cols < d, states < n
    A2 = tl.load(A_ptr + cols[:, None] * n + states[None, :], mask=mask_d[:, None] & mask_n[None, :],
                 other=0.0) * LOG2E
    Dv = tl.load(D_ptr + cols, mask=mask_d, other=0.0)
    bias = tl.load(bias_ptr + cols, mask=mask_d, other=0.0)
    u_ptr += b * su_b
    delta_ptr += b * sdl_b
    z_ptr += b * sz_b
    B_ptr += b * sB_b
    C_ptr += b * sC_b
    out_ptr += b * so_b
    h = tl.zeros((BD, NP), tl.float32)
    for t0 in range(0, L, T):
        t = t0 + rows
        mask = (t < L)[:, None] & mask_d[None, :]
        mask_bc = (t < L)[:, None] & mask_n[None, :]
        u = _load_tile(u_ptr, su_t, t, cols, mask)
        delta, _ = _chunk_delta(delta_ptr, sdl_t, t, cols, mask, bias)
        B = tl.load(B_ptr + t[:, None] * sB_t + states[None, :] * sB_n, mask=mask_bc, other=0.0).to(tl.float32)
        C = tl.load(C_ptr + t[:, None] * sC_t + states[None, :] * sC_n, mask=mask_bc, other=0.0).to(tl.float32)
        hs, _ = _chunk_states(delta, u, B, A2, h)
        y = tl.sum(hs * C[:, None, :], axis=2) + Dv[None, :] * u
        z = _load_tile(z_ptr, sz_t, t, cols, mask)
        out = y * z * tl.sigmoid(z)
        tl.store(out_ptr + t[:, None] * so_t + cols[None, :], out.to(out_ptr.dtype.element_ty), mask=mask)
        h = _row(hs, rows, T - 1)


@triton.jit
def scan_bwd_kernel(
    u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, A_ptr, D_ptr, bias_ptr, dout_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, scratch_ptr,
    L, d, n, n_blocks, G,
    su_b, su_t, sdl_b, sdl_t, sz_b, sz_t, sB_b, sB_t, sB_n, sC_b, sC_t, sC_n, sg_b, sg_t,
    T: tl.constexpr, BD: tl.constexpr, NP: tl.constexpr,
):
    """Gradients of scan_fwd_kernel's output. du, ddelta, dz: (N, L, d) contiguous, input dtype.
    dB, dC: float32 (N, P, L, NP) partials over the P program groups (zero-initialised: each group
    adds its G channel blocks in turn). dA: float32 (N, d, n), dD, dbias: (N, d), summed over time here
    and over the batch by the caller. scratch: float32 (N, P, chunks, BD, NP)."""
    pid_g, b = tl.program_id(0), tl.program_id(1).to(tl.int64)
    P = tl.num_programs(0)
    states = tl.arange(0, NP)
    rows = tl.arange(0, T)
    mask_n = states < n
    n_chunks = tl.cdiv(L, T)
    u_ptr += b * su_b
    delta_ptr += b * sdl_b
    z_ptr += b * sz_b
    B_ptr += b * sB_b
    C_ptr += b * sC_b
    dout_ptr += b * sg_b
    du_ptr += b * L * d
    ddelta_ptr += b * L * d
    dz_ptr += b * L * d
    part = (b * P + pid_g) * L * NP
    dB_ptr += part
    dC_ptr += part
    scratch_ptr += (b * P + pid_g) * n_chunks * BD * NP
    tile_off = tl.arange(0, BD)[:, None] * NP + states[None, :]
    for blk in range(pid_g * G, tl.minimum(pid_g * G + G, n_blocks)):
        cols = blk * BD + tl.arange(0, BD)
        mask_d = cols < d
        mask_dn = mask_d[:, None] & mask_n[None, :]
        A = tl.load(A_ptr + cols[:, None] * n + states[None, :], mask=mask_dn, other=0.0)
        A2 = A * LOG2E
        Dv = tl.load(D_ptr + cols, mask=mask_d, other=0.0)
        bias = tl.load(bias_ptr + cols, mask=mask_d, other=0.0)

        # Phase 1: the state entering every chunk.
        h = tl.zeros((BD, NP), tl.float32)
        for c in range(0, n_chunks):
            tl.store(scratch_ptr + c * BD * NP + tile_off, h)
            t = c * T + rows
            mask = (t < L)[:, None] & mask_d[None, :]
            mask_bc = (t < L)[:, None] & mask_n[None, :]
            u = _load_tile(u_ptr, su_t, t, cols, mask)
            delta, _ = _chunk_delta(delta_ptr, sdl_t, t, cols, mask, bias)
            B = tl.load(B_ptr + t[:, None] * sB_t + states[None, :] * sB_n, mask=mask_bc, other=0.0).to(tl.float32)
            hs, _ = _chunk_states(delta, u, B, A2, h)
            h = _row(hs, rows, T - 1)
        tl.debug_barrier()

        # Phase 2: chunks in reverse, the adjoint q carried from the chunk after.
        q_next = tl.zeros((BD, NP), tl.float32)
        dA_acc = tl.zeros((BD, NP), tl.float32)
        dD_acc = tl.zeros((BD,), tl.float32)
        dbias_acc = tl.zeros((BD,), tl.float32)
        for ci in range(0, n_chunks):
            c = n_chunks - 1 - ci
            t = c * T + rows
            mask = (t < L)[:, None] & mask_d[None, :]
            mask_next = (t + 1 < L)[:, None] & mask_d[None, :]
            mask_bc = (t < L)[:, None] & mask_n[None, :]
            h0 = tl.load(scratch_ptr + c * BD * NP + tile_off)
            u = _load_tile(u_ptr, su_t, t, cols, mask)
            delta, delta_raw = _chunk_delta(delta_ptr, sdl_t, t, cols, mask, bias)
            delta_next, _ = _chunk_delta(delta_ptr, sdl_t, t + 1, cols, mask_next, bias)
            B = tl.load(B_ptr + t[:, None] * sB_t + states[None, :] * sB_n, mask=mask_bc, other=0.0).to(tl.float32)
            C = tl.load(C_ptr + t[:, None] * sC_t + states[None, :] * sC_n, mask=mask_bc, other=0.0).to(tl.float32)
            z = _load_tile(z_ptr, sz_t, t, cols, mask)
            dout = _load_tile(dout_ptr, sg_t, t, cols, mask)
            hs, b_in = _chunk_states(delta, u, B, A2, h0)
            y = tl.sum(hs * C[:, None, :], axis=2) + Dv[None, :] * u
            sig_z = tl.sigmoid(z)
            gy = dout * z * sig_z  # dL/dy
            dz = dout * y * sig_z * (1.0 + z * (1.0 - sig_z))
            # adjoint: q_t = C_t gy_t + a_{t+1} q_{t+1}, a reverse scan with the next step's decay
            a_next = tl.exp2(delta_next[:, :, None] * A2[None, :, :])
            a_cum, q_loc = tl.associative_scan((a_next, C[:, None, :] * gy[:, :, None]), 0, _affine, reverse=True)
            q = q_loc + a_cum * q_next[None, :, :]
            q_next = _row(q, rows, 0)
            qB = tl.sum(q * B[:, None, :], axis=2)  # (T, BD)
            w = q * (hs - b_in)  # dL/d(delta·A) = q_t a_t h_{t-1}
            g_u = delta * qB + Dv[None, :] * gy
            g_delta = u * qB + tl.sum(w * A[None, :, :], axis=2)
            g_delta_raw = tl.where(mask, g_delta * tl.where(delta_raw > 20.0, 1.0, tl.sigmoid(delta_raw)), 0.0)
            dA_acc += tl.sum(w * delta[:, :, None], axis=0)
            dD_acc += tl.sum(gy * u, axis=0)
            dbias_acc += tl.sum(g_delta_raw, axis=0)
            offs = t[:, None] * d + cols[None, :]
            tl.store(du_ptr + offs, g_u.to(du_ptr.dtype.element_ty), mask=mask)
            tl.store(ddelta_ptr + offs, g_delta_raw.to(ddelta_ptr.dtype.element_ty), mask=mask)
            tl.store(dz_ptr + offs, dz.to(dz_ptr.dtype.element_ty), mask=mask)
            # dB_t = sum_d q_t du_t, dC_t = sum_d h_t gy_t: summed over this block's channels first
            bc_offs = t[:, None] * NP + states[None, :]
            mask_t = (t < L)[:, None]
            dB = tl.sum(q * (delta * u)[:, :, None], axis=1)
            dC = tl.sum(hs * gy[:, :, None], axis=1)
            dB += tl.load(dB_ptr + bc_offs, mask=mask_t, other=0.0)
            dC += tl.load(dC_ptr + bc_offs, mask=mask_t, other=0.0)
            tl.store(dB_ptr + bc_offs, dB, mask=mask_t)
            tl.store(dC_ptr + bc_offs, dC, mask=mask_t)
        tl.store(dA_ptr + b * d * n + cols[:, None] * n + states[None, :], dA_acc, mask=mask_dn)
        tl.store(dD_ptr + b * d + cols, dD_acc, mask=mask_d)
        tl.store(dbias_ptr + b * d + cols, dbias_acc, mask=mask_d)
        tl.debug_barrier()


@triton.jit
def conv_fwd_kernel(x_ptr, w_ptr, bias_ptr, out_ptr, L, d, sx_b, sx_t,
                    K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    """out = silu(bias + sum_k w[:, k] x_{t-K+1+k}) on (N, L, d), zeros before t = 0; out contiguous."""
    pid_t, pid_c, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    t = pid_t * BT + tl.arange(0, BT)
    cols = pid_c * BC + tl.arange(0, BC)
    mask_c = cols < d
    acc = tl.zeros((BT, BC), tl.float32) + tl.load(bias_ptr + cols, mask=mask_c, other=0.0)[None, :]
    x_ptr += b * sx_b
    for k in tl.static_range(K):
        ts = t - (K - 1) + k
        m = ((ts >= 0) & (ts < L))[:, None] & mask_c[None, :]
        x = tl.load(x_ptr + ts[:, None] * sx_t + cols[None, :], mask=m, other=0.0).to(tl.float32)
        acc += x * tl.load(w_ptr + cols * K + k, mask=mask_c, other=0.0)[None, :]
    out = acc * tl.sigmoid(acc)
    m = (t < L)[:, None] & mask_c[None, :]
    tl.store(out_ptr + b * L * d + t[:, None] * d + cols[None, :], out.to(out_ptr.dtype.element_ty), mask=m)


@triton.jit
def conv_bwd_kernel(x_ptr, w_ptr, bias_ptr, dout_ptr, dx_ptr, dw_ptr, dbias_ptr, L, d, sx_b, sx_t, sg_b, sg_t,
                    K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    """dx (N, L, d) contiguous; dw (N·tiles, d, K) and dbias (N·tiles, d) float32 partials per time tile.
    The pre-activation gradient at the K shifted positions a dx row needs is recomputed, not stored."""
    pid_t, pid_c, b = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    t = pid_t * BT + tl.arange(0, BT)
    cols = pid_c * BC + tl.arange(0, BC)
    mask_c = cols < d
    bias = tl.load(bias_ptr + cols, mask=mask_c, other=0.0)
    x_ptr += b * sx_b
    dout_ptr += b * sg_b
    dx = tl.zeros((BT, BC), tl.float32)
    for j in tl.static_range(K):  # dp at row t + j, which reaches x_t through tap K-1-j
        tj = t + j
        pre = tl.zeros((BT, BC), tl.float32) + bias[None, :]
        for k in tl.static_range(K):
            ts = tj - (K - 1) + k
            m = ((ts >= 0) & (ts < L))[:, None] & mask_c[None, :]
            x = tl.load(x_ptr + ts[:, None] * sx_t + cols[None, :], mask=m, other=0.0).to(tl.float32)
            pre += x * tl.load(w_ptr + cols * K + k, mask=mask_c, other=0.0)[None, :]
        m = (tj < L)[:, None] & mask_c[None, :]
        g = tl.load(dout_ptr + tj[:, None] * sg_t + cols[None, :], mask=m, other=0.0).to(tl.float32)
        sig = tl.sigmoid(pre)
        dp = tl.where(m, g * sig * (1.0 + pre * (1.0 - sig)), 0.0)
        dx += dp * tl.load(w_ptr + cols * K + (K - 1 - j), mask=mask_c, other=0.0)[None, :]
        if j == 0:  # this tile's own rows: weight and bias gradients
            tile = b * tl.num_programs(0) + pid_t
            tl.store(dbias_ptr + tile * d + cols, tl.sum(dp, axis=0), mask=mask_c)
            for k in tl.static_range(K):
                ts = t - (K - 1) + k
                m = ((ts >= 0) & (ts < L))[:, None] & mask_c[None, :]
                x = tl.load(x_ptr + ts[:, None] * sx_t + cols[None, :], mask=m, other=0.0).to(tl.float32)
                tl.store(dw_ptr + tile * d * K + cols * K + k, tl.sum(dp * x, axis=0), mask=mask_c)
    m = (t < L)[:, None] & mask_c[None, :]
    tl.store(dx_ptr + b * L * d + t[:, None] * d + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=m)
