"""All metrics of one generated set against one reference set."""

from __future__ import annotations

from typing import Literal

import numpy as np

from dimsum_core.errors import DimsumError
from dimsum_core.metrics.features import ExtractedFeatures
from dimsum_core.metrics.frechet import FeatureStats, feature_stats, fid_from_stats
from dimsum_core.metrics.inception_score import inception_score
from dimsum_core.metrics.kid import kernel_inception_distance
from dimsum_core.metrics.precision_recall import precision_recall

Metric = Literal["fid", "kid", "is", "pr"]
METRICS: tuple[Metric, ...] = ("fid", "kid", "is", "pr")


def score(generated: ExtractedFeatures, reference: np.ndarray, metrics: tuple[str, ...] = METRICS, *,
          reference_stats: FeatureStats | None = None, kid_subsets: int = 100, kid_subset_size: int = 1000,
          pr_k: int = 3) -> dict[str, float]:
    """``fid``; ``kid_mean``/``kid_std``; ``is_mean``/``is_std`` (needs extractor logits);
    ``precision``/``recall`` (k-NN manifolds with k = ``pr_k``)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise DimsumError(f"unknown metric '{unknown[0]}'; choose from {', '.join(METRICS)}")
    if len(generated.features) < 2:
        raise DimsumError(f"need at least 2 generated samples to score, got {len(generated.features)}")
    results: dict[str, float] = {}
    if "fid" in metrics:
        results["fid"] = fid_from_stats(feature_stats(generated.features),
                                        reference_stats or feature_stats(reference))
    if "kid" in metrics:
        results["kid_mean"], results["kid_std"] = kernel_inception_distance(
            reference, generated.features, subsets=kid_subsets, subset_size=kid_subset_size)
    if "is" in metrics:
        if generated.logits is None:
            raise DimsumError("the Inception Score needs an extractor with a classifier head (logits); "
                              "drop 'is' from --metrics")
        results["is_mean"], results["is_std"] = inception_score(generated.logits)
    if "pr" in metrics:
        results["precision"], results["recall"] = precision_recall(reference, generated.features, k=pr_k)
    return results
