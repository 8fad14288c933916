"""Built-in model presets: DiMSUM (S/2, B/2, L/2, XL/2, L/4), DiT baselines and Mamba-only baselines,
from the size tables of :mod:`dimsum_core.network`."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable

from dimsum_core.network import DIMSUM_SIZES, DIT_SIZES, MAMBA_SIZES, DiMSUM, DiT, MambaOnly
from dimsum_core.plugin import hookimpl
from dimsum_core.registry import Registry


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
def dimsum_add_models(registry: Registry) -> None:
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
