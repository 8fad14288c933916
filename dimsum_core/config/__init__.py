"""Recipes: OmegaConf YAML that composes registered components by name.

A component node is either a bare registry name (``scan: sweep4``) or a mapping with a ``name`` key
and the component's keyword arguments (``fusion: {name: cross-attention, num_heads: 8}``).
:func:`build` builds one (the module :mod:`dimsum_core.config.nodes` holds it).
"""

from dimsum_core.config.load import Recipe, load_recipe
from dimsum_core.config.nodes import build, split_node
from dimsum_core.config.spec import Kind, Spec
from dimsum_core.config.validate import validate_recipe

__all__ = ["Kind", "Recipe", "Spec", "build", "load_recipe", "split_node", "validate_recipe"]
