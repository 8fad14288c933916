"""Hook specifications: one collector hook per component kind.

Each hook receives the registry of its kind and calls ``registry.add(name, factory)``. A factory is a
class or function; its keyword arguments are what recipes may set (see :mod:`dimsum_core.config`).
"""

from __future__ import annotations

import pluggy

from dimsum_core.plugin import NAME
from dimsum_core.registry import Registry

hookspec = pluggy.HookspecMarker(NAME)


@hookspec
def dimsum_add_scans(registry: Registry) -> None:
    """Register scan orders (:class:`dimsum_core.interfaces.scan.ScanOrder` subclasses)."""


@hookspec
def dimsum_add_wavelets(registry: Registry) -> None:
    """Register wavelet transforms (:class:`dimsum_core.interfaces.wavelet.WaveletTransform`)."""


@hookspec
def dimsum_add_fusions(registry: Registry) -> None:
    """Register branch fusions (:class:`dimsum_core.interfaces.fusion.Fusion`)."""


@hookspec
def dimsum_add_mixers(registry: Registry) -> None:
    """Register sequence mixers (:class:`dimsum_core.interfaces.mixer.SequenceMixer`)."""


@hookspec
def dimsum_add_blocks(registry: Registry) -> None:
    """Register network blocks (:mod:`dimsum_core.interfaces.block`)."""


@hookspec
def dimsum_add_models(registry: Registry) -> None:
    """Register model presets: factories returning a :class:`dimsum_core.interfaces.model.FlowModel`."""


@hookspec
def dimsum_add_objectives(registry: Registry) -> None:
    """Register training objectives (:class:`dimsum_core.interfaces.objective.Objective`)."""


@hookspec
def dimsum_add_samplers(registry: Registry) -> None:
    """Register samplers (:class:`dimsum_core.interfaces.sampler.Sampler`)."""


@hookspec
def dimsum_add_datasets(registry: Registry) -> None:
    """Register datasets (:class:`dimsum_core.interfaces.dataset.ImageDataset`)."""


@hookspec
def dimsum_add_features(registry: Registry) -> None:
    """Register feature extractors for sample metrics (:class:`dimsum_core.interfaces.feature.FeatureExtractor`)."""


@hookspec
def dimsum_add_jobs(registry: Registry) -> None:
    """Register jobs that `dimsum run` dispatches to by the recipe's `job:` key."""


#: kind -> hook name
HOOKS: dict[str, str] = {
    "scan": "dimsum_add_scans",
    "wavelet": "dimsum_add_wavelets",
    "fusion": "dimsum_add_fusions",
    "mixer": "dimsum_add_mixers",
    "block": "dimsum_add_blocks",
    "model": "dimsum_add_models",
    "objective": "dimsum_add_objectives",
    "sampler": "dimsum_add_samplers",
    "dataset": "dimsum_add_datasets",
    "feature": "dimsum_add_features",
    "job": "dimsum_add_jobs",
}
