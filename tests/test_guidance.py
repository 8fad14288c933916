"""Classifier-free guidance: the formula, DiT-style channel subsets, NFE counting."""

from __future__ import annotations

import pytest
import tiny_velocity_models as tiny
import torch

from dimsum_core.errors import DimsumError
from dimsum_core.sampling.fixed_step import EulerSampler
from dimsum_core.sampling.guidance import GuidedVelocity
from dimsum_core.sampling.ode import dopri5


@pytest.fixture
def model() -> tiny.TinyLinear:
    return tiny.TinyLinear(in_channels=4, num_classes=5)


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(0))


def test_guidance_on_all_channels(model, x):
    y, t = torch.tensor([0, 2, 4]), torch.tensor(0.3)
    v_c = model(x, t.expand(3), y)
    v_u = model(x, t.expand(3), torch.full_like(y, 5))
    guided = GuidedVelocity(model, y, scale=4.0)(x, t)
    assert torch.allclose(guided, v_u + 4.0 * (v_c - v_u))
    assert not torch.allclose(guided, v_c)


def test_guidance_on_the_first_channels_only_as_dit(model, x):
    y, t = torch.tensor([1, 1, 3]), torch.tensor(0.5)
    v_c = model(x, t.expand(3), y)
    v_u = model(x, t.expand(3), torch.full_like(y, 5))
    guided = GuidedVelocity(model, y, scale=2.5, guide_channels=3)(x, t)
    assert torch.allclose(guided[:, :3], v_u[:, :3] + 2.5 * (v_c[:, :3] - v_u[:, :3]))
    assert torch.equal(guided[:, 3:], v_c[:, 3:])


def test_scale_one_and_unconditional_are_single_plain_forwards(model, x):
    y, t = torch.tensor([0, 1, 2]), torch.tensor(0.1)
    model.batch_sizes.clear()
    assert torch.allclose(GuidedVelocity(model, y, 1.0)(x, t), model(x, t.expand(3), y))
    uncond = tiny.TinyLinear(in_channels=4, num_classes=0)
    assert torch.allclose(GuidedVelocity(uncond, None)(x, t), uncond(x, t.expand(3)))
    assert model.batch_sizes == [3, 3]


def test_guidance_without_labels_is_a_user_error(x):
    with pytest.raises(DimsumError, match="unconditional"):
        GuidedVelocity(tiny.TinyLinear(num_classes=0), None, scale=4.0)


def test_guided_pair_counts_once_in_nfe(model, x):
    y = torch.tensor([0, 1, 2])
    for sampler in (EulerSampler(steps=6), dopri5()):
        model.calls, model.batch_sizes = 0, []
        guided = GuidedVelocity(model, y, scale=4.0)
        result = sampler.sample(guided, x)
        assert result.nfe == guided.forwards == model.calls
        assert set(model.batch_sizes) == {6}  # conditional and null halves in one forward
    assert result.nfe > 6  # dopri5 is adaptive
    assert EulerSampler(steps=6).sample(GuidedVelocity(model, y, scale=4.0), x).nfe == 6
