"""Per-kind component registries filled by plugins, and the one list of component kinds.

A component is a callable (a class or a factory function) registered under a short name. Its
keyword arguments are what a recipe may set, so `inspect.signature` of the callable is its schema.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dimsum_core.errors import PluginError, UnknownComponentError

#: Every kind of component, with what it is. A recipe node picks one by name; the plugin hooks
#: (``dimsum_add_<kind>s``, :mod:`dimsum_core.plugin.spec`) are derived from this list.
KINDS: dict[str, str] = {
    "scan": "scan order: a permutation of an H×W token grid and its inverse, per layer",
    "wavelet": "wavelet transform: image-shaped tensor to subband coefficients and back",
    "fusion": "fusion of the spatial and the wavelet branch outputs",
    "mixer": "sequence mixer (e.g. the Mamba selective SSM)",
    "model": "model preset: a whole network that maps (x, t, y) to a velocity",
    "objective": "training objective: interpolation path, time sampling and loss",
    "sampler": "ODE/SDE solver that turns noise into data with a velocity model",
    "dataset": "training data: images or precomputed latents with labels",
    "feature": "feature extractor for Fréchet distances and other sample metrics",
    "job": "what `dimsum run` does with a recipe (train, sample, evaluate)",
}


@dataclass(frozen=True)
class Provenance:
    """Who registered a component: the plugin (entry point) name and its distribution."""

    plugin: str
    distribution: str
    version: str


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    factory: Callable[..., Any]
    provenance: Provenance
    description: str = ""


def closest(name: str, choices: list[str]) -> str | None:
    """The most similar known name, for 'did you mean' hints."""
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    if not match:
        lowered = {c.lower(): c for c in choices}
        match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
        match = [lowered[m] for m in match]
    return match[0] if match else None


@dataclass
class Registry:
    """Components of one kind, by name."""

    kind: str
    _entries: dict[str, Entry] = field(default_factory=dict)
    _current: Provenance | None = None

    @contextlib.contextmanager
    def registering(self, provenance: Provenance) -> Iterator[None]:
        """What :meth:`add` registers inside this context comes from ``provenance``'s plugin."""
        self._current = provenance
        try:
            yield
        finally:
            self._current = None

    def add(self, name: str, factory: Callable[..., Any], description: str | None = None) -> None:
        """Register `factory` under `name`. Called from a plugin's `dimsum_add_*` hook."""
        if self._current is None:
            raise RuntimeError("Registry.add is called from within a dimsum plugin hook")
        if not callable(factory):
            raise TypeError(f"{self.kind} '{name}' must be a class or a function, got {factory!r}")
        if name in self._entries:
            other = self._entries[name].provenance
            raise PluginError(
                f"{self.kind} '{name}' is registered twice: by plugin '{other.plugin}' "
                f"(distribution {other.distribution}) and by plugin '{self._current.plugin}' "
                f"(distribution {self._current.distribution}); uninstall one of them or block it "
                f"with DIMSUM_DISABLE_PLUGINS={self._current.plugin}"
            )
        doc = description if description is not None else (factory.__doc__ or "").strip().split("\n")[0]
        self._entries[name] = Entry(self.kind, name, factory, self._current, doc)

    def remove(self, provenance: Provenance) -> None:
        """Forget every name ``provenance``'s plugin registered: a plugin that fails part-way is left out whole."""
        self._entries = {n: e for n, e in self._entries.items() if e.provenance != provenance}

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            hint = closest(name, self.names())
            did_you_mean = f"; did you mean '{hint}'?" if hint else ""
            raise UnknownComponentError(
                f"unknown {self.kind} '{name}'{did_you_mean} "
                f"(`dimsum list-plugins --kind {self.kind}` lists them)"
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)
