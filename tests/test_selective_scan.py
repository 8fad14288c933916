"""The chunked PyTorch selective scan against its float64 step-by-step reference twin."""

from __future__ import annotations

import pytest
import torch

from dimsum_core.ops.selective_scan import selective_scan, selective_scan_reference


def make_inputs(n: int, d: int, length: int, s: int, dtype: torch.dtype = torch.float64, seed: int = 0,
                delta_scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    return {
        "u": randn(n, d, length),
        "delta": randn(n, d, length) * delta_scale,
        "A": -torch.exp(randn(d, s)),
        "B": randn(n, s, length),
        "C": randn(n, s, length),
        "D": randn(d),
        "z": randn(n, d, length),
        "delta_bias": randn(d) * 0.5,
    }


def scan_and_grads(fn, inputs: dict[str, torch.Tensor], grad_out: torch.Tensor, **kwargs):
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    out = fn(**leaves, **kwargs)
    grads = torch.autograd.grad(out, list(leaves.values()), grad_out)
    return out, dict(zip(leaves, grads, strict=True))


@pytest.mark.parametrize(
    ("n", "d", "length", "s", "chunk"),
    [
        (2, 5, 37, 3, 8),  # L not a multiple of the chunk
        (2, 5, 37, 3, None),  # default chunk (7 here)
        (1, 3, 1, 2, None),  # L = 1
        (2, 4, 16, 3, 16),  # a single chunk
        (2, 3, 20, 4, 1),  # one step per chunk: all carry
        (3, 6, 50, 5, 64),  # chunk longer than L
        (1, 2, 9, 1, 4),  # d_state 1
    ],
)
def test_vectorised_matches_reference_float64(n, d, length, s, chunk):
    inputs = make_inputs(n, d, length, s, seed=length + s)
    grad_out = torch.randn(n, d, length, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out, grads = scan_and_grads(selective_scan, inputs, grad_out, delta_softplus=True, chunk_length=chunk)
    ref_out, ref_grads = scan_and_grads(selective_scan_reference, inputs, grad_out, delta_softplus=True)
    assert out.dtype == torch.float64 and out.shape == (n, d, length)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-10)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=0, atol=1e-10, msg=f"gradient wrt {name}")


def test_optional_arguments_absent():
    inputs = make_inputs(2, 4, 23, 3, seed=3)
    core = {k: inputs[k] for k in ("u", "delta", "A", "B", "C")}
    core["delta"] = core["delta"].abs()  # no softplus: delta is used as given
    grad_out = torch.randn(2, 4, 23, dtype=torch.float64)
    out, grads = scan_and_grads(selective_scan, core, grad_out, chunk_length=5)
    ref_out, ref_grads = scan_and_grads(selective_scan_reference, core, grad_out)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-10)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=0, atol=1e-10, msg=f"gradient wrt {name}")


def test_large_steps_stay_finite():
    """delta·A down to about -5000 per step: every exponent stays non-positive, nothing overflows."""
    inputs = make_inputs(2, 4, 40, 16, seed=5, delta_scale=30.0)
    inputs["A"] = -torch.arange(1, 17, dtype=torch.float64).repeat(4, 1) * 10
    grad_out = torch.ones(2, 4, 40, dtype=torch.float64)
    out, grads = scan_and_grads(selective_scan, inputs, grad_out, delta_softplus=True, chunk_length=6)
    ref_out, ref_grads = scan_and_grads(selective_scan_reference, inputs, grad_out, delta_softplus=True)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads.values())
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], rtol=1e-10, atol=1e-10, msg=f"gradient wrt {name}")


def test_float32_matches_reference():
    inputs = make_inputs(2, 8, 64, 16, dtype=torch.float32, seed=7)
    out = selective_scan(**inputs, delta_softplus=True)
    ref = selective_scan_reference(**inputs, delta_softplus=True)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_scans_in_float32():
    """Under bf16 autocast the state and the exponentials stay float32; out comes back in u's dtype."""
    inputs = make_inputs(2, 8, 33, 4, dtype=torch.float32, seed=11)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out32 = selective_scan(**inputs, delta_softplus=True)
        low = {k: (v.bfloat16() if k in ("u", "delta", "B", "C", "z") else v) for k, v in inputs.items()}
        out16 = selective_scan(**low, delta_softplus=True)
    assert out32.dtype == torch.float32 and out16.dtype == torch.bfloat16
    torch.testing.assert_close(out32, selective_scan(**inputs, delta_softplus=True), rtol=0, atol=0)
    ref16 = selective_scan_reference(**low, delta_softplus=True).double()
    torch.testing.assert_close(out16.double(), ref16, rtol=1e-2, atol=1e-2)


def test_bad_arguments():
    inputs = make_inputs(1, 2, 4, 2)
    with pytest.raises(ValueError, match="chunk_length"):
        selective_scan(**inputs, chunk_length=0)
    with pytest.raises(ValueError, match="input-dependent"):
        selective_scan(**{**inputs, "B": inputs["B"][:, None]})
