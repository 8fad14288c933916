"""GPU: the Triton and mamba-ssm backends compute the same DiM-L/2 block as the pure-PyTorch backend,
and the official fixtures are reproduced on the GPU through every kernel path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from numerics import rel_l2

from dimsum_core.network import DiMBlock
from dimsum_core.nn.layers import DropPath
from dimsum_core.official import model_from_official, read_official
from dimsum_core.ops.kernels import mamba_status, triton_status

pytestmark = pytest.mark.gpu


def l2_block(backend: str) -> torch.nn.Module:
    torch.manual_seed(0)
    # DiM-L/2 block at 256 px: width 1024, 16×16 token grid; layer 1 (reversed sweep, column-first window)
    return DiMBlock(1024, 1024, 1, 16, DropPath(0.0), mixer={"name": "mamba", "backend": backend}).cuda()


@pytest.fixture(autouse=True)
def _exact_float32(no_tf32: None) -> None:
    """Every test here compares in float32 without TF32."""


def needs(backend: str) -> None:
    status = triton_status() if backend == "triton" else mamba_status()
    if not status.loads:
        pytest.skip(f"{status.name} kernels do not load: {status.detail}")


# (precision, tolerance on rel. L2 of outputs and gradients)
@pytest.mark.parametrize("precision, tol", [("float32", 1e-4), ("bf16", 3e-2)])
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_l2_block_gpu_vs_torch_backend(backend: str, precision: str, tol: float) -> None:
    needs(backend)
    fused, plain = l2_block(backend), l2_block("torch")
    plain.load_state_dict(fused.state_dict())
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(2, 256, 1024, device="cuda", generator=g)
    c = torch.randn(2, 1024, device="cuda", generator=g)
    results = []
    for blk in (fused, plain):
        xi = x.clone().requires_grad_(True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            h, res = blk(xi, torch.zeros_like(xi), c)
        (h.float().square().mean()).backward()
        grads = {n: p.grad.clone() for n, p in blk.named_parameters() if p.grad is not None}
        results.append((h.float(), xi.grad, grads))
    (h1, gx1, gp1), (h2, gx2, gp2) = results
    assert rel_l2(h1, h2) < tol
    assert rel_l2(gx1, gx2) < tol
    assert gp1.keys() == gp2.keys()
    worst = max(rel_l2(gp1[k], gp2[k]) for k in gp1)
    assert worst < 5 * tol, worst


@pytest.mark.parametrize("path", ["triton", "fused", "scan-kernel"])
@pytest.mark.parametrize("name", ["A", "B"])
def test_official_fixtures_with_gpu_kernels(official_fixtures: Path, name: str, path: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Every GPU path reproduces the official outputs: dimsum's Triton kernels (the default), and
    mamba-ssm's fused ``mamba_inner_fn`` and its scan kernel as custom ops (the reference backend)."""
    from safetensors.torch import load_file

    from dimsum_core.nn import mixers

    needs("triton" if path == "triton" else "cuda")
    if path == "fused":
        from dimsum_core.ops.backend import cuda_kernels

        if not cuda_kernels().has_causal_conv1d:
            pytest.skip("the fused path needs causal-conv1d")
    monkeypatch.setattr(mixers, "_kernel_path", lambda backend, device_type: path)
    io = {k: v.cuda() for k, v in load_file(str(official_fixtures / name / "io.safetensors")).items()}
    sd = read_official(official_fixtures / name / "state_dict.safetensors")["ema"]
    model = model_from_official(sd).cuda().eval()
    for blk in model.blocks:
        for branch in (blk.spatial_mamba, blk.freq_mamba):
            branch.mixer.backend = "triton" if path == "triton" else "cuda"
    with torch.no_grad():
        out = model(io["x"], io["t"], io["y"])
    # fused kernels round differently from the float64 reference: float32 tolerance of the README
    assert rel_l2(out, io["output"]) < 1e-5 * 10


@pytest.mark.parametrize("bf16", [False, True])
def test_cuda_graph_forward_matches_eager(bf16: bool) -> None:
    from dimsum_core import create_model
    from dimsum_core.sampling.cuda_graph import CudaGraphForward

    torch.manual_seed(0)
    model = create_model("dimsum", input_size=16, hidden_size=64, depth=4, num_classes=10).cuda().eval()
    graphed = CudaGraphForward(model)
    for seed in (1, 2):  # the second call replays the captured graph on new data
        g = torch.Generator(device="cuda").manual_seed(seed)
        x = torch.randn(3, 4, 16, 16, device="cuda", generator=g)
        t = torch.rand(3, device="cuda", generator=g)
        y = torch.randint(0, 10, (3,), device="cuda", generator=g)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            want, got = model(x, t, y), graphed(x, t, y)
        torch.testing.assert_close(got, want, atol=1e-5 if not bf16 else 2e-2, rtol=1e-4 if not bf16 else 2e-2)
    assert len(graphed._graphs) == 1


def test_compiled_and_graphed_forward_matches_eager() -> None:
    """`dimsum sample --compile --cuda-graph`: the blocks compiled (inductor) and the whole forward replayed
    from a CUDA graph, against the eager model (Triton mixer kernels)."""
    import torch._dynamo

    from dimsum_core import create_model
    from dimsum_core.sampling.cuda_graph import CudaGraphForward

    torch._dynamo.reset()
    torch.manual_seed(0)
    kwargs = dict(input_size=16, hidden_size=64, depth=4, num_classes=10, mixer={"name": "mamba", "backend": "triton"})
    eager = create_model("dimsum", **kwargs).cuda().eval()
    model = create_model("dimsum", **kwargs).cuda().eval()
    model.load_state_dict(eager.state_dict())
    model.compile_regions()
    graphed = CudaGraphForward(model)
    for seed in (1, 2):
        g = torch.Generator(device="cuda").manual_seed(seed)
        x = torch.randn(3, 4, 16, 16, device="cuda", generator=g)
        t = torch.rand(3, device="cuda", generator=g)
        y = torch.randint(0, 10, (3,), device="cuda", generator=g)
        with torch.no_grad():
            torch.testing.assert_close(graphed(x, t, y), eager(x, t, y), atol=1e-4, rtol=1e-3)
    assert len(graphed._graphs) == 1


def test_branches_on_two_streams_equal_branches_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The DiM block runs its wavelet branch on a second CUDA stream beside the spatial one: outputs and
    every gradient as when the two run in turn on one stream, over several blocks and steps (a missing
    stream wait would read a tensor before it is written, or free it while in use); and as when the two
    mixers run as a pair (compiled code's path: both scans in one launch)."""
    from dimsum_core import network

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        blocks = [l2_block("triton") for _ in range(3)]
        g = torch.Generator(device="cuda").manual_seed(1)
        x = torch.randn(2, 256, 1024, device="cuda", generator=g, requires_grad=True)
        c = torch.randn(2, 1024, device="cuda", generator=g)
        for _ in range(2):
            h, res = x, torch.zeros_like(x)
            for blk in blocks:
                h, res = blk(h, res, c)
            (h.square().mean() + res.square().mean()).backward()
        return h.detach(), [x.grad, *(p.grad for blk in blocks for p in blk.parameters() if p.grad is not None)]

    needs("triton")
    side, side_grads = run()
    monkeypatch.setattr(network, "side_by_side", lambda s, x1, w, x2, c: (s(x1, c), w(x2, c)))
    turn, turn_grads = run()
    # in turn as compiled code runs them: the two mixers as a pair, both scans in one launch
    monkeypatch.setattr(network, "on_side_streams", lambda x: False)
    pair, pair_grads = run()
    assert len(side_grads) == len(turn_grads) == len(pair_grads) > 20
    for other, other_grads in ((turn, turn_grads), (pair, pair_grads)):
        torch.testing.assert_close(side, other, rtol=1e-5, atol=1e-6)
        for a, b in zip(side_grads, other_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
