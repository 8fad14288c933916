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


# One alias per kind a built-in takes, for annotations (``scan: ScanSpec = "sweep4"``): a linter reads an alias
# as a type, where ``Spec["scan"]`` in a postponed annotation reads as a forward-reference string.
ScanSpec = Spec["scan"]
WaveletSpec = Spec["wavelet"]
FusionSpec = Spec["fusion"]
MixerSpec = Spec["mixer"]
ModelSpec = Spec["model"]
ObjectiveSpec = Spec["objective"]
SamplerSpec = Spec["sampler"]
DatasetSpec = Spec["dataset"]


@dataclass(frozen=True)
class Range:
    """The interval a number setting must lie in, declared once on its annotation
    (``Annotated[int, Range(ge=1)]``); `dimsum validate` and every build check it. Bounds are inclusive
    (``ge``/``le``) or exclusive (``gt``/``lt``)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def problem(self, value: float) -> str | None:
        """None if ``value`` lies in the range, else what to use instead."""
        low_ok = (self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
        high_ok = (self.le is None or value <= self.le) and (self.lt is None or value < self.lt)
        return None if low_ok and high_ok else f"{value!r} is out of range; use {self.describe()}"

    def describe(self) -> str:
        def shown(bound: float | None) -> str | None:
            return None if bound is None else str(int(bound)) if float(bound).is_integer() else f"{bound:g}"

        low = shown(self.ge if self.ge is not None else self.gt)
        high = shown(self.le if self.le is not None else self.lt)
        if low is not None and high is not None:
            return f"a value in {'[' if self.ge is not None else '('}{low}, {high}{']' if self.le is not None else ')'}"
        if low is not None:
            return f"a value {'>=' if self.ge is not None else '>'} {low}"
        return f"a value {'<=' if self.le is not None else '<'} {high}"


# Ranges most settings use.
PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
Positive = Annotated[float, Range(gt=0)]
NonNegative = Annotated[float, Range(ge=0)]
#: a probability that must leave something: [0, 1)
Fraction = Annotated[float, Range(ge=0, lt=1)]
UnitInterval = Annotated[float, Range(ge=0, le=1)]
#: random seeds: what numpy's SeedSequence and torch generators take everywhere they are used
Seed = Annotated[int, Range(ge=0, le=2**32 - 1)]
