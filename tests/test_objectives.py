"""Path math (dimsum_core.flow.paths) and the training objectives."""

from __future__ import annotations

import math

import pytest
import torch

from dimsum_core.errors import RecipeError
from dimsum_core.flow.paths import PATHS, GVPPath, LinearPath


@pytest.mark.parametrize("name", sorted(PATHS))
def test_path_endpoints_and_derivatives(name):
    path = PATHS[name]()
    t = torch.linspace(0, 1, 11, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(path.alpha(t[:1]), torch.zeros(1, dtype=torch.float64))
    assert torch.allclose(path.sigma(t[:1]), torch.ones(1, dtype=torch.float64))
    assert torch.allclose(path.alpha(t[-1:]), torch.ones(1, dtype=torch.float64))
    assert torch.allclose(path.sigma(t[-1:]), torch.zeros(1, dtype=torch.float64), atol=1e-12)
    (d_alpha,) = torch.autograd.grad(path.alpha(t).sum(), t)
    (d_sigma,) = torch.autograd.grad(path.sigma(t).sum(), t)
    assert torch.allclose(path.d_alpha(t.detach()), d_alpha)
    assert torch.allclose(path.d_sigma(t.detach()), d_sigma)


def test_gvp_matches_official_formula():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)
    t = torch.tensor([0.1, 0.5, 0.9])
    x_t, u_t = GVPPath().interpolate(x0, x1, t)
    c, s = torch.cos(math.pi * t / 2).view(-1, 1, 1, 1), torch.sin(math.pi * t / 2).view(-1, 1, 1, 1)
    torch.testing.assert_close(x_t, s * x1 + c * x0)
    torch.testing.assert_close(u_t, math.pi / 2 * (c * x1 - s * x0))


def test_linear_velocity_is_data_minus_noise():
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    x_t, u_t = LinearPath().interpolate(x0, x1, torch.full((4,), 0.3))
    torch.testing.assert_close(u_t, x1 - x0)
    torch.testing.assert_close(x_t, 0.3 * x1 + 0.7 * x0)


@pytest.mark.parametrize("name", sorted(PATHS))
@pytest.mark.parametrize("t_value", [0.05, 0.3, 0.7, 0.95])
def test_velocity_to_score_matches_gaussian_data(name, t_value):
    # Data x1 ~ N(mu, c^2 I): the marginal velocity and the score of p_t are known in closed form.
    path = PATHS[name]()
    mu, c = 0.7, 0.5
    x = torch.linspace(-3, 3, 13, dtype=torch.float64).view(13, 1)
    t = torch.full((13,), t_value, dtype=torch.float64)
    a, s = path.alpha(t).view(-1, 1), path.sigma(t).view(-1, 1)
    da, ds = path.d_alpha(t).view(-1, 1), path.d_sigma(t).view(-1, 1)
    var = a**2 * c**2 + s**2
    e_x1 = mu + a * c**2 / var * (x - a * mu)
    e_x0 = s / var * (x - a * mu)
    v = da * e_x1 + ds * e_x0
    analytic_score = -(x - a * mu) / var
    torch.testing.assert_close(path.velocity_to_score(v, x, t), analytic_score)
    torch.testing.assert_close(path.velocity_to_noise(v, x, t), e_x0)


# -- objectives (plugins) ------------------------------------------------------------------------

def _objective(node):
    from dimsum_core.config import build

    return build("objective", node)


def test_gvp_objective_path_and_loss():
    obj = _objective("gvp")
    g = torch.Generator().manual_seed(3)
    x0, x1 = torch.randn(4, 2, 3, 3, generator=g), torch.randn(4, 2, 3, 3, generator=g)
    t = obj.sample_t(4, generator=g)
    x_t, u_t = obj.path(x0, x1, t)
    ref_x, ref_u = GVPPath().interpolate(x0, x1, t)
    torch.testing.assert_close(x_t, ref_x)
    torch.testing.assert_close(u_t, ref_u)
    loss = obj.loss(u_t + 1.0, u_t)
    assert loss.shape == (4,)
    torch.testing.assert_close(loss, torch.ones(4))


def test_linear_objective_uses_linear_path():
    obj = _objective({"name": "linear"})
    x0, x1 = torch.zeros(2, 3), torch.ones(2, 3)
    x_t, u_t = obj.path(x0, x1, torch.tensor([0.25, 0.5]))
    torch.testing.assert_close(x_t[:, 0], torch.tensor([0.25, 0.5]))
    torch.testing.assert_close(u_t, torch.ones(2, 3))


def test_uniform_time_sampling_is_uniform_and_seeded():
    obj = _objective("gvp")
    t1 = obj.sample_t(20000, generator=torch.Generator().manual_seed(0))
    t2 = obj.sample_t(20000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(t1, t2)
    assert t1.min() >= 0 and t1.max() < 1
    assert abs(t1.mean().item() - 0.5) < 0.01
    assert abs(t1.var().item() - 1 / 12) < 0.003


def test_logit_normal_time_sampling_matches_its_median():
    obj = _objective({"name": "gvp", "t_sampling": "logit-normal", "logit_mean": -0.5, "logit_std": 1.0})
    t = obj.sample_t(20000, generator=torch.Generator().manual_seed(0))
    assert t.min() > 0 and t.max() < 1
    # the median of sigmoid(N(m, s)) is sigmoid(m)
    assert abs(t.median().item() - torch.sigmoid(torch.tensor(-0.5)).item()) < 0.01


def test_objective_rejects_bad_options():
    with pytest.raises(RecipeError, match="objective.t_sampling: 'cosine' is not one of 'uniform', 'logit-normal'"):
        _objective({"name": "gvp", "t_sampling": "cosine"})
    with pytest.raises(ValueError, match="logit_std"):
        _objective({"name": "linear", "t_sampling": "logit-normal", "logit_std": 0.0})
