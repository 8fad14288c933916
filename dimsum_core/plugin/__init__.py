"""The pluggy core: the `dimsum` marker (also the entry-point group), hook specs and the manager.

A plugin is a module registered under the entry-point group ``dimsum`` whose functions are marked
with :data:`hookimpl`::

    from dimsum_core.plugin import hookimpl

    @hookimpl
    def dimsum_add_scans(registry):
        registry.add("spiral", SpiralScan)
"""

from __future__ import annotations

import pluggy

NAME = "dimsum"
hookimpl = pluggy.HookimplMarker(NAME)

__all__ = ["NAME", "hookimpl"]
