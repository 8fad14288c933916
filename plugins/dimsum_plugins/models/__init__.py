"""Built-in model presets: DiMSUM (S/2, B/2, L/2, XL/2, L/4), DiT baselines and Mamba-only baselines.

Sizes follow the official `DiM_models` (spec §1.3): the shared transformer and the fusion always
use 16 and 8 heads. `dimsum-S/2` is not official; it exists for cheap runs and studies.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable

from dimsum_core.plugin import hookimpl
from dimsum_plugins.models.dimsum import DiMSUM
from dimsum_plugins.models.dit import DiT
from dimsum_plugins.models.mamba_only import MambaOnly

DIMSUM_SIZES = {  # name: (depth, hidden, patch)
    "dimsum-S/2": (12, 384, 2),
    "dimsum-B/2": (12, 768, 2),
    "dimsum-L/2": (16, 1024, 2),
    "dimsum-XL/2": (24, 1152, 2),
    "dimsum-L/4": (16, 1024, 4),
}
DIT_SIZES = {  # name: (depth, hidden, heads, patch), as in DiT
    "dit-S/2": (12, 384, 6, 2),
    "dit-B/2": (12, 768, 12, 2),
    "dit-L/2": (24, 1024, 16, 2),
    "dit-XL/2": (28, 1152, 16, 2),
}
MAMBA_SIZES = {  # name: (depth, hidden, patch); two Mamba blocks per DiT block, as ZigMa's
    "mamba-S/2": (24, 384, 2),
    "mamba-B/2": (24, 768, 2),
    "mamba-L/2": (48, 1024, 2),
}


def _factory(cls: type, doc: str, **defaults: object) -> Callable[..., object]:
    """A preset: ``cls`` with some defaults changed. It keeps the class's signature (with the new
    defaults) and resolved type hints, so `dimsum validate` checks preset arguments like the class's."""

    def preset(**kwargs: object) -> object:
        return cls(**{**defaults, **kwargs})

    sig = inspect.signature(cls)
    preset.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[p.replace(default=defaults.get(p.name, p.default)) for p in sig.parameters.values()])
    preset.__annotations__ = {k: v for k, v in typing.get_type_hints(cls.__init__, include_extras=True).items()
                              if k != "return"}
    preset.__doc__ = doc
    return preset


@hookimpl
def dimsum_add_models(registry) -> None:  # noqa: ANN001
    registry.add("dimsum", DiMSUM)
    for name, (depth, hidden, patch) in DIMSUM_SIZES.items():
        registry.add(name, _factory(DiMSUM, f"DiMSUM {name[7:]}: depth {depth}, width {hidden}, patch {patch}",
                                    depth=depth, hidden_size=hidden, patch_size=patch))
    registry.add("dit", DiT)
    for name, (depth, hidden, heads, patch) in DIT_SIZES.items():
        registry.add(name, _factory(DiT, f"DiT {name[4:]} (flow matching): depth {depth}, width {hidden}",
                                    depth=depth, hidden_size=hidden, num_heads=heads, patch_size=patch))
    registry.add("mamba", MambaOnly)
    for name, (depth, hidden, patch) in MAMBA_SIZES.items():
        registry.add(name, _factory(MambaOnly, f"Mamba-only {name[6:]} (ZigMa-like): depth {depth}, "
                                    f"width {hidden}", depth=depth, hidden_size=hidden, patch_size=patch))
