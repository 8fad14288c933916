"""Inception Score from classifier logits: exp(E_x KL(p(y|x) || p(y))), over splits."""

from __future__ import annotations

import numpy as np


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """(mean, std) over ``splits`` consecutive chunks (torch-fidelity and the original use 10 splits
    of the unbiased Inception logits)."""
    logits = np.asarray(logits, np.float64)
    log_p = logits - logits.max(axis=1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))  # log softmax
    scores = []
    for chunk in np.array_split(log_p, min(splits, len(log_p))):
        p = np.exp(chunk)
        log_marginal = np.log(p.mean(axis=0))
        kl = (p * (chunk - log_marginal)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))
