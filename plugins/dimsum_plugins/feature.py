"""Built-in feature extractors for sample metrics: torch-fidelity Inception-v3 and a CPU stand-in."""

from __future__ import annotations

from dimsum_core.metrics.inception import TorchFidelityInception
from dimsum_core.metrics.random_conv import RandomConvFeatures
from dimsum_core.plugin import hookimpl
from dimsum_core.registry import Registry


@hookimpl
def dimsum_add_features(registry: Registry) -> None:
    for name, extractor in {"inception": TorchFidelityInception, "random-conv": RandomConvFeatures}.items():
        registry.add(name, extractor)
