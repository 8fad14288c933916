"""Improved precision and recall (Kynkäänniemi et al. 2019): k-NN balls as the support of each set.

Precision: the fraction of generated samples inside the real manifold (some real sample's ball of
radius = distance to its k-th nearest real neighbour). Recall: the same with the roles swapped.
"""

from __future__ import annotations

import numpy as np
import torch


def knn_radii(features: torch.Tensor, k: int = 3, chunk: int = 1024) -> torch.Tensor:
    """(N,) distance from each row to its k-th nearest other row."""
    radii = []
    for start in range(0, len(features), chunk):
        d = torch.cdist(features[start:start + chunk], features)  # (chunk, N)
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, -1])  # k + 1: the row itself is 0
    return torch.cat(radii)


def coverage(support: torch.Tensor, radii: torch.Tensor, queries: torch.Tensor, chunk: int = 1024) -> float:
    """Fraction of ``queries`` within ``radii[j]`` of some ``support[j]``."""
    inside = []
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start:start + chunk], support)  # (chunk, M)
        inside.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(inside).double().mean().item()


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """(precision, recall) with k-NN manifolds (k = 3 as the official ``pr50k3``)."""
    real_t = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    fake_t = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    if len(real_t) <= k or len(fake_t) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples in each set")
    precision = coverage(real_t, knn_radii(real_t, k), fake_t)
    recall = coverage(fake_t, knn_radii(fake_t, k), real_t)
    return precision, recall
