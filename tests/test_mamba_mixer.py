"""The Mamba-1 mixer: official names, shapes and init, the conditioning variants, the backends."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from numerics import rel_l2
from torch import nn

from dimsum_core.config.nodes import build
from dimsum_core.errors import DimsumError, RecipeError
from dimsum_core.nn.mixers import Mamba
from dimsum_core.ops import backend as backend_module
from dimsum_core.ops.causal_conv1d import causal_conv1d
from dimsum_core.ops.kernels import KernelStatus, mamba_status, triton_status
from dimsum_core.ops.selective_scan import selective_scan_reference
from dimsum_core.plugin.manager import registry


def reference_mixer(m: Mamba, x: torch.Tensor) -> torch.Tensor:
    """The official slow path, written independently: nn.Conv1d on (N, d_inner, L) + the reference scan."""
    xz = (m.in_proj.weight @ x.reshape(-1, x.shape[-1]).t()).reshape(-1, x.shape[0], x.shape[1])
    xz = xz.permute(1, 0, 2)  # (N, 2·d_inner, L)
    u, z = xz.chunk(2, dim=1)
    u = F.silu(m.conv1d(u)[..., : x.shape[1]])
    x_dbl = m.x_proj(u.transpose(1, 2))
    dt, B, C = torch.split(x_dbl, [m.dt_rank, m.d_state, m.d_state], dim=-1)
    delta = (m.dt_proj.weight @ dt.reshape(-1, m.dt_rank).t()).reshape(m.d_inner, x.shape[0], -1).permute(1, 0, 2)
    y = selective_scan_reference(u, delta, -torch.exp(m.A_log), B.transpose(1, 2), C.transpose(1, 2), m.D,
                                 z=z, delta_bias=m.dt_proj.bias, delta_softplus=True)
    return m.out_proj(y.transpose(1, 2))


def perturbed(m: Mamba, seed: int = 0) -> Mamba:
    """Non-trivial weights everywhere (fresh init has D = 1, zero biases, ...)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


def test_registered_and_buildable():
    assert "mamba" in registry("mixer")
    m = build("mixer", {"name": "mamba", "d_state": 8, "backend": "torch"}, 32, 16)
    assert isinstance(m, Mamba) and m.A_log.shape == (64, 8)


def test_official_names_and_shapes():
    m = Mamba(64, 128, backend="torch")
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (256, 64),
        "conv1d.weight": (128, 1, 4), "conv1d.bias": (128,),
        "x_proj.weight": (4 + 32, 128),
        "dt_proj.weight": (128, 4), "dt_proj.bias": (128,),
        "A_log": (128, 16), "D": (128,),
        "out_proj.weight": (64, 128),
        "cond_proj.weight": (128, 128), "cond_proj.bias": (128,),
    }
    assert "cond_proj.weight" not in Mamba(64, 128, conditioning="none").state_dict()
    assert "cond_proj.weight" not in Mamba(64).state_dict()
    assert Mamba(40).dt_rank == math.ceil(40 / 16)


def test_loads_official_mixer_weights(official_fixtures):
    from safetensors.torch import load_file

    sd = load_file(str(official_fixtures / "A" / "state_dict.safetensors"))
    prefix = "blocks.0.spatial_mamba.mixer."
    mixer_sd = {k[len(prefix):]: v.float() for k, v in sd.items() if k.startswith(prefix)}
    Mamba(64, 128, backend="torch").load_state_dict(mixer_sd, strict=True)


def test_mamba1_init():
    torch.manual_seed(0)
    m = Mamba(64, 128, dt_min=1e-3, dt_max=1e-1)
    bound = m.dt_rank**-0.5
    assert m.dt_proj.weight.abs().max() <= bound and m.dt_proj.weight.abs().max() > 0.8 * bound
    dt = F.softplus(m.dt_proj.bias.detach())
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    assert m.dt_proj.bias._no_reinit is True
    torch.testing.assert_close(m.A_log.detach(), torch.log(torch.arange(1.0, 17.0)).repeat(128, 1))
    assert m.A_log.dtype == torch.float32 and m.A_log._no_weight_decay and m.D._no_weight_decay
    torch.testing.assert_close(m.D.detach(), torch.ones(128))
    floored = Mamba(16, dt_min=1e-6, dt_max=1e-5, dt_init_floor=1e-4)
    torch.testing.assert_close(F.softplus(floored.dt_proj.bias.detach()), torch.full((32,), 1e-4))


def test_torch_backend_matches_independent_reference_float64():
    torch.manual_seed(0)
    m = perturbed(Mamba(24, 48, d_state=6, backend="torch").double(), seed=1)
    x = torch.randn(2, 19, 24, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 48, dtype=torch.float64)
    out = m(x, c)
    trainable = {n: p for n, p in m.named_parameters() if p.requires_grad}
    assert "cond_proj.weight" not in trainable  # official: dead and frozen
    grads = torch.autograd.grad(out.square().sum(), [x, *trainable.values()])
    ref = reference_mixer(m, x)
    ref_grads = torch.autograd.grad(ref.square().sum(), [x, *trainable.values()])
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    for name, g, r in zip(["x", *trainable], grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-9, msg=f"gradient wrt {name}")


def test_causal_along_the_sequence():
    torch.manual_seed(0)
    m = perturbed(Mamba(16, backend="torch").double())
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 7:] += torch.randn(1, 5, 16, dtype=torch.float64)
    out, out2 = m(x), m(x2)
    torch.testing.assert_close(out[:, :7], out2[:, :7], rtol=0, atol=0)
    assert (out[:, 7:] - out2[:, 7:]).abs().min() > 0


def test_causal_conv1d_matches_nn_conv1d():
    torch.manual_seed(0)
    conv = nn.Conv1d(6, 6, 4, groups=6, padding=3).double()
    x = torch.randn(2, 11, 6, dtype=torch.float64)
    expected = conv(x.transpose(1, 2))[..., :11].transpose(1, 2)
    torch.testing.assert_close(causal_conv1d(x, conv.weight, conv.bias), expected, rtol=0, atol=1e-12)
    nobias = causal_conv1d(x, conv.weight, None)
    torch.testing.assert_close(nobias, expected - conv.bias, rtol=0, atol=1e-12)


def test_official_conditioning_is_dead():
    """As released: cond_proj is in the state dict but c changes nothing and gets no gradient."""
    torch.manual_seed(0)
    m = perturbed(Mamba(16, 32, backend="torch"))
    x = torch.randn(2, 9, 16)
    out = m(x, torch.randn(2, 32))
    torch.testing.assert_close(out, m(x, torch.randn(2, 32)), rtol=0, atol=0)
    torch.testing.assert_close(out, m(x), rtol=0, atol=0)
    assert not m.cond_proj.weight.requires_grad
    none = Mamba(16, 32, conditioning="none")
    extra = sum(p.numel() for p in m.parameters()) - sum(p.numel() for p in none.parameters())
    assert extra == 32 * 32 + 32


def test_conv_input_conditioning():
    torch.manual_seed(0)
    official = perturbed(Mamba(16, 32, backend="torch"))
    variant = Mamba(16, 32, backend="torch", conditioning="conv-input")
    assert variant.cond_proj.weight.abs().sum() == 0 and variant.cond_proj.bias.abs().sum() == 0
    variant.load_state_dict({**official.state_dict(), "cond_proj.weight": torch.zeros(32, 32),
                             "cond_proj.bias": torch.zeros(32)})
    x, c = torch.randn(2, 9, 16), torch.randn(2, 32)
    torch.testing.assert_close(variant(x, c), official(x, c))  # zero-init: the official function
    with torch.no_grad():
        variant.cond_proj.weight.normal_()
    out = variant(x, c)
    assert (out - variant(x, torch.randn(2, 32))).abs().max() > 1e-3
    out.square().sum().backward()
    assert variant.cond_proj.weight.grad.abs().sum() > 0
    with pytest.raises(RecipeError, match="conv-input"):
        Mamba(16, conditioning="conv-input")
    with pytest.raises(ValueError, match="needs the conditioning vector"):
        variant(x)


def test_bf16_autocast_and_float64():
    torch.manual_seed(0)
    m = perturbed(Mamba(32, 16, backend="torch"))
    x = torch.randn(2, 20, 32)
    ref = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = m(x)
    assert low.dtype == torch.bfloat16
    assert ((low.float() - ref).norm() / ref.norm()) < 3e-2
    m64 = Mamba(32, 16, backend="torch").double()
    assert m64(x.double()).dtype == torch.float64


def test_meta_device_forward():
    with torch.device("meta"):
        m = Mamba(32, 16)
        out = m(torch.empty(2, 10, 32), torch.empty(2, 16))
    assert out.shape == (2, 10, 32) and out.device.type == "meta"


@pytest.mark.skipif(mamba_status().loads, reason="the fused kernels load here")
def test_explicit_cuda_without_kernels_is_a_one_line_error():
    with pytest.raises(DimsumError, match=r'pip install --no-build-isolation -e "\.\[cuda\]"') as info:
        Mamba(16, backend="cuda")
    assert "\n" not in str(info.value)


def test_auto_on_the_cpu_is_silent():
    """On a CPU the PyTorch scan is the only path, not news: no warning."""
    x = torch.randn(1, 5, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Mamba(16)(x)
        Mamba(16, backend="torch")(x)


def test_auto_on_a_gpu_without_kernels_falls_back_with_one_warning(monkeypatch):
    unavailable = KernelStatus("triton", False, False, "not installed")
    monkeypatch.setattr(backend_module, "triton_status", lambda: unavailable)
    monkeypatch.setattr(backend_module, "mamba_status", lambda: KernelStatus("mamba-ssm", False, False, "not installed"))
    monkeypatch.setattr(backend_module, "_fallback_warned", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert backend_module.resolve_backend("auto", torch.device("cuda")) == "torch"
        assert backend_module.resolve_backend("auto", torch.device("cuda")) == "torch"
    fallback = [w for w in caught if "pure-PyTorch selective scan" in str(w.message)]
    assert len(fallback) == 1
    assert "Triton" in str(fallback[0].message) and "not installed" in str(fallback[0].message)


@pytest.mark.parametrize("mamba_loads", [False, True])
def test_auto_on_a_gpu_takes_dimsums_kernels(monkeypatch, mamba_loads):
    """dimsum's Triton kernels, whether or not mamba-ssm's load (they run only when asked for: faster
    at DiMSUM's 256-px shapes, docs/benchmarks.md); never a kernel on the CPU."""
    monkeypatch.setattr(backend_module, "triton_status", lambda: KernelStatus("triton", True, True, "", "3.6.0"))
    monkeypatch.setattr(backend_module, "mamba_status", lambda: KernelStatus("mamba-ssm", True, mamba_loads, ""))
    assert backend_module.resolve_backend("auto", torch.device("cuda")) == "triton"
    assert backend_module.resolve_backend("auto", torch.device("cpu")) == "torch"
    assert backend_module.resolve_backend("auto", torch.device("meta")) == "torch"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_explicit_triton_without_a_gpu_is_a_one_line_error():
    with pytest.raises(DimsumError, match="backend='triton' needs Triton and a CUDA device") as info:
        Mamba(16, backend="triton")
    assert "\n" not in str(info.value)


def test_cpu_use_never_imports_mamba_ssm():
    code = ("import sys, torch, dimsum_core, dimsum_core.nn.mixers as mx\n"
            "m = mx.Mamba(8, 4)\n"
            "m(torch.randn(1, 3, 8), torch.randn(1, 4)).sum().backward()\n"
            "assert 'mamba_ssm' not in sys.modules, 'mamba_ssm was imported'\n")
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr


@pytest.mark.gpu
@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bf16-autocast"])
@pytest.mark.parametrize("conditioning", ["official", "conv-input"])
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_backend_matches_torch_backend(backend, autocast, conditioning, no_tf32):
    status = mamba_status() if backend == "cuda" else triton_status()
    if not status.loads:
        pytest.skip(f"{status.name} kernels do not load: {status.detail}")
    torch.manual_seed(0)
    fused = perturbed(Mamba(64, 128, backend=backend, conditioning=conditioning), seed=2).cuda()
    plain = Mamba(64, 128, backend="torch", conditioning=conditioning).cuda()
    plain.load_state_dict(fused.state_dict())
    if conditioning == "conv-input":
        with torch.no_grad():
            for m in (fused, plain):
                m.cond_proj.weight.copy_(torch.randn(128, 128, generator=torch.Generator().manual_seed(3)) * 0.1)
    x = torch.randn(4, 256, 64, device="cuda")
    c = torch.randn(4, 128, device="cuda")
    grad_out = torch.randn(4, 256, 64, device="cuda")

    def run(m: Mamba):
        xi = x.clone().requires_grad_()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            out = m(xi, c)
        out.float().backward(grad_out)
        grads = {"x": xi.grad, **{n: p.grad for n, p in m.named_parameters() if p.grad is not None}}
        return out.float(), grads

    out, grads = run(fused)
    ref, ref_grads = run(plain)
    tol = 5e-2 if autocast else 1e-3  # relative L2 error

    assert rel_l2(out, ref) < tol
    assert grads.keys() == ref_grads.keys()
    for name in ref_grads:
        assert rel_l2(grads[name], ref_grads[name]) < tol, name


def test_per_sequence_projection_copies_nothing():
    """x_proj and dt_proj on time-contiguous (N, d, L) sequences: torch.matmul(W, x) folds the batch into
    one GEMM and copies x (and gradients) into rows; the per-sequence product computes the same values and
    gradients without a copy."""
    from torch.profiler import profile

    from dimsum_core.nn.mixers import _per_sequence

    def copies_and_grads(project) -> tuple[int, torch.Tensor, list[torch.Tensor]]:  # noqa: ANN001
        w = torch.randn(6, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
        x = torch.randn(3, 8, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
        with profile() as prof:
            out = project(w, x)
            out.backward(torch.ones_like(out))
        return sum(e.name == "aten::copy_" for e in prof.events()), out.detach(), [w.grad, x.grad]

    folded, want, want_grads = copies_and_grads(torch.matmul)
    copies, got, got_grads = copies_and_grads(_per_sequence)
    assert folded >= 3 and copies == 0
    torch.testing.assert_close(got, want)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w)
