"""``study-classifier``: the study's trained classifier as a feature extractor for ``dimsum eval``.

Its features are the classifier's penultimate activations; its logits give an "Inception Score" in
the classifier's classes. Values are only comparable between runs that use the same classifier.

The core knows nothing of the study: ``python benchmarks/study.py eval ...`` registers this plugin
at run time (:func:`register`), then runs ``dimsum eval``.
"""

from __future__ import annotations

import sys

import torch

from dimsum_core.interfaces.feature import FeatureExtractor
from dimsum_core.plugin import hookimpl
from dimsum_core.plugin.manager import get_manager
from dimsum_core.registry import Provenance

from .classifier import load_classifier


class StudyClassifierFeatures(FeatureExtractor):
    """The convergence study's scene classifier (features of a trained CNN, no downloads; not FID)."""

    def __init__(self, *, path: str = "runs/study/classifier"):
        super().__init__()
        self.classifier, self.report = load_classifier(path)
        self.dim = self.classifier.feature_dim
        self.requires_grad_(False).eval()

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.classifier.head.weight.dtype) / 127.5 - 1

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(self._inputs(images))

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.classifier.features(self._inputs(images))
        return features, self.classifier.head(features)


@hookimpl
def dimsum_add_features(registry):  # noqa: ANN001 - pluggy hook
    registry.add("study-classifier", StudyClassifierFeatures)


def register() -> None:
    """Register ``study-classifier`` with this process's plugins (once)."""
    if "study-classifier" not in get_manager().registry("feature"):
        get_manager().register(sys.modules[__name__], Provenance("study", "benchmarks/study.py", "-"))
