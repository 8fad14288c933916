"""Annotations that mark a keyword argument as a nested component of some kind."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Union


@dataclass(frozen=True)
class Kind:
    kind: str


class Spec:
    """``Spec["scan"]`` annotates an argument that takes a scan-order node (a name or a mapping)."""

    def __class_getitem__(cls, kind: str) -> Any:
        return Annotated[Union[str, Mapping[str, Any]], Kind(kind)]


# One alias per kind, for annotations (``scan: ScanSpec = "sweep4"``).
ScanSpec = Spec["scan"]
WaveletSpec = Spec["wavelet"]
FusionSpec = Spec["fusion"]
MixerSpec = Spec["mixer"]
BlockSpec = Spec["block"]
ModelSpec = Spec["model"]
ObjectiveSpec = Spec["objective"]
SamplerSpec = Spec["sampler"]
DatasetSpec = Spec["dataset"]
FeatureSpec = Spec["feature"]
