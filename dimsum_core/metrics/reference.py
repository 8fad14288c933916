"""Reference-set features and statistics, computed once and cached.

The cache key hashes the image list (names, sizes, mtimes), the resize setting and the extractor with
its settings, so changing any of them recomputes; the cache file holds the features (KID and
precision/recall need them, not just mean and covariance) plus the float64 mean and covariance.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from dimsum_core.interfaces.feature import FeatureExtractor
from dimsum_core.metrics.cache import cache_root
from dimsum_core.metrics.features import extract
from dimsum_core.metrics.frechet import FeatureStats, feature_stats
from dimsum_core.metrics.image_sources import ImageSource
from dimsum_core.progress import TaskProgress

CACHE_FORMAT = 1


@dataclass
class ReferenceFeatures:
    source: ImageSource
    features: np.ndarray
    stats: FeatureStats
    #: the cache key (what was computed from what)
    key: str
    #: sha256 of the mean and covariance bytes: identifies the statistics themselves
    stats_hash: str
    cached: bool
    cache_file: Path


def stats_hash(stats: FeatureStats) -> str:
    return hashlib.sha256(stats.mu.tobytes() + stats.sigma.tobytes()).hexdigest()


def reference_key(source: ImageSource, extractor_id: dict[str, Any]) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, "images": source.content_key(), "extractor": extractor_id},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def reference_features(source: ImageSource, extractor: FeatureExtractor, extractor_id: dict[str, Any], *,
                       batch_size: int = 64, device: torch.device | str = "cpu",
                       cache_dir: Path | None = None, console: Console | None = None) -> ReferenceFeatures:
    """Features of every reference image, from the cache when the key matches (progress on ``console``)."""
    key = reference_key(source, extractor_id)
    cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "ref_stats"
    cache_file = cache_dir / f"{key[:32]}.npz"
    if cache_file.is_file():
        with np.load(cache_file) as cached:
            stats = FeatureStats(cached["mu"], cached["sigma"], int(cached["count"]))
            return ReferenceFeatures(source, cached["features"], stats, key, stats_hash(stats), True, cache_file)
    with TaskProgress(console or Console(stderr=True), "reference features", source.count,
                      enabled=console is not None) as progress:
        features = extract(extractor, source.batches(batch_size), device, progress).features
    stats = feature_stats(features)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.stem}.tmp-{os.getpid()}.npz")
    np.savez(tmp, features=features, mu=stats.mu, sigma=stats.sigma, count=stats.count,
             meta=json.dumps({"path": str(source.path), "extractor": extractor_id}))
    os.replace(tmp, cache_file)
    return ReferenceFeatures(source, features, stats, key, stats_hash(stats), False, cache_file)
