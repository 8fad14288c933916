"""The selective scan in Gluon (Triton's explicit-layout dialect): time held in each thread.

Same inputs, outputs and float64 twin as :mod:`dimsum_core.ops.triton_kernels`; what differs is the
layout, which Gluon lets a kernel state instead of leaving it to Triton: a (BD, T) tile puts one
channel in each thread (BD = 32 x warps) and T consecutive steps in that thread's registers. Then

* both scans run inside a thread, with no shuffles (Triton's layout spread time over lanes, and its
  reverse scan flips its inputs and outputs through butterfly shuffles: 320 of the 414 shuffles per
  state and chunk of the Triton backward);
* the adjoint's reverse scan is a forward scan between two flips, and a flip along an in-thread axis is a
  register renaming (tl.flip's xor swaps, which the compiler folds away: 0 instructions);
* the carries between chunks (the state entering a chunk, the adjoint leaving it) are one column per
  thread in global memory, read and written by the thread that owns the channel, so no register tile is
  indexed by state and no barrier is needed. The forward keeps every chunk's entering state (float32,
  N·d·n·(L/T - 1): 63 MB a call at dimsum-L/2's 256-px shape), so the backward does not recompute them.

Only the channel sums of dB and dC cross lanes. A state's operands are loaded one state ahead, so their
latency hides behind the previous state's arithmetic (the kernels are bound by that chain, not by bytes).
Measured on an H200 (docs/benchmarks.md, session 9): the backward 3.0x and the forward 1.2x faster than
the Triton kernels at dimsum-L/2's 256-px shape; the forward is slower (0.8x) where batch x channels is
small (512 px, batch 16), since a thread walks all of L. So training runs these as a pair and inference
the Triton forward (``triton_ops.gluon_pair``).
"""

from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl

# the tile loads, elementwise helpers and the per-chunk state scan are the Triton kernels' own: called from Gluon they
# compile to the same code (checked in the PTX), the layouts coming from the Gluon tiles they are given
from dimsum_core.ops.triton_kernels import (
    LOG2E,
    _affine,
    _batch_element,
    _grad_element,
    _input_grads,
    _load_delta,
    _load_tile,
    _raw_delta,
)


@gluon.jit
def _sigmoid(x):
    return 1.0 / (1.0 + gl.exp(-x))


@gluon.jit
def _flip(x, BD: gl.constexpr, T: gl.constexpr, layout: gl.constexpr):
    """x reversed along time (axis 1, held in each thread): swaps of halves, quarters, ... as xors."""
    y = x.to(gl.int32, bitcast=True)
    if T == 8:
        y = y.reshape([BD, 2, 2, 2])
        y = y ^ gl.xor_sum(y, 1, keep_dims=True)
        y = y ^ gl.xor_sum(y, 2, keep_dims=True)
        y = y ^ gl.xor_sum(y, 3, keep_dims=True)
    elif T == 16:
        y = y.reshape([BD, 2, 2, 2, 2])
        y = y ^ gl.xor_sum(y, 1, keep_dims=True)
        y = y ^ gl.xor_sum(y, 2, keep_dims=True)
        y = y ^ gl.xor_sum(y, 3, keep_dims=True)
        y = y ^ gl.xor_sum(y, 4, keep_dims=True)
    else:
        gl.static_assert(T == 32, "T must be 8, 16 or 32")
        y = y.reshape([BD, 2, 2, 2, 2, 2])
        y = y ^ gl.xor_sum(y, 1, keep_dims=True)
        y = y ^ gl.xor_sum(y, 2, keep_dims=True)
        y = y ^ gl.xor_sum(y, 3, keep_dims=True)
        y = y ^ gl.xor_sum(y, 4, keep_dims=True)
        y = y ^ gl.xor_sum(y, 5, keep_dims=True)
    return gl.convert_layout(y.reshape([BD, T]).to(gl.float32, bitcast=True), layout)


@gluon.jit
def _halves(x, BD: gl.constexpr, n: gl.constexpr):
    """(BD, n) -> its even and odd steps, (BD, n / 2) each (in each thread's registers)."""
    return gl.split(x.reshape([BD, n // 2, 2]))


@gluon.jit
def _interleave(a, b, BD: gl.constexpr, n: gl.constexpr):
    """a0 b0 a1 b1 ... of two (BD, n / 2) tiles (b brought to a's layout: the same registers)."""
    return gl.join(a, gl.convert_layout(b, a.type.layout)).reshape([BD, n])


@gluon.jit
def _shift_in(x, edge, BD: gl.constexpr, T: gl.constexpr, layout: gl.constexpr):
    """x one step earlier along time (axis 1, in each thread): y_t = x_{t+1}, the last step ``edge`` (BD,).
    shift(x) interleaves x's odd steps with shift(x's even steps), down to one step: register moves."""
    e1, o1 = _halves(x, BD, T)
    e2, o2 = _halves(e1, BD, T // 2)
    e3, o3 = _halves(e2, BD, T // 4)
    s = gl.expand_dims(edge, 1)
    if T >= 16:
        e4, o4 = _halves(e3, BD, T // 8)
        if T == 32:
            _, o5 = _halves(e4, BD, 2)
            s = _interleave(o5, s, BD, 2)
        s = _interleave(o4, s, BD, T // 8)
    s = _interleave(o3, s, BD, T // 4)
    s = _interleave(o2, s, BD, T // 2)
    return gl.convert_layout(_interleave(o1, s, BD, T), layout)


@gluon.jit
def _mask(mask_d, t, L, EVEN: gl.constexpr):
    """The chunk's tile mask; with EVEN (L a multiple of T) only channels are masked, so the mask is
    constant along a thread's steps and its loads stay vectors."""
    if EVEN:
        return gl.broadcast(mask_d[:, None], t[None, :])[0]
    return mask_d[:, None] & (t < L)[None, :]


@gluon.jit
def _row(ptr, t, s_t, L, EVEN: gl.constexpr):
    """A per-step vector (B or C of one state) of the chunk, in float32."""
    if EVEN:
        return gl.load(ptr + t * s_t).to(gl.float32)
    return gl.load(ptr + t * s_t, mask=t < L, other=0.0).to(gl.float32)


@gluon.jit
def _state_operands(A_ptr, B_ptr, C_ptr, states_ptr, s, n, c, cols, lane, mask_d, t, L, sB_n, sB_t, sC_n, sC_t,
                    BD: gl.constexpr, EVEN: gl.constexpr):
    """State s's A (per channel), B and C (per step of the chunk) and the state entering chunk c (zero for
    the first). The kernels load state s + 1's before state s's arithmetic so its latency hides behind it."""
    A_s = gl.load(A_ptr + cols * n + s, mask=mask_d, other=0.0)
    B_s = _row(B_ptr + s * sB_n, t, sB_t, L, EVEN)
    C_s = _row(C_ptr + s * sC_n, t, sC_t, L, EVEN)
    h0 = gl.load(states_ptr + ((c - 1) * n + s) * BD + lane, mask=mask_d & (c > 0), other=0.0)
    return A_s, B_s, C_s, h0


@gluon.jit
def _prefetch(ptr, mask):
    """Asks L1 for the line at each pointer (a hint: nothing waits for it; masked lanes ask for none)."""
    gl.inline_asm_elementwise("{ .reg .pred p; setp.ne.b32 p, $2, 0; @p prefetch.global.L1 [$1]; mov.u32 $0, 0; }",
                              "=r,l,r", [ptr, mask.to(gl.int32)], dtype=gl.int32, is_pure=False, pack=1)


@gluon.jit
def _pick(second, first_ptr, second_ptr):
    """A tensor of a two-branch launch (programs with batch index N and up work on the second branch)."""
    return gl.where(second, second_ptr, first_ptr)


@gluon.jit
def _last(x, steps, i):
    """Step i of a (BD, T) tile (inside each thread: a select and a sum over its own registers)."""
    return gl.sum(gl.where(steps[None, :] == i, x, 0.0), axis=1)


@gluon.jit
def _run(a, b, h0, first):
    """h_t = a_t h_{t-1} + b_t along each thread's steps from h0 (BD,). h0 enters through the first step's input,
    so h is the scan's b part alone and the running products of a, which only a cross-lane scan needs, are
    dead code (session 11: -17% / -14% instructions in the forward's / backward's state loop, -6% / -4% time)."""
    b = b + gl.where(first[None, :], a * h0[:, None], 0.0)
    return gl.associative_scan((a, b), 1, _affine)[1]


# L == 1 specialised to a constant crashes Triton 3.6's LLVM lowering of this kernel (an assertion in
# ConvertTritonGPUToLLVM), so the length stays a runtime value; the output's strides are passed apart,
# specialised, so a unit stride is known when the kernel compiles
@gluon.jit(do_not_specialize=["L", "N"])
def scan_fwd_kernel(
    u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, A_ptr, D_ptr, bias_ptr, out_ptr,
    u2_ptr, delta2_ptr, z2_ptr, B2_ptr, C2_ptr, A2_ptr, D2_ptr, bias2_ptr, out2_ptr, states_ptr,
    N, L, d, n, so_b, so_d, so_t,
    su_b, su_d, su_t, sdl_b, sdl_d, sdl_t, sz_b, sz_d, sz_t, sB_b, sB_n, sB_t, sC_b, sC_n, sC_t,
    T: gl.constexpr, BD: gl.constexpr, EVEN: gl.constexpr, U: gl.constexpr,
):
    """out = y · silu(z), (N, d, L) at strides so_*: training writes it channels-last, so a lane's stores
    are still coalesced (a warp writes 32 neighbouring channels of a step) and out_proj reads it as rows with
    no copy. states: float32 (N, blocks, chunks - 1, n, BD), the
    state entering each chunk after the first, kept for the backward (which then need not recompute them).
    The state loop runs U states an iteration (n a multiple of U), so ptxas can interleave their chains.
    Two branches (a DiM block's two scans: same shapes and strides, their own tensors) run as one launch of
    batch 2N, the second's tensors the *2 pointers; states: (2N, ...). One branch passes N = its batch."""
    gl.static_assert(BD == 32 * gl.num_warps(), "one channel a thread: BD = 32 x warps")
    TILE: gl.constexpr = gl.BlockedLayout([1, T], [32, 1], [gl.num_warps(), 1], [1, 0])
    COL: gl.constexpr = gl.SliceLayout(1, TILE)
    ROW: gl.constexpr = gl.SliceLayout(0, TILE)
    pid_d, b = gl.program_id(0), gl.program_id(1).to(gl.int64)
    second = b >= N
    u_ptr, delta_ptr, z_ptr = _pick(second, u_ptr, u2_ptr), _pick(second, delta_ptr, delta2_ptr), _pick(second, z_ptr, z2_ptr)
    B_ptr, C_ptr, A_ptr = _pick(second, B_ptr, B2_ptr), _pick(second, C_ptr, C2_ptr), _pick(second, A_ptr, A2_ptr)
    D_ptr, bias_ptr, out_ptr = _pick(second, D_ptr, D2_ptr), _pick(second, bias_ptr, bias2_ptr), _pick(second, out_ptr, out2_ptr)
    e = gl.where(second, b - N, b)  # the batch element within its branch
    lane = gl.arange(0, BD, layout=COL)
    cols = pid_d * BD + lane
    steps = gl.arange(0, T, layout=ROW)
    first = steps == 0
    mask_d = cols < d
    Dv = gl.load(D_ptr + cols, mask=mask_d, other=0.0)
    bias = gl.load(bias_ptr + cols, mask=mask_d, other=0.0)
    u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr = _batch_element(e, u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr,
                                                           su_b, sdl_b, sz_b, sB_b, sC_b)
    out_ptr += e * so_b
    states_ptr += (b * gl.num_programs(0) + pid_d) * (gl.cdiv(L, T) - 1) * n * BD
    for t0 in range(0, L, T):
        c = t0 // T
        t = t0 + steps
        mask = _mask(mask_d, t, L, EVEN)
        # the next chunk's B and C rows (n of each, T steps: one sector a row) into L1, lane i asking for row i:
        # the state loop's per-state loads then hit L1 instead of L2
        nxt_t = gl.minimum(t0 + T, L - 1)
        row = gl.where(lane < n, lane, lane - n)
        _prefetch(gl.where(lane < n, B_ptr + row * sB_n + nxt_t * sB_t, C_ptr + row * sC_n + nxt_t * sC_t), lane < 2 * n)
        u = _load_tile(u_ptr, su_d, su_t, cols, t, mask)
        delta = _load_delta(delta_ptr, sdl_d, sdl_t, cols, t, mask, bias)
        du = delta * u
        y = Dv[:, None] * u
        nxt = _state_operands(A_ptr, B_ptr, C_ptr, states_ptr, 0, n, c, cols, lane, mask_d, t, L,
                              sB_n, sB_t, sC_n, sC_t, BD, EVEN)
        for s0 in range(0, n, U):
            for j in gl.static_range(U):
                s = s0 + j
                A_s, B_s, C_s, h0 = nxt
                # the last state reloads itself rather than read past A, B, C
                nxt = _state_operands(A_ptr, B_ptr, C_ptr, states_ptr, gl.minimum(s + 1, n - 1), n, c, cols,
                                      lane, mask_d, t, L, sB_n, sB_t, sC_n, sC_t, BD, EVEN)
                h = _run(gl.exp2(delta * (A_s * LOG2E)[:, None]), du * B_s[None, :], h0, first)
                y += h * C_s[None, :]
                if t0 + T < L:
                    gl.store(states_ptr + (c * n + s) * BD + lane, _last(h, steps, T - 1))
        z = _load_tile(z_ptr, sz_d, sz_t, cols, t, mask)
        out = y * z * _sigmoid(z)
        gl.store(out_ptr + cols[:, None] * so_d + t[None, :] * so_t, out.to(out_ptr.dtype.element_ty), mask=mask)


@gluon.jit(do_not_specialize=["N"])
def scan_bwd_kernel(
    u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr, A_ptr, D_ptr, bias_ptr, dout_ptr, du_ptr, ddelta_ptr, dz_ptr,
    u2_ptr, delta2_ptr, z2_ptr, B2_ptr, C2_ptr, A2_ptr, D2_ptr, bias2_ptr, dout2_ptr, du2_ptr, ddelta2_ptr, dz2_ptr,
    dB_ptr, dC_ptr, dA_ptr, dD_ptr, dbias_ptr, states_ptr, carry_ptr,
    N, L, d, n,
    su_b, su_d, su_t, sdl_b, sdl_d, sdl_t, sz_b, sz_d, sz_t, sB_b, sB_n, sB_t, sC_b, sC_n, sC_t,
    sg_b, sg_d, sg_t,
    T: gl.constexpr, BD: gl.constexpr, EVEN: gl.constexpr,
):
    """Gradients of scan_fwd_kernel's output. du, ddelta, dz: (N, d, L) contiguous, input dtype.
    dB, dC: float32 (N, blocks, n, L) partials, one per channel block; dA: float32 (N, d, n), dD,
    dbias: float32 (N, d); the caller sums them over the batch. states: the forward's, entering each
    chunk; carry: float32 (N, blocks, n, BD), the adjoint leaving the chunk before. Two branches as the forward
    says: du, ddelta, dz per branch (the *2 pointers), the float32 partials and scratch (2N, ...)."""
    gl.static_assert(BD == 32 * gl.num_warps(), "one channel a thread: BD = 32 x warps")
    TILE: gl.constexpr = gl.BlockedLayout([1, T], [32, 1], [gl.num_warps(), 1], [1, 0])
    COL: gl.constexpr = gl.SliceLayout(1, TILE)
    ROW: gl.constexpr = gl.SliceLayout(0, TILE)
    # the channel sums: each thread holds T channels of one step (through shared memory), sums them in
    # registers, and only 32 / T lanes and the warps remain to combine
    SUM: gl.constexpr = gl.BlockedLayout([T, 1], [32 // T, T], [gl.num_warps(), 1], [0, 1])
    SUM_ROW: gl.constexpr = gl.SliceLayout(0, SUM)
    blk, b = gl.program_id(0), gl.program_id(1).to(gl.int64)
    second = b >= N
    u_ptr, delta_ptr, z_ptr = _pick(second, u_ptr, u2_ptr), _pick(second, delta_ptr, delta2_ptr), _pick(second, z_ptr, z2_ptr)
    B_ptr, C_ptr, A_ptr = _pick(second, B_ptr, B2_ptr), _pick(second, C_ptr, C2_ptr), _pick(second, A_ptr, A2_ptr)
    D_ptr, bias_ptr, dout_ptr = _pick(second, D_ptr, D2_ptr), _pick(second, bias_ptr, bias2_ptr), _pick(second, dout_ptr, dout2_ptr)
    du_ptr, ddelta_ptr, dz_ptr = _pick(second, du_ptr, du2_ptr), _pick(second, ddelta_ptr, ddelta2_ptr), _pick(second, dz_ptr, dz2_ptr)
    e = gl.where(second, b - N, b)  # the batch element within its branch
    lane = gl.arange(0, BD, layout=COL)
    steps = gl.arange(0, T, layout=ROW)
    first = steps == 0
    sum_steps = gl.arange(0, T, layout=SUM_ROW)
    n_chunks = gl.cdiv(L, T)
    cols = blk * BD + lane
    mask_d = cols < d
    Dv = gl.load(D_ptr + cols, mask=mask_d, other=0.0)
    bias = gl.load(bias_ptr + cols, mask=mask_d, other=0.0)
    u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr = _batch_element(e, u_ptr, delta_ptr, z_ptr, B_ptr, C_ptr,
                                                           su_b, sdl_b, sz_b, sB_b, sC_b)
    # dA, like the other partials, at the joint index b: moved by the first branch's N batch elements first
    dout_ptr, du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr = _grad_element(
        e, b * gl.num_programs(0) + blk, d, L, n, dout_ptr, sg_b, du_ptr, ddelta_ptr, dz_ptr, dA_ptr + (b - e) * d * n,
        dB_ptr, dC_ptr)
    states_ptr += (b * gl.num_programs(0) + blk) * (n_chunks - 1) * n * BD
    carry_ptr += (b * gl.num_programs(0) + blk) * n * BD
    dD_acc = gl.zeros([BD], gl.float32, COL)
    dbias_acc = gl.zeros([BD], gl.float32, COL)
    for ci in range(0, n_chunks):
        c = n_chunks - 1 - ci
        t = c * T + steps
        t_sum = c * T + sum_steps
        mask = _mask(mask_d, t, L, EVEN)
        mask_next = mask_d[:, None] & (t + 1 < L)[None, :]
        delta = _load_delta(delta_ptr, sdl_d, sdl_t, cols, t, mask, bias)
        d_edge = _last(_load_delta(delta_ptr, sdl_d, sdl_t, cols, t + 1, mask_next, bias), steps, T - 1)
        z = _load_tile(z_ptr, sz_d, sz_t, cols, t, mask)
        gy = _load_tile(dout_ptr, sg_d, sg_t, cols, t, mask) * z * _sigmoid(z)  # dL/dy
        du = delta * _load_tile(u_ptr, su_d, su_t, cols, t, mask)
        y = gl.zeros([BD, T], gl.float32, TILE)
        qB = gl.zeros([BD, T], gl.float32, TILE)  # sum_s q B
        wA = gl.zeros([BD, T], gl.float32, TILE)  # sum_s dL/d(delta·A) A
        # state s + 1's operands, adjoint carry and dA are loaded before state s's arithmetic
        nxt = _state_operands(A_ptr, B_ptr, C_ptr, states_ptr, 0, n, c, cols, lane, mask_d, t, L,
                              sB_n, sB_t, sC_n, sC_t, BD, EVEN)
        q_after_n = gl.load(carry_ptr + lane, mask=mask_d & (ci > 0), other=0.0)
        dA_n = gl.load(dA_ptr + cols * n, mask=mask_d & (ci > 0), other=0.0)
        for s in range(0, n):
            A_s, B_s, C_s, h0 = nxt
            q_after, dA_in = q_after_n, dA_n
            s1 = gl.minimum(s + 1, n - 1)  # the last state reloads itself rather than read past A, B, C
            nxt = _state_operands(A_ptr, B_ptr, C_ptr, states_ptr, s1, n, c, cols, lane, mask_d, t, L,
                                  sB_n, sB_t, sC_n, sC_t, BD, EVEN)
            q_after_n = gl.load(carry_ptr + s1 * BD + lane, mask=mask_d & (ci > 0), other=0.0)
            dA_n = gl.load(dA_ptr + cols * n + s1, mask=mask_d & (ci > 0), other=0.0)
            a = gl.exp2(delta * (A_s * LOG2E)[:, None])
            b_in = du * B_s[None, :]
            h = _run(a, b_in, h0, first)
            y += h * C_s[None, :]
            # adjoint q_t = C_t gy_t + a_{t+1} q_{t+1}: a forward scan between two in-register flips; a_{t+1}
            # is the next step's a (one exp2 a state for the chunk's last step, not one a step)
            a_next = _shift_in(a, gl.exp2(d_edge * (A_s * LOG2E)), BD, T, TILE)
            q = _flip(_run(_flip(a_next, BD, T, TILE), _flip(C_s[None, :] * gy, BD, T, TILE), q_after, first),
                      BD, T, TILE)
            gl.store(carry_ptr + s * BD + lane, _last(q, steps, 0))
            qB += q * B_s[None, :]
            w = q * (h - b_in)  # dL/d(delta·A) = q_t a_t h_{t-1}
            wA += w * A_s[:, None]
            dA = dA_in + gl.sum(w * delta, axis=1)
            gl.store(dA_ptr + cols * n + s, dA, mask=mask_d)
            # dB_t = sum_d q_t du_t, dC_t = sum_d h_t gy_t over this block's channels
            dB_s = gl.sum(gl.convert_layout(q * du, SUM), axis=0)
            dC_s = gl.sum(gl.convert_layout(h * gy, SUM), axis=0)
            if EVEN:
                gl.store(dB_ptr + s * L + t_sum, dB_s)
                gl.store(dC_ptr + s * L + t_sum, dC_s)
            else:
                gl.store(dB_ptr + s * L + t_sum, dB_s, mask=t_sum < L)
                gl.store(dC_ptr + s * L + t_sum, dC_s, mask=t_sum < L)
        # what the state loop does not use is loaded again (cache hits), not held in registers
        u = _load_tile(u_ptr, su_d, su_t, cols, t, mask)
        z = _load_tile(z_ptr, sz_d, sz_t, cols, t, mask)
        delta_raw = _raw_delta(delta_ptr, sdl_d, sdl_t, cols, t, mask, bias)
        dout = _load_tile(dout_ptr, sg_d, sg_t, cols, t, mask)
        dD_t, dbias_t = _input_grads(du_ptr, ddelta_ptr, dz_ptr, cols, t, L, mask, u, z, delta, delta_raw, dout,
                                     gy, y, qB, wA, Dv, _sigmoid(z), _sigmoid(delta_raw))
        dD_acc += dD_t
        dbias_acc += dbias_t
    gl.store(dD_ptr + b * d + cols, dD_acc, mask=mask_d)
    gl.store(dbias_ptr + b * d + cols, dbias_acc, mask=mask_d)
