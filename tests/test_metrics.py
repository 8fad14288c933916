"""Metric math (Fréchet, KID, IS, precision/recall), feature extractors and cached reference stats."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from dimsum_core.config.nodes import build
from dimsum_core.errors import DataError, DimsumError
from dimsum_core.metrics.features import extract
from dimsum_core.metrics.frechet import feature_stats, frechet_distance, trace_sqrt_product
from dimsum_core.metrics.image_sources import ImageSource
from dimsum_core.metrics.inception import WEIGHTS_FILE, TorchFidelityInception
from dimsum_core.metrics.inception_score import inception_score
from dimsum_core.metrics.kid import kernel_inception_distance, mmd2_unbiased
from dimsum_core.metrics.precision_recall import precision_recall
from dimsum_core.metrics.reference import reference_features
from dimsum_core.metrics.scores import score


def random_spd(d: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.2, 3, 6), rng.uniform(0.2, 3, 6)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-12)


def test_frechet_closed_form_for_commuting_covariances():
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(5, 5)))
    v1, v2 = np.array([0.5, 1, 2, 3, 4.0]), np.array([2, 0.3, 1, 5, 0.7])
    s1, s2 = q @ np.diag(v1) @ q.T, q @ np.diag(v2) @ q.T
    assert frechet_distance(np.zeros(5), s1, np.zeros(5), s2) == pytest.approx(
        ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum(), rel=1e-10)


def test_frechet_matches_brute_force_sqrtm_on_general_covariances():
    s1, s2 = random_spd(32, 2), random_spd(32, 3)
    brute = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert trace_sqrt_product(s1, s2) == pytest.approx(brute, rel=1e-9)
    mu1, mu2 = np.ones(32), np.zeros(32)
    expected = 32 + np.trace(s1) + np.trace(s2) - 2 * brute
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_frechet_is_stable_for_singular_covariances():
    """Fewer samples than dimensions: rank-deficient covariances, where complex sqrtm goes imaginary."""
    rng = np.random.default_rng(4)
    a, b = feature_stats(rng.normal(size=(10, 64))), feature_stats(rng.normal(size=(10, 64)))
    value = frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
    assert np.isfinite(value) and value > 0
    # rounding-level eigenvalues of the null space contribute sqrt(1e-15)-sized terms
    assert frechet_distance(a.mu, a.sigma, a.mu, a.sigma) == pytest.approx(0, abs=1e-6 * np.trace(a.sigma))


def test_kid_matches_the_unbiased_estimator_written_out():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(12, 4)), rng.normal(0.5, 1, size=(12, 4))
    k = lambda a, b: (a @ b / 4 + 1) ** 3  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m**2
    assert mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(6)
    real = rng.normal(size=(400, 8))
    same, _ = kernel_inception_distance(real, rng.normal(size=(400, 8)), subsets=20, subset_size=200)
    shifted, _ = kernel_inception_distance(real, rng.normal(0.5, 1, size=(400, 8)), subsets=20, subset_size=200)
    assert abs(same) < 0.02
    assert shifted > 0.1


def test_inception_score_limits():
    k = 8
    confident = np.full((80, k), -30.0)
    confident[np.arange(80), np.arange(80) % k] = 30.0  # certain and evenly spread over k classes
    mean, std = inception_score(confident, splits=10)
    assert mean == pytest.approx(k, rel=1e-6) and std == pytest.approx(0, abs=1e-6)
    assert inception_score(np.zeros((50, k)))[0] == pytest.approx(1.0)


def test_precision_recall_on_known_sets():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(200, 2))
    assert precision_recall(real, real, k=3) == (1.0, 1.0)
    far = rng.normal(size=(200, 2)) + 100
    assert precision_recall(real, far, k=3) == (0.0, 0.0)
    # generated = half of the real support only: precise, half the recall
    half = real[real[:, 0] > 0]
    precision, recall = precision_recall(real, half, k=3)
    assert precision == 1.0
    assert 0.35 < recall < 0.65


def test_random_conv_extractor_is_a_deterministic_plugin():
    a = build("feature", {"name": "random-conv", "dim": 16, "seed": 3})
    b = build("feature", {"name": "random-conv", "dim": 16, "seed": 3})
    images = torch.randint(0, 256, (5, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    features, logits = a.features_and_logits(images)
    assert features.shape == (5, 16) and logits.shape == (5, 10)
    assert torch.equal(features, b(images))
    assert not torch.equal(features, build("feature", {"name": "random-conv", "dim": 16, "seed": 4})(images))


def test_inception_missing_weights_says_where_to_put_them(tmp_path, monkeypatch):
    import sys
    import types

    monkeypatch.setenv("DIMSUM_CACHE", str(tmp_path))
    monkeypatch.delenv("DIMSUM_INCEPTION_WEIGHTS", raising=False)
    fidelity = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    fidelity.FeatureExtractorInceptionV3 = object  # torch-fidelity imports: only the weights are missing
    monkeypatch.setitem(sys.modules, "torch_fidelity", types.ModuleType("torch_fidelity"))
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", fidelity)
    with pytest.raises(DimsumError) as err:
        TorchFidelityInception()
    message = str(err.value)
    assert str(tmp_path / "weights" / WEIGHTS_FILE) in message and "download" in message
    assert "\n" not in message


def test_inception_without_torch_fidelity_is_one_clear_line(tmp_path, monkeypatch):
    weights = tmp_path / WEIGHTS_FILE
    weights.write_bytes(b"not used")
    monkeypatch.setitem(__import__("sys").modules, "torch_fidelity", None)  # as if not importable
    with pytest.raises(DimsumError, match="torch-fidelity") as err:
        TorchFidelityInception(weights=str(weights))
    assert "\n" not in str(err.value)


def write_images(folder, n: int, size: int = 16, seed: int = 0, shift: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        array = np.clip(rng.normal(128 + shift, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(array).save(folder / f"{i:03d}.png")
    return folder


def test_image_sources_read_folders_and_npz_alike(tmp_path):
    folder = write_images(tmp_path / "imgs", 7)
    from_folder = torch.cat(list(ImageSource.open(folder).batches(3)))
    np.savez(tmp_path / "s.npz", from_folder.permute(0, 2, 3, 1).numpy())
    from_npz = torch.cat(list(ImageSource.open(tmp_path / "s.npz").batches(4)))
    assert from_folder.shape == (7, 3, 16, 16) and torch.equal(from_folder, from_npz)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "zz.png")
    with pytest.raises(DataError, match="ref-resize"):
        list(ImageSource.open(folder).batches(16))
    assert torch.cat(list(ImageSource.open(folder, resize=16).batches(16))).shape == (8, 3, 16, 16)


def test_reference_stats_are_cached_and_invalidated(tmp_path):
    folder = write_images(tmp_path / "ref", 12)
    extractor = build("feature", {"name": "random-conv", "dim": 8})
    ident = {"name": "random-conv", "dim": 8}
    first = reference_features(ImageSource.open(folder), extractor, ident, cache_dir=tmp_path / "cache")
    again = reference_features(ImageSource.open(folder), extractor, ident, cache_dir=tmp_path / "cache")
    assert not first.cached and again.cached
    assert again.stats_hash == first.stats_hash and np.array_equal(again.features, first.features)
    other = reference_features(ImageSource.open(folder), extractor, {**ident, "seed": 1}, cache_dir=tmp_path / "cache")
    assert not other.cached and other.key != first.key
    write_images(folder, 13)  # a new image changes the key
    assert not reference_features(ImageSource.open(folder), extractor, ident, cache_dir=tmp_path / "cache").cached


def test_scores_rank_a_shifted_set_worse(tmp_path):
    extractor = build("feature", {"name": "random-conv", "dim": 16})
    ref = extract(extractor, ImageSource.open(write_images(tmp_path / "ref", 60, seed=0)).batches(32))
    near = extract(extractor, ImageSource.open(write_images(tmp_path / "near", 60, seed=1)).batches(32))
    far = extract(extractor, ImageSource.open(write_images(tmp_path / "far", 60, seed=2, shift=60)).batches(32))
    good = score(near, ref.features, kid_subsets=10, kid_subset_size=50)
    bad = score(far, ref.features, kid_subsets=10, kid_subset_size=50)
    assert set(good) == {"fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall"}
    assert bad["fid"] > 5 * good["fid"] and bad["kid_mean"] > good["kid_mean"]
    assert good["precision"] > bad["precision"]
    with pytest.raises(DimsumError, match="unknown metric"):
        score(near, ref.features, ("fid", "lpips"))
