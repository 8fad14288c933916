"""Samplers: analytic endpoints, convergence order, SDE marginals, per-sample noise, registry."""

from __future__ import annotations

import math

import pytest
import tiny_velocity_models as tiny
import torch
from torchdiffeq import odeint

from dimsum_core.config.nodes import build
from dimsum_core.errors import DimsumError
from dimsum_core.sampling.fixed_step import EulerSampler, HeunSampler
from dimsum_core.sampling.generate import generate
from dimsum_core.sampling.noise import solver_generators
from dimsum_core.sampling.ode import ODESampler, dopri5
from dimsum_core.sampling.sde import EulerMaruyamaSampler

A, B = -0.7, 0.3


def linear_field(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return A * x + B


def linear_endpoint(x0: torch.Tensor) -> torch.Tensor:
    """dx/dt = a x + b from t = 0 to 1: x(1) = (x0 + b/a) e^a - b/a."""
    return (x0 + B / A) * math.exp(A) - B / A


@pytest.fixture
def x0() -> torch.Tensor:
    return torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_dopri5_linear_field_hits_analytic_endpoint(x0):
    result = dopri5().sample(linear_field, x0)
    assert torch.allclose(result.x, linear_endpoint(x0), atol=1e-3, rtol=1e-3)
    assert 6 <= result.nfe < 100


def test_dopri5_exact_gvp_gaussian_velocity_lands_on_analytic_endpoint():
    model = tiny.TinyGaussian(mean=1.5, std=0.5, path="gvp").double()
    x0 = torch.randn(64, 2, 1, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = dopri5().sample(lambda x, t: model(x, t.expand(len(x))), x0)
    assert torch.allclose(result.x, tiny.gaussian_endpoint(x0, 1.5, 0.5), atol=5e-2)
    tight = dopri5(atol=1e-9, rtol=1e-8).sample(lambda x, t: model(x, t.expand(len(x))), x0)
    assert torch.allclose(tight.x, tiny.gaussian_endpoint(x0, 1.5, 0.5), atol=1e-6)
    assert tight.nfe > result.nfe


def test_adaptive_result_does_not_depend_on_the_output_grid(x0):
    """dimsum integrates straight to t=1; the official 250-point grid gives the same last state."""
    official = odeint(lambda t, x: linear_field(x, t), x0, torch.linspace(0, 1, 250, dtype=torch.float64),
                      method="dopri5", atol=1e-6, rtol=1e-3)[-1]
    assert torch.equal(dopri5(num_steps=250).sample(linear_field, x0).x, official)


def test_fixed_grid_ode_method_uses_num_steps(x0):
    result = ODESampler(method="rk4", num_steps=11).sample(linear_field, x0)
    assert result.nfe == 4 * 10
    assert torch.allclose(result.x, linear_endpoint(x0), atol=1e-6)


@pytest.mark.parametrize("sampler_cls, order", [(EulerSampler, 1), (HeunSampler, 2)])
def test_fixed_step_solvers_converge_at_their_order(sampler_cls, order, x0):
    errors = [(sampler_cls(steps=n).sample(linear_field, x0).x - linear_endpoint(x0)).abs().max().item()
              for n in (16, 32, 64)]
    for coarse, fine in zip(errors[:-1], errors[1:], strict=True):
        assert coarse / fine == pytest.approx(2**order, rel=0.1)


def test_nfe_of_fixed_step_solvers(x0):
    assert EulerSampler(steps=7).sample(linear_field, x0).nfe == 7
    assert HeunSampler(steps=7).sample(linear_field, x0).nfe == 14
    assert EulerMaruyamaSampler(steps=7).sample(linear_field, x0).nfe == 7


@pytest.mark.parametrize("path, diffusion, last_step", [
    ("gvp", "sigma", "mean"), ("linear", "sigma", "mean"), ("gvp", "linear", "mean"),
    ("linear", "increasing-decreasing", "mean"), ("gvp", "constant", "euler")])
def test_euler_maruyama_reaches_the_data_distribution(path, diffusion, last_step):
    """With the exact velocity (and so the exact score) the SDE ends at N(mean, std^2).

    (SiT's "mean" last step adds a score step, which over-denoises when w(t) stays large near t = 1,
    as with ``constant``; there the plain Euler last step is the right one.)
    """
    model = tiny.TinyGaussian(mean=1.5, std=0.5, path=path).double()
    x0 = torch.randn(2000, 2, 1, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sampler = EulerMaruyamaSampler(path=path, steps=100, diffusion=diffusion, last_step=last_step)
    x = sampler.sample(lambda x, t: model(x, t.expand(len(x))), x0, torch.Generator().manual_seed(3)).x
    assert x.mean().item() == pytest.approx(1.5, abs=0.03)
    assert x.std().item() == pytest.approx(0.5, abs=0.03)
    # the SDE actually injects noise: it does not follow the deterministic flow map
    assert (x - tiny.gaussian_endpoint(x0, 1.5, 0.5)).abs().mean() > 0.05


def test_sde_noise_per_sample_does_not_depend_on_batching():
    model = tiny.TinyGaussian(mean=0.5, std=0.8).double()
    x0 = torch.randn(6, 2, 1, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    sampler = EulerMaruyamaSampler(steps=20)
    field = lambda x, t: model(x, t.expand(len(x)))  # noqa: E731
    whole = sampler.sample(field, x0, solver_generators(7, range(6))).x
    parts = torch.cat([sampler.sample(field, x0[:2], solver_generators(7, range(2))).x,
                       sampler.sample(field, x0[2:], solver_generators(7, range(2, 6))).x])
    assert torch.allclose(whole, parts, atol=1e-12)


def test_registry_builds_every_sampler_and_checks_options():
    tiny.register()
    assert isinstance(build("sampler", "dopri5"), ODESampler)
    assert build("sampler", {"name": "ode", "method": "bosh3"}).method == "bosh3"
    assert build("sampler", {"name": "euler", "steps": 3}).steps == 3
    assert build("sampler", "heun").steps == 125
    assert build("sampler", {"name": "euler-maruyama", "path": "linear"}).path_name == "linear"
    with pytest.raises(DimsumError, match="sampler.method: .dopri6. is not one of .dopri5."):
        build("sampler", {"name": "ode", "method": "dopri6"})
    with pytest.raises(DimsumError, match="path"):
        build("sampler", {"name": "euler-maruyama", "path": "vp"})
    with pytest.raises(DimsumError, match="steps"):
        build("sampler", {"name": "euler", "steps": 0})


@pytest.fixture(scope="module")
def trained_conv() -> tiny.TinyConv:
    tiny.register()
    return tiny.train_tiny_conv()


@pytest.mark.parametrize("node", ["dopri5", {"name": "ode", "method": "midpoint", "num_steps": 21},
                                  {"name": "euler", "steps": 20}, {"name": "heun", "steps": 10},
                                  {"name": "euler-maruyama", "steps": 40}])
def test_every_sampler_draws_both_classes_from_a_trained_checkpoint(node, trained_conv, tmp_path):
    from dimsum_core.models import load_model

    model = load_model(tiny.write_checkpoint(tmp_path / "ckpt", trained_conv))
    sampler = build("sampler", node)
    means = []
    for cls in (0, 1):
        batch = next(generate(model, sampler, range(8), seed=3, classes=[cls], cfg_scale=1.5))
        assert batch.images.dtype == torch.uint8 and batch.images.shape == (8, 3, 8, 8)
        assert batch.nfe > 0
        images = batch.images.float()
        means.append((images[:, :, :4].mean().item(), images[:, :, 4:].mean().item()))
    (top0, bottom0), (top1, bottom1) = means
    assert top0 > bottom0 + 60 and bottom1 > top1 + 60  # class 0 bright on top, class 1 at the bottom
