"""Hook specifications, derived from :data:`dimsum_core.registry.KINDS`: one collector hook per kind,
named ``dimsum_add_<kind>s`` (``dimsum_add_scans``, ``dimsum_add_mixers``, ...).

Each hook receives the registry of its kind and calls ``registry.add(name, factory)``. A factory is a
class or function; its keyword arguments are what recipes may set (see :mod:`dimsum_core.config`).
"""

from __future__ import annotations

import types
from collections.abc import Callable

import pluggy

from dimsum_core.plugin import NAME
from dimsum_core.registry import KINDS, Registry

hookspec = pluggy.HookspecMarker(NAME)


def hook_name(kind: str) -> str:
    return f"dimsum_add_{kind}s"


def _spec(kind: str) -> Callable[[Registry], None]:
    def hook(registry: Registry) -> None:
        """Register components of this kind with ``registry.add(name, factory)``."""

    hook.__name__ = hook.__qualname__ = hook_name(kind)
    hook.__doc__ = f"Register components of kind '{kind}': {KINDS[kind]}."
    return hookspec(hook)


#: kind -> hook name
HOOKS: dict[str, str] = {kind: hook_name(kind) for kind in KINDS}
#: the hook specifications, as pluggy reads them (an object whose attributes are the marked functions)
SPECS = types.SimpleNamespace(**{name: _spec(kind) for kind, name in HOOKS.items()})
