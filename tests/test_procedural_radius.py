"""The procedural dataset's size range option: default draws unchanged, larger shapes, bad ranges named."""

from __future__ import annotations

import pytest
import torch

from dimsum_core.config.nodes import build
from dimsum_core.errors import DataError

BASE = {"name": "procedural", "resolution": 16, "num_classes": 4, "size": 64, "seed": 2}


def _shape_area(x: torch.Tensor) -> float:
    """Pixels covered by the shape: the pixels whose colour is nearer the foreground than the background.

    The background is the colour of the image's most common pixel; the foreground the farthest from it."""
    pixels = x.flatten(1).T  # (H*W, 3)
    values, counts = torch.unique(pixels, dim=0, return_counts=True)
    background = values[counts.argmax()]
    far = (pixels - background).norm(dim=1)
    return float((far > far.max() / 2).sum())


def test_default_radius_range_keeps_the_original_draws():
    data = build("dataset", BASE)
    xs = torch.stack([data[i][0] for i in range(8)]).double()
    # recorded with the drawing code from before the option existed (radius uniform(0.4, 0.8))
    assert [data[i][1] for i in range(8)] == [3, 1, 2, 3, 3, 3, 0, 2]
    assert xs.sum().item() == pytest.approx(216.4661306925118, rel=1e-12)
    assert xs.square().sum().item() == pytest.approx(2360.509086054465, rel=1e-12)


def test_larger_radius_range_draws_larger_shapes_with_the_same_labels():
    small = build("dataset", {**BASE, "min_radius": 0.3, "max_radius": 0.3})
    large = build("dataset", {**BASE, "min_radius": 0.7, "max_radius": 0.7})
    for i in range(16):
        assert small[i][1] == large[i][1]  # the class is drawn before the size
        assert _shape_area(large[i][0]) > 3 * _shape_area(small[i][0]) > 0


@pytest.mark.parametrize(("low", "high"), [(0.0, 0.5), (0.6, 0.5), (0.5, 1.2)])
def test_bad_radius_range_is_named(low, high):
    with pytest.raises(DataError, match=rf"min_radius={low}, max_radius={high}.*0 < min_radius <= max_radius <= 1"):
        build("dataset", {**BASE, "min_radius": low, "max_radius": high})
