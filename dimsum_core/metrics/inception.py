"""``inception``: torch-fidelity's Inception-v3 port of the TF FID network, from a LOCAL weights file.

Pool features (2048) feed FID, KID and precision/recall; the unbiased logits feed the Inception Score.
Nothing is downloaded: the weights file is found at ``weights=``, ``$DIMSUM_INCEPTION_WEIGHTS``, or
``$DIMSUM_CACHE/weights/`` (default ``~/.cache/dimsum/weights/``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dimsum_core.errors import DimsumError
from dimsum_core.interfaces.feature import FeatureExtractor
from dimsum_core.metrics.cache import cache_root

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILE}"
WEIGHTS_ENV = "DIMSUM_INCEPTION_WEIGHTS"


def weights_path(weights: str | None = None) -> Path:
    """Where the weights are looked for: the argument, then the env var, then the cache."""
    if weights:
        return Path(weights).expanduser()
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV]).expanduser()
    return cache_root() / "weights" / WEIGHTS_FILE


class TorchFidelityInception(FeatureExtractor):
    """torch-fidelity Inception-v3 (TF FID weights, local file): 2048-d features and logits for IS."""

    dim = 2048

    def __init__(self, *, weights: str | None = None):
        super().__init__()
        # the package first: a CPU install cannot have it (no CPU torchvision for this torch), and
        # downloading the weights would not help there
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except Exception as exc:  # missing, or torchvision built for another torch
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DimsumError(f"the inception extractor (the default) needs torch-fidelity, which does not import "
                              f"here ({reason}); on a CPU install use --extractor random-conv (a stand-in: not a "
                              f"FID), or on a GPU host `pip install -e \".[fid]\"` with a torchvision that "
                              f"matches your torch") from None
        path = weights_path(weights)
        if not path.is_file():
            raise DimsumError(f"Inception weights not found at {path}: download {WEIGHTS_URL} and save it "
                              f"there as {WEIGHTS_FILE} (or point --extractor-opt weights=FILE or "
                              f"${WEIGHTS_ENV} at it), or use --extractor random-conv (a stand-in: not a FID)")
        self.weights = str(path)
        self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                               feature_extractor_weights_path=str(path))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)[0]

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features, logits = self.net(images)
        return features, logits
