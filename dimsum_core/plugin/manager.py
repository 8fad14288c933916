"""Loads plugins from the ``dimsum`` entry-point group, one at a time, and fills the registries.

A plugin that fails to import, whose hook raises (even ``sys.exit``), or that claims a name another plugin
already registered, is recorded as failed and left out whole; everything else keeps working. The
built-in plugins load first, so a newcomer never displaces a built-in. ``DIMSUM_DISABLE_PLUGINS=a,b``
blocks plugins by entry-point name.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType

import pluggy

from dimsum_core.errors import PluginError
from dimsum_core.plugin import NAME, spec
from dimsum_core.registry import KINDS, Provenance, Registry

DISABLE_ENV = "DIMSUM_DISABLE_PLUGINS"
#: the distribution whose plugins are the built-in components
BUILTIN_DISTRIBUTION = "dimsum"


@dataclass(frozen=True)
class FailedPlugin:
    plugin: str
    distribution: str
    version: str
    error: str


@dataclass
class PluginManager:
    """The loaded plugins and one :class:`Registry` per component kind."""

    registries: dict[str, Registry] = field(default_factory=lambda: {k: Registry(k) for k in KINDS})
    failed: list[FailedPlugin] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    loaded: list[Provenance] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._pm = pluggy.PluginManager(NAME)
        self._pm.add_hookspecs(spec.SPECS)

    def registry(self, kind: str) -> Registry:
        if kind not in self.registries:
            raise KeyError(f"unknown component kind '{kind}'; kinds are {', '.join(KINDS)}")
        return self.registries[kind]

    def load_entry_points(self) -> None:
        blocked = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
        found = [(dist.metadata["Name"] or "?", dist.version or "?", ep) for dist in metadata.distributions()
                 for ep in dist.entry_points if ep.group == NAME]
        found.sort(key=lambda item: item[0] != BUILTIN_DISTRIBUTION)  # stable: built-ins first
        owners: dict[str, str] = {}
        for dist_name, version, ep in found:
            if owners.get(ep.name) == dist_name:
                continue  # one distribution seen twice on sys.path (an editable install and its build)
            if ep.name in owners:
                self.failed.append(FailedPlugin(ep.name, dist_name, version,
                                                f"entry point name '{ep.name}' is already taken by "
                                                f"{owners[ep.name]}; rename this plugin's entry point"))
                continue
            owners[ep.name] = dist_name
            if ep.name in blocked:
                self.blocked.append(ep.name)
                continue
            try:
                module = ep.load()
            except (Exception, SystemExit, KeyboardInterrupt) as exc:  # a broken plugin must not stop the command
                self.failed.append(FailedPlugin(ep.name, dist_name, version, _one_line(exc)))
                continue
            self.register(module, Provenance(ep.name, dist_name, version))

    def register(self, plugin: ModuleType | object, provenance: Provenance) -> None:
        """Register one plugin object and run its hooks into the registries.

        Any exception (a name another plugin holds, a bug, ``sys.exit``) marks the plugin as failed and
        undoes what it registered.
        """
        try:
            self._pm.register(plugin, name=provenance.plugin)
        except ValueError as exc:
            self.failed.append(FailedPlugin(provenance.plugin, provenance.distribution,
                                            provenance.version, _one_line(exc)))
            return
        for kind, hook_name in spec.HOOKS.items():
            impl = getattr(plugin, hook_name, None)
            if impl is None:
                continue
            registry = self.registries[kind]
            try:
                with registry.registering(provenance):
                    impl(registry=registry)
            except (Exception, SystemExit, KeyboardInterrupt) as exc:
                for each in self.registries.values():
                    each.remove(provenance)
                self._pm.unregister(plugin)
                self.failed.append(FailedPlugin(provenance.plugin, provenance.distribution,
                                                provenance.version, _one_line(exc)))
                return
        self.loaded.append(provenance)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, PluginError):  # its message says what to do; where it was raised does not matter
        return str(exc)
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    where = f" ({os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, SystemExit):
        text = f"the plugin called sys.exit({exc.code!r}) while loading"
    return f"{type(exc).__name__}: {text}{where}"


_MANAGER: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide plugin manager, loaded from entry points on first use."""
    global _MANAGER
    if _MANAGER is None:
        manager = PluginManager()
        manager.load_entry_points()
        _MANAGER = manager
    return _MANAGER


def reset_manager() -> None:
    """Forget loaded plugins (tests, or after installing a plugin into a running process)."""
    global _MANAGER
    _MANAGER = None


def registry(kind: str) -> Registry:
    """The registry of one component kind, e.g. ``registry("scan").names()``."""
    return get_manager().registry(kind)
