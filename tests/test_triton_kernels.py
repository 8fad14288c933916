"""dimsum's GPU kernels (dimsum_core.ops.gluon_kernels, dimsum_core.ops.triton_kernels) against their
float64 reference twins.

On the GPU, for both scans (the Gluon one, the default where Triton has Gluon, and the Triton one): edge
shapes in float32 and bf16, every gradient, mamba-ssm's ``selective_scan_fn`` where it is installed,
opcheck and determinism (the compiled mixer: tests/test_selective_scan_op.py). On the CPU, where
Triton is installed, the same kernels run in Triton's interpreter (conftest sets ``TRITON_INTERPRET=1``
without CUDA) at one small shape that still crosses every boundary: several chunks, a partial last
chunk, a partial channel block, a state size that is not a power of two, and a backward program that
walks two channel blocks. The Gluon kernels, which the interpreter cannot run, are compiled for sm_90 there, and
their launches are checked against their signatures.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from numerics import rel_l2

from dimsum_core.ops import triton_ops
from dimsum_core.ops.causal_conv1d import causal_conv1d
from dimsum_core.ops.selective_scan import selective_scan_reference
from dimsum_core.ops.triton_ops import causal_conv1d_silu_triton, selective_scan_triton

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
needs_gluon = pytest.mark.skipif(importlib.util.find_spec("triton") is None
                                 or importlib.util.find_spec("triton.experimental.gluon") is None,
                                 reason="this Triton has no Gluon")


@pytest.fixture(params=["gluon", "triton"])
def scan_kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a GPU test once with each scan implementation behind ``selective_scan_triton``."""
    if request.param == "gluon" and triton_ops.scan_kernels() != "gluon":
        pytest.skip("the Gluon kernels need Triton >= 3.6")
    monkeypatch.setattr(triton_ops, "_SCAN_KERNELS", request.param)
    return request.param


def scan_inputs(batch: int, length: int, dim: int, state: int, dtype: torch.dtype, device: str, seed: int,
                channels_last: bool = False):
    """Scan inputs (N, d, L) and (N, n, L), time-contiguous or (``channels_last``) transposed views of
    (N, L, d) memory; delta_bias near -1 gives the small steps of a trained Mamba."""
    g = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape: int, dt: torch.dtype = dtype, scale: float = 1.0) -> torch.Tensor:
        return (scale * torch.randn(*shape, generator=g, device=device, dtype=torch.float32)).to(dt)

    def seq(channels: int, scale: float = 1.0) -> torch.Tensor:
        if channels_last:
            return randn(batch, length, channels, scale=scale).transpose(1, 2)
        return randn(batch, channels, length, scale=scale)

    return [seq(dim), seq(dim, 0.5), -torch.rand(dim, state, generator=g, device=device) - 0.1, seq(state),
            seq(state), randn(dim, dt=torch.float32), seq(dim), randn(dim, dt=torch.float32, scale=0.5) - 1.0]


def reference(inputs: list[torch.Tensor], grad_out: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    xs = [x.detach().double().requires_grad_() for x in inputs]
    out = selective_scan_reference(*xs, delta_softplus=True)
    return out, list(torch.autograd.grad(out, xs, grad_out.double()))


def triton_run(inputs: list[torch.Tensor], grad_out: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    xs = [x.detach().clone().requires_grad_() for x in inputs]
    out = selective_scan_triton(*xs)
    return out, list(torch.autograd.grad(out, xs, grad_out))


def assert_matches_reference(inputs: list[torch.Tensor], tol: float, channels_last_grad: bool = False) -> None:
    """``channels_last_grad``: the output's gradient as out_proj's backward hands it over, a transposed
    view of (N, L, d) memory (the Gluon backward reads it as it is)."""
    g = torch.Generator(device=inputs[0].device).manual_seed(123)
    n, d, length = inputs[0].shape
    grad_out = torch.randn(n, length, d, generator=g, device=inputs[0].device).to(inputs[0].dtype).transpose(1, 2)
    if not channels_last_grad:
        grad_out = grad_out.contiguous()
    out, grads = triton_run(inputs, grad_out)
    ref, ref_grads = reference(inputs, grad_out)
    assert out.dtype == inputs[0].dtype and out.shape == inputs[0].shape
    assert rel_l2(out, ref) < tol
    for name, x, g_, r in zip(NAMES, inputs, grads, ref_grads, strict=True):
        assert g_.dtype == x.dtype and g_.shape == x.shape, name
        assert torch.isfinite(g_).all(), name
        if r.norm() > 0:  # dA is exactly zero for a one-step sequence
            assert rel_l2(g_, r) < tol, name


def assert_conv_matches_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, tol: float) -> None:
    grad_out = torch.randn(x.shape, device=x.device).to(x.dtype)
    xs = [t.detach().clone().requires_grad_() for t in (x, weight, bias)]
    out = causal_conv1d_silu_triton(*xs)
    grads = torch.autograd.grad(out, xs, grad_out)
    ref_xs = [t.detach().double().requires_grad_() for t in (x, weight, bias)]
    ref = F.silu(causal_conv1d(ref_xs[0].transpose(1, 2), *ref_xs[1:])).transpose(1, 2)
    ref_grads = torch.autograd.grad(ref, ref_xs, grad_out.double())
    assert out.dtype == x.dtype and rel_l2(out, ref) < tol
    for g_, r in zip(grads, ref_grads, strict=True):
        assert rel_l2(g_, r) < tol


@needs_triton
@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU tests run the compiled kernels")
def test_kernels_in_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Measured: ~15 s on the 2-core CI machine (the interpreter runs each program's tile ops in numpy)."""
    monkeypatch.setattr(triton_ops, "SCAN_FWD", (8, 16, 4))  # chunks of at most 8 steps
    monkeypatch.setattr(triton_ops, "SCAN_BWD", (8, 16, 4))
    monkeypatch.setattr(triton_ops, "_block_groups", lambda batch, n_blocks, warps, device: 2)
    # L = 19: chunks of 8, 8 and 3; d = 20: blocks of 16 and 4; n = 3 (padded to 4); strided inputs
    assert_matches_reference(scan_inputs(2, 19, 20, 3, torch.float32, "cpu", seed=0, channels_last=True), tol=1e-5,
                             channels_last_grad=True)
    g = torch.Generator().manual_seed(1)
    conv_inputs = (torch.randn(2, 37, 20, generator=g).transpose(1, 2), torch.randn(20, 1, 4, generator=g),
                   torch.randn(20, generator=g))
    assert_conv_matches_reference(*conv_inputs, tol=1e-5)
    # time tiles of 16 steps (37 = 16 + 16 + 5) and channel blocks of 8: the backward's second pass reads
    # the pre-activation gradient of the next tile's first steps
    monkeypatch.setattr(triton_ops, "CONV", (16, 8, 4))
    assert_conv_matches_reference(*conv_inputs, tol=1e-5)


# d_state 16, 5 and 6: the Gluon forward takes 4, 1 and 2 states an iteration (triton_ops.GLUON_FWD_UNROLL)
@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1, 1, 64, 16), (2, 37, 100, 16), (1, 1024, 48, 16), (3, 256, 1024, 16),
                                   (2, 300, 40, 5), (2, 64, 40, 6)], ids=str)
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)], ids=["float32", "bf16"])
def test_scan_matches_float64_reference(shape: tuple[int, int, int, int], dtype: torch.dtype, tol: float,
                                        scan_kernels: str) -> None:
    assert_matches_reference(scan_inputs(*shape, dtype, "cuda", seed=sum(shape)), tol)


@pytest.mark.gpu
def test_scan_backward_walks_chunks_and_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several chunks, and channel blocks walked in turn by each backward program (Triton)."""
    monkeypatch.setattr(triton_ops, "_SCAN_KERNELS", "triton")
    monkeypatch.setattr(triton_ops, "SCAN_BWD", (64, 8, 2))
    monkeypatch.setattr(triton_ops, "_block_groups", lambda batch, n_blocks, warps, device: 3)
    assert_matches_reference(scan_inputs(2, 300, 72, 16, torch.float32, "cuda", seed=9), 1e-5)


# Compiles the Gluon scans for sm_90 and prints one JSON line per kernel. It runs in a fresh interpreter without
# TRITON_INTERPRET: under the interpreter (conftest sets it on a CPU) the shared Triton helpers are interpreted
# functions, which a Gluon kernel cannot call.
_COMPILE_GLUON = """
import json, sys, triton
from triton.backends.compiler import GPUTarget
from triton.experimental.gluon._runtime import GluonASTSource
from dimsum_core.ops import gluon_kernels
BF16 = {"u_ptr", "delta_ptr", "z_ptr", "B_ptr", "C_ptr", "dout_ptr", "du_ptr", "ddelta_ptr", "dz_ptr", "out_ptr"}
for (steps, warps), even, unroll in json.loads(sys.argv[1]):
    for name in ("scan_fwd_kernel", "scan_bwd_kernel"):
        fn = getattr(gluon_kernels, name)
        constants = {"T": steps, "BD": 32 * warps, "EVEN": even, "U": unroll}
        constants = {k: v for k, v in constants.items() if k in fn.arg_names}
        signature = {a: "constexpr" if a in constants else ("*bf16" if a.replace("2_ptr", "_ptr") in BF16 else "*fp32")
                     if a.endswith("_ptr") else "i32" for a in fn.arg_names}
        kernel = triton.compile(GluonASTSource(fn, signature, constants), target=GPUTarget("cuda", 90, 32),
                                options={"num_warps": warps})
        print(json.dumps({"kernel": name, "tile": [steps, warps], "cubin_bytes": len(kernel.asm["cubin"])}), flush=True)
"""


@needs_gluon
def test_gluon_kernels_compile_for_hopper_without_a_gpu() -> None:
    """Triton's interpreter cannot run Gluon, but Triton compiles it for sm_90 on any machine: the training tile
    and the two others the GPU tests run (8 and 32 steps a thread, so both branches of the in-register shift),
    with and without a partial last chunk, forward and backward. A kernel change that does not compile fails
    here, in CI, before a GPU sees it. Measured: ~15 s (one process, six compiles)."""
    n = 16
    cases = [(list(triton_ops.GLUON_SCAN), True, math.gcd(n, triton_ops.GLUON_FWD_UNROLL)), ([8, 1], False, 1),
             ([32, 4], True, 2)]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", _COMPILE_GLUON, json.dumps(cases)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    compiled = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(c["kernel"], c["tile"]) for c in compiled] == [
        (k, tile) for tile, _, _ in cases for k in ("scan_fwd_kernel", "scan_bwd_kernel")]
    assert all(c["cubin_bytes"] > 10_000 for c in compiled)


class _CheckedLaunch:
    """Stands in for a Gluon kernel on the CPU: each launch's arguments must bind to the kernel's parameters,
    every constexpr given by name; the launch records them and runs nothing."""

    def __init__(self, kernel) -> None:  # noqa: ANN001
        self.kernel, self.launches = kernel, []

    def __getitem__(self, grid: tuple[int, ...]):  # noqa: ANN204
        def launch(*args, num_warps: int, **constants) -> None:  # noqa: ANN002, ANN003
            bound = inspect.signature(self.kernel.fn).bind(*args, **constants)
            constexprs = {self.kernel.arg_names[i] for i in self.kernel.constexprs}
            assert set(constants) == constexprs, (set(constants), constexprs)
            self.launches.append((grid, num_warps, bound.arguments))
        return launch


@needs_gluon
def test_gluon_launches_match_the_kernels_signatures(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ops' launch code (buffers, strides, constexprs) against the kernels' parameters, on the CPU: a
    parameter added to a kernel but not to its launch, or the reverse, fails here and not first on a GPU."""
    from dimsum_core.ops import gluon_kernels

    fwd, bwd = _CheckedLaunch(gluon_kernels.scan_fwd_kernel), _CheckedLaunch(gluon_kernels.scan_bwd_kernel)
    monkeypatch.setattr(gluon_kernels, "scan_fwd_kernel", fwd)
    monkeypatch.setattr(gluon_kernels, "scan_bwd_kernel", bwd)
    u, delta, A, B, C, D, z, bias = scan_inputs(3, 40, 72, 6, torch.bfloat16, "cpu", seed=0)
    out, states = torch.ops.dimsum.gluon_scan_fwd(u, delta, A, B, C, D, z, bias)
    grads = torch.ops.dimsum.gluon_scan_bwd(u, delta, A, B, C, D, z, bias, states, torch.ones_like(u))
    steps, warps = triton_ops.GLUON_SCAN
    blocks = -(-72 // (32 * warps))
    (grid, nw, args), = fwd.launches
    assert grid == (blocks, 3) and nw == warps and args["U"] == math.gcd(6, triton_ops.GLUON_FWD_UNROLL)
    assert args["out_ptr"] is out and args["L"] == 40 and args["EVEN"] == (40 % steps == 0)
    # channels-last, so out_proj reads out's transpose as rows with no copy
    assert (args["so_b"], args["so_d"], args["so_t"]) == (40 * 72, 1, 72) and out.transpose(1, 2).is_contiguous()
    assert states.shape == (3, blocks, -(-40 // steps) - 1, 6, 32 * warps)
    (grid, nw, args), = bwd.launches
    assert grid == (blocks, 3) and args["states_ptr"] is states and args["T"] == steps
    assert [g.shape for g in grads] == [x.shape for x in (u, delta, A, B, C, D, z, bias)]
    # one launch for two branches: programs 3 and up on the second's tensors, the partials and states for both
    first = (u, delta, A, B, C, D, z, bias)
    second = scan_inputs(3, 40, 72, 6, torch.bfloat16, "cpu", seed=1, channels_last=True)
    out, out2, states = torch.ops.dimsum.gluon_scan_both_fwd(*first, *second)
    (grid, _, args) = fwd.launches[-1]
    assert grid == (blocks, 6) and args["N"] == 3 and args["out_ptr"] is out and args["out2_ptr"] is out2
    assert args["u_ptr"] is u and args["A2_ptr"] is second[2] and states.shape[0] == 6
    # the second branch's u in another layout is read in the first's strides (a copy of the same values)
    assert args["u2_ptr"].stride() == u.stride() and torch.equal(args["u2_ptr"], second[0])
    grads = torch.ops.dimsum.gluon_scan_both_bwd(*first, *second, states, out, out2)
    (grid, _, args) = bwd.launches[-1]
    assert grid == (blocks, 6) and args["N"] == 3 and args["du_ptr"] is grads[0] and args["dz2_ptr"] is grads[14]
    assert args["dA_ptr"].shape == (6, 72, 6) and args["dB_ptr"].shape == (6, blocks, 6, 40)
    assert [g.shape for g in grads] == [x.shape for x in (*first, *second)]


@pytest.mark.gpu
@pytest.mark.parametrize("tile", [(8, 1), (32, 4)], ids=str)
def test_gluon_scan_other_tiles(tile: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """The Gluon tiles besides the default: 8 and 32 steps a thread, one and four warps; L = 300 ends in
    a partial chunk of either, d = 72 in a partial channel block."""
    if triton_ops.scan_kernels() != "gluon":
        pytest.skip("the Gluon kernels need Triton >= 3.6")
    monkeypatch.setattr(triton_ops, "GLUON_SCAN", tile)
    assert_matches_reference(scan_inputs(2, 300, 72, 16, torch.float32, "cuda", seed=9), 1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bf16"])
def test_gluon_both_branches_equal_two_scans(dtype: torch.dtype) -> None:
    """A DiM block's two scans as one launch: the output and all 16 gradients bitwise those of the two scans
    alone, the second branch in another layout (read through a copy in the first's strides), its gradient
    channels-last; L = 300 ends in a partial chunk, d = 72 in a partial channel block."""
    if triton_ops.scan_kernels() != "gluon":
        pytest.skip("the Gluon kernels need Triton >= 3.6")
    from dimsum_core.ops.triton_ops import selective_scan_triton_both

    first = scan_inputs(3, 300, 72, 16, dtype, "cuda", seed=11)
    second = scan_inputs(3, 300, 72, 16, dtype, "cuda", seed=12, channels_last=True)
    g = torch.Generator(device="cuda").manual_seed(5)
    grad_out = torch.randn(3, 72, 300, device="cuda", generator=g).to(dtype)
    grad_out2 = torch.randn(3, 300, 72, device="cuda", generator=g).to(dtype).transpose(1, 2)
    xs = [x.detach().clone().requires_grad_() for x in (*first, *second)]
    out, out2 = selective_scan_triton_both(xs[:8], xs[8:])
    grads = torch.autograd.grad((out, out2), xs, (grad_out, grad_out2))
    for branch, dout, got_out, got_grads in ((first, grad_out, out, grads[:8]), (second, grad_out2, out2, grads[8:])):
        want_out, want_grads = triton_run(branch, dout)
        assert torch.equal(got_out, want_out)
        for name, a, b in zip(NAMES, got_grads, want_grads, strict=True):
            assert torch.equal(a, b), name
    torch.library.opcheck(torch.ops.dimsum.gluon_scan_both_fwd.default, tuple(xs))


@pytest.mark.gpu
def test_scan_takes_any_strides(scan_kernels: str) -> None:
    assert_matches_reference(scan_inputs(2, 300, 72, 16, torch.float32, "cuda", seed=4, channels_last=True), 1e-5,
                             channels_last_grad=True)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)], ids=["float32", "bf16"])
def test_conv_matches_float64_reference(dtype: torch.dtype, tol: float) -> None:
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(3, 200, 301, device="cuda", generator=g).to(dtype)
    assert_conv_matches_reference(x, torch.randn(200, 1, 4, device="cuda", generator=g),
                                  torch.randn(200, device="cuda", generator=g), tol)


@pytest.mark.gpu
def test_backward_is_deterministic(scan_kernels: str) -> None:
    """No atomics: two backward passes are bitwise equal."""
    inputs = scan_inputs(4, 256, 512, 16, torch.bfloat16, "cuda", seed=5)
    grad_out = torch.randn(inputs[0].shape, device="cuda").to(torch.bfloat16)
    _, first = triton_run(inputs, grad_out)
    _, second = triton_run(inputs, grad_out)
    for name, a, b in zip(NAMES, first, second, strict=True):
        assert torch.equal(a, b), name


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_mamba_ssm_selective_scan_fn(dtype: torch.dtype, scan_kernels: str) -> None:
    if importlib.util.find_spec("mamba_ssm") is None:
        pytest.skip("mamba-ssm is not installed")
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    inputs = scan_inputs(2, 513, 64, 16, dtype, "cuda", seed=7)
    grad_out = torch.randn(inputs[0].shape, device="cuda").to(dtype)
    out, grads = triton_run(inputs, grad_out)
    xs = [x.detach().clone().requires_grad_() for x in inputs]
    u, delta, A, B, C, D, z, bias = xs
    ref = selective_scan_fn(u, delta, A, B, C, D, z=z, delta_bias=bias, delta_softplus=True)
    ref_grads = torch.autograd.grad(ref, xs, grad_out)
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    assert rel_l2(out, ref) < tol
    for name, g_, r in zip(NAMES, grads, ref_grads, strict=True):
        assert rel_l2(g_, r) < tol, name


@pytest.mark.gpu
def test_opcheck() -> None:
    u, delta, A, B, C, D, z, bias = scan_inputs(2, 40, 32, 16, torch.float32, "cuda", seed=3)
    args = [x.requires_grad_() for x in (u, delta, A, B, C, D, z, bias)]
    torch.library.opcheck(torch.ops.dimsum.triton_scan_fwd.default, tuple(args))
    if triton_ops.scan_kernels() == "gluon":
        torch.library.opcheck(torch.ops.dimsum.gluon_scan_fwd.default, tuple(args))
    x = torch.randn(2, 32, 40, device="cuda", requires_grad=True)
    w = torch.randn(32, 4, device="cuda", requires_grad=True)
    b = torch.randn(32, device="cuda", requires_grad=True)
    torch.library.opcheck(torch.ops.dimsum.triton_conv_silu_fwd.default, (x, w, b))


def test_gluon_pair_runs_where_a_backward_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training takes the Gluon pair (its backward reads the forward's states); inference, and machines
    without Gluon, the Triton forward."""
    x, w = torch.ones(2), torch.ones(2, requires_grad=True)
    monkeypatch.setattr(triton_ops, "_SCAN_KERNELS", "gluon")
    assert triton_ops.gluon_pair(x, w) and not triton_ops.gluon_pair(x, x)
    with torch.no_grad():
        assert not triton_ops.gluon_pair(x, w)
    monkeypatch.setattr(triton_ops, "_SCAN_KERNELS", "triton")
    assert not triton_ops.gluon_pair(x, w)


@needs_triton
@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU tests run the compiled kernels")
def test_mixer_pair_in_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two Mambas as a pair on dimsum's kernels (a DiM block's branches, as compiled code runs them) give what
    each gives alone, in order; a plugin mixer beside a Mamba runs in turn."""
    from dimsum_core.nn import mixers

    monkeypatch.setattr(mixers, "_kernel_path", lambda backend, device_type: "triton")
    torch.manual_seed(0)
    first, second = mixers.Mamba(16, 8, d_state=4, backend="torch"), mixers.Mamba(16, 8, d_state=4, backend="torch")
    x1, x2 = torch.randn(2, 12, 16), torch.randn(2, 12, 16)
    with torch.no_grad():
        got = first.forward_pair(x1, second, x2)
        want = first(x1), second(x2)
        assert rel_l2(want[0], want[1]) > 0.1  # different weights and inputs: a swap would show
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)
        other = torch.nn.Linear(16, 16)
        plugin = type("Plugin", (mixers.SequenceMixer,), {"forward": lambda self, x, c=None: other(x)})()
        for a, b in zip(first.forward_pair(x1, plugin, x2), (first(x1), other(x2)), strict=True):
            assert torch.equal(a, b)


@needs_triton
@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU tests run the compiled kernels")
def test_mixer_triton_path_in_the_interpreter() -> None:
    """The mixer's Triton path (time-contiguous, the projections after in_proj as per-sequence batched
    products) computes what its PyTorch path computes, and the same gradients for the input and every
    parameter."""
    from dimsum_core.nn.mixers import Mamba
    from dimsum_core.ops.selective_scan import selective_scan

    def run(path: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        m = Mamba(16, 8, d_state=4, backend="torch", bias=True)
        x = torch.randn(2, 12, 16, requires_grad=True)
        A = -torch.exp(m.A_log.float())
        out = (m._output(selective_scan_triton(*m._triton_scan_inputs(x, None))) if path == "triton"
               else m._unfused(x, None, A, selective_scan))
        out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(1)))
        grads = {name: p.grad for name, p in m.named_parameters() if p.requires_grad}
        return out.detach(), {"x": x.grad, **grads}

    got, got_grads = run("triton")
    want, want_grads = run("torch")
    assert rel_l2(got, want) < 1e-5
    assert got_grads.keys() == want_grads.keys() and len(got_grads) == 12  # x and 11 parameters
    for name, grad in want_grads.items():
        assert rel_l2(got_grads[name], grad) < 1e-5, name
