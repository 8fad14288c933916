"""Building components from recipe nodes through the registries."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from dimsum_core.errors import RecipeError


def plain(node: Any) -> Any:
    """OmegaConf containers to plain dicts and lists (components never see OmegaConf objects)."""
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def split_node(node: Any, where: str = "") -> tuple[str, dict[str, Any]]:
    """A component node -> (registry name, keyword arguments)."""
    node = plain(node)
    if isinstance(node, str):
        return node, {}
    if isinstance(node, Mapping):
        if "name" not in node:
            raise RecipeError(f"{where or 'component'}: a component mapping needs a 'name' key "
                              f"(e.g. {{name: ..., arg: value}})")
        kwargs = {k: v for k, v in node.items() if k != "name"}
        return str(node["name"]), kwargs
    raise RecipeError(f"{where or 'component'}: expected a registry name or a mapping with 'name', "
                      f"got {node!r}")


def build(kind: str, node: Any, *args: Any, **extra: Any) -> Any:
    """Build the component that ``node`` names. ``args`` and ``extra`` are what the caller supplies
    (the width of a fusion; the arguments ``create_model`` gives a model): a setting the caller gives
    cannot also be given on the node, and the component must take it; either is one :class:`RecipeError`
    line. The node is checked as `dimsum validate` checks it (keys, types, ranges) first."""
    from dimsum_core.config.validate import check_node, recipe_parameters
    from dimsum_core.plugin.manager import registry

    name, kwargs = split_node(node, kind)
    entry = registry(kind).get(name)
    params, _, takes_any = recipe_parameters(entry.factory)
    if both := sorted(set(kwargs) & set(extra)):
        raise RecipeError(f"{kind} '{name}': {', '.join(both)} is set by what builds the {kind}; remove it from "
                          f"the {kind} node")
    if not takes_any and (untaken := [k for k in extra if k not in params]):
        raise RecipeError(f"{kind} '{name}' does not take {', '.join(untaken)}, which what builds it gives "
                          f"every {kind}; choose a {kind} that takes them")
    positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD][:len(args)]
    check_node(kind, {"name": name, **{k: v for k, v in kwargs.items() if k not in extra}}, kind,
               supplied={*extra, *positional})
    kwargs.update(extra)
    built = entry.factory(*args, **kwargs)
    p = entry.provenance
    # errors found later (a scan's order on the model's grid) name the component, not its Python class
    with contextlib.suppress(AttributeError):
        built.dimsum_component = f"{kind} '{name}' (plugin '{p.plugin}', {p.distribution} {p.version})"
    return built
