"""Running a feature extractor over batches of uint8 images."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from dimsum_core.interfaces.feature import FeatureExtractor
from dimsum_core.progress import TaskProgress


@dataclass
class ExtractedFeatures:
    #: (N, D) float32
    features: np.ndarray
    #: (N, K) float32 classifier logits (for the Inception Score), None without a head
    logits: np.ndarray | None


class FeatureAccumulator:
    """Feeds batches through an extractor and keeps the (CPU) results, so images can be dropped."""

    def __init__(self, extractor: FeatureExtractor, device: torch.device | str = "cpu"):
        self.extractor = extractor.to(device).eval()
        self.device = torch.device(device)
        self._features: list[np.ndarray] = []
        self._logits: list[np.ndarray] = []
        self._has_logits = True

    @torch.no_grad()
    def add(self, images: torch.Tensor) -> None:
        """uint8 (N, 3, H, W) images."""
        if images.dtype != torch.uint8:
            raise TypeError(f"feature extractors take uint8 images, got {images.dtype}")
        features, logits = self.extractor.features_and_logits(images.to(self.device))
        self._features.append(features.float().cpu().numpy())
        if logits is None:
            self._has_logits = False
        else:
            self._logits.append(logits.float().cpu().numpy())

    def result(self) -> ExtractedFeatures:
        features = np.concatenate(self._features) if self._features else np.zeros((0, 0), np.float32)
        logits = np.concatenate(self._logits) if self._has_logits and self._logits else None
        return ExtractedFeatures(features, logits)


def extract(extractor: FeatureExtractor, batches: Iterable[torch.Tensor], device: torch.device | str = "cpu",
            progress: TaskProgress | None = None) -> ExtractedFeatures:
    accumulator = FeatureAccumulator(extractor, device)
    done = 0
    for images in batches:
        accumulator.add(images)
        done += len(images)
        if progress is not None:
            progress.update(done)
    return accumulator.result()
