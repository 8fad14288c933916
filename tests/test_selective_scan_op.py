"""mamba-ssm's scan kernel as torch.library custom ops (dimsum_core.ops.selective_scan_op).

On the CPU: the shape-only twins give the shapes and dtypes the kernels return, and the mixer picks the
pure-PyTorch path. On the GPU: opcheck, equality with mamba-ssm's own ``selective_scan_fn``, and a
Mamba mixer and a small DiMSUM that compile with ``fullgraph=True`` (no graph break) and match eager.
"""

from __future__ import annotations

import pytest
import torch
from numerics import rel_l2
from torch._subclasses.fake_tensor import FakeTensorMode

from dimsum_core import create_model
from dimsum_core.nn.mixers import Mamba, _kernel_path
from dimsum_core.ops.kernels import mamba_status, triton_status
from dimsum_core.ops.selective_scan_op import selective_scan_op


def scan_inputs(batch: int, dim: int, length: int, state: int, dtype: torch.dtype, device: str, seed: int = 0):
    g = torch.Generator(device=device).manual_seed(seed)

    def randn(*shape: int, dt: torch.dtype = dtype) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device=device, dtype=dt)

    u, delta, z = randn(batch, dim, length), 0.5 * randn(batch, dim, length), randn(batch, dim, length)
    A = -torch.rand(dim, state, generator=g, device=device) - 0.1
    B, C = randn(batch, state, length), randn(batch, state, length)
    D, delta_bias = randn(dim, dt=torch.float32), randn(dim, dt=torch.float32)
    return u, delta, A, B, C, D, z, delta_bias


@pytest.mark.parametrize("length, chunks", [(64, 1), (2048, 1), (2049, 2)])
def test_fake_kernels_give_the_kernels_shapes(length: int, chunks: int):
    with FakeTensorMode():
        u, delta, A, B, C, D, z, delta_bias = scan_inputs(2, 8, length, 4, torch.bfloat16, "cpu")
        B, C = B.unsqueeze(1), C.unsqueeze(1)
        out, states, out_z = torch.ops.dimsum.selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, True)
        assert out.shape == out_z.shape == (2, 8, length) and out.dtype == out_z.dtype == torch.bfloat16
        assert states.shape == (2, 8, chunks, 8) and states.dtype == torch.float32
        grads = torch.ops.dimsum.selective_scan_bwd(u, delta, A, B, C, D, z, delta_bias, out_z, states, out, True)
        for grad, x in zip(grads, (u, delta, A, B, C, D, z, delta_bias), strict=True):
            assert grad.shape == x.shape and grad.dtype == x.dtype


@pytest.mark.parametrize("length, dim, chunks, blocks", [(1, 8, 0, 1), (256, 64, 15, 2), (257, 65, 16, 3)])
def test_gluon_fakes_give_the_kernels_shapes(length: int, dim: int, chunks: int, blocks: int):
    """The Gluon forward's states entering each chunk after the first, (N, channel blocks, chunks - 1, n,
    BD) float32, as the compiler sees them; and the backward's gradients."""
    from dimsum_core.ops import triton_ops

    steps, warps = triton_ops.GLUON_SCAN
    assert (steps, 32 * warps) == (16, 32)  # the default tile this test's sizes assume
    with FakeTensorMode():
        args = scan_inputs(2, dim, length, 4, torch.bfloat16, "cpu")
        out, states = torch.ops.dimsum.gluon_scan_fwd(*args)
        assert out.shape == (2, dim, length) and out.dtype == torch.bfloat16
        assert states.shape == (2, blocks, chunks, 4, 32) and states.dtype == torch.float32
        grads = torch.ops.dimsum.gluon_scan_bwd(*args, states, out)
        for grad, x in zip(grads, args, strict=True):
            assert grad.shape == x.shape and grad.dtype == x.dtype
        # a DiM block's two scans as one launch: both outputs, one states buffer for both, both's gradients
        out, out2, states = torch.ops.dimsum.gluon_scan_both_fwd(*args, *args)
        assert out.shape == out2.shape == (2, dim, length) and states.shape == (4, blocks, chunks, 4, 32)
        grads = torch.ops.dimsum.gluon_scan_both_bwd(*args, *args, states, out, out2)
        for grad, x in zip(grads, (*args, *args), strict=True):
            assert grad.shape == x.shape and grad.dtype == x.dtype


def test_cpu_mixer_takes_the_pytorch_path():
    assert _kernel_path("auto", "cpu") == "torch"
    assert _kernel_path("torch", "cuda") == "torch"


def _needs_kernels() -> None:
    status = mamba_status()
    if not status.loads:
        pytest.skip(f"mamba-ssm kernels do not load: {status.detail}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_opcheck(dtype: torch.dtype):
    _needs_kernels()
    u, delta, A, B, C, D, z, delta_bias = scan_inputs(2, 16, 300, 8, dtype, "cuda")
    args = [x.requires_grad_() for x in (u, delta, A, B.unsqueeze(1), C.unsqueeze(1), D, z, delta_bias)]
    torch.library.opcheck(torch.ops.dimsum.selective_scan_fwd.default, (*args, True))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_custom_op_equals_mamba_selective_scan_fn(dtype: torch.dtype):
    _needs_kernels()
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    inputs = scan_inputs(2, 32, 513, 16, dtype, "cuda", seed=1)
    grad_out = torch.randn(2, 32, 513, device="cuda", dtype=dtype)

    def run(scan) -> tuple[torch.Tensor, list[torch.Tensor]]:  # noqa: ANN001
        xs = [x.clone().requires_grad_() for x in inputs]
        u, delta, A, B, C, D, z, delta_bias = xs
        out = scan(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=True)
        out.backward(grad_out)
        return out, [x.grad for x in xs]

    out, grads = run(selective_scan_op)
    ref, ref_grads = run(selective_scan_fn)
    assert torch.equal(out, ref)  # the same forward kernel: bitwise
    # the backward kernel sums dB, dC (and the parameter gradients) with atomic adds, so two runs of it
    # differ by float32 rounding, which bf16 outputs can round up to one bf16 step
    tol = 1e-5 if dtype == torch.float32 else 1e-3
    for name, g, r in zip("u delta A B C D z delta_bias".split(), grads, ref_grads, strict=True):
        assert g.dtype == r.dtype, name
        assert rel_l2(g, r) < tol, name


@pytest.mark.gpu
@pytest.mark.parametrize("backend, tol", [("cuda", 1e-4), ("triton", 1e-5)])
def test_compiled_mixer_has_no_graph_break_and_matches_eager(backend: str, tol: float, no_tf32: None):
    """Compiled code runs each backend's kernels as custom ops; eager mamba-ssm runs its fused
    mamba_inner_fn instead, which rounds differently (hence its looser tolerance)."""
    status = mamba_status() if backend == "cuda" else triton_status()
    if not status.loads:
        pytest.skip(f"{status.name} kernels do not load: {status.detail}")
    torch.manual_seed(0)
    m = Mamba(64, 128, backend=backend).cuda()
    x = torch.randn(4, 256, 64, device="cuda")
    grad_out = torch.randn(4, 256, 64, device="cuda")

    def run(fn) -> tuple[torch.Tensor, list[torch.Tensor]]:  # noqa: ANN001
        m.zero_grad()
        xi = x.clone().requires_grad_()
        out = fn(xi)
        out.backward(grad_out)
        return out, [xi.grad, *(p.grad for p in m.parameters() if p.grad is not None)]

    ref, ref_grads = run(m)
    out, grads = run(torch.compile(m, fullgraph=True))
    assert rel_l2(out, ref) < tol
    assert len(grads) == len(ref_grads)
    for g, r in zip(grads, ref_grads, strict=True):
        assert rel_l2(g, r) < tol


@pytest.mark.gpu
def test_compiled_dimsum_has_no_graph_break_and_matches_eager(no_tf32: None):
    _needs_kernels()
    torch.manual_seed(0)
    model = create_model("dimsum-S/2", input_size=8, in_channels=4, num_classes=10, hidden_size=64, depth=4,
                         attn_heads=4, drop_path=0.1).cuda().eval()
    x, t, y = torch.randn(3, 4, 8, 8, device="cuda"), torch.rand(3, device="cuda"), torch.tensor([1, 2, 10]).cuda()

    def run(fn) -> tuple[torch.Tensor, list[torch.Tensor]]:  # noqa: ANN001
        model.zero_grad()
        out = fn(x, t, y)
        out.square().mean().backward()
        return out, [p.grad for p in model.parameters() if p.grad is not None]

    ref, ref_grads = run(model)
    out, grads = run(torch.compile(model, fullgraph=True))
    assert rel_l2(out, ref) < 1e-4
    for g, r in zip(grads, ref_grads, strict=True):
        assert rel_l2(g, r) < 1e-3


def test_dimsum_traces_into_one_graph():
    """torch.compile sees the whole model: no graph break (the CPU path; the GPU test covers the kernels)."""
    torch.manual_seed(0)
    model = create_model("dimsum-S/2", input_size=8, in_channels=4, num_classes=10, hidden_size=32, depth=2,
                         attn_every=2, attn_heads=2, drop_path=0.1)
    x, t, y = torch.randn(2, 4, 8, 8), torch.rand(2), torch.tensor([1, 10])
    explained = torch._dynamo.explain(model)(x, t, y)
    assert explained.graph_break_count == 0, [b.reason for b in explained.break_reasons]
    assert explained.graph_count == 1
