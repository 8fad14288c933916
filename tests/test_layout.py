"""The package's shape: module names are modules, one checkpoint loader, a registry plugins roll back through."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

import dimsum_core
from dimsum_core.errors import PluginError
from dimsum_core.plugin import hookimpl, manager, spec
from dimsum_core.registry import KINDS, Provenance, Registry


def test_every_module_name_is_the_module() -> None:
    """``import dimsum_core.x.y`` gives the module: no package rebinds a submodule's name to a function
    (``dimsum_core.registry`` was the registry() function, ``dimsum_core.config.build`` the build() function)."""
    for info in pkgutil.walk_packages(dimsum_core.__path__, "dimsum_core."):
        module = importlib.import_module(info.name)
        parent, _, leaf = info.name.rpartition(".")
        assert getattr(sys.modules[parent], leaf) is module, f"{parent}.{leaf} is not the module {info.name}"


def test_checkpoint_module_does_not_import_the_model_factory() -> None:
    """One loader, ``dimsum_core.models.load_model``, built on checkpoint.py's readers: no import circle."""
    tree = ast.parse(Path(sys.modules["dimsum_core.checkpoint"].__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "dimsum_core.models" not in imported


def test_hooks_are_derived_from_the_kinds() -> None:
    assert list(spec.HOOKS) == list(KINDS)
    assert all(callable(getattr(spec.SPECS, name)) for name in spec.HOOKS.values())


def test_a_failed_plugin_is_rolled_back_through_the_public_registry() -> None:
    scans = Registry("scan")
    first, second = Provenance("first", "one", "1"), Provenance("second", "two", "1")
    with scans.registering(first):
        scans.add("kept", object)
    with scans.registering(second):
        scans.add("mine", object)
        with pytest.raises(PluginError, match="registered twice"):
            scans.add("kept", object)
    scans.remove(second)
    assert scans.names() == ["kept"]
    with pytest.raises(RuntimeError, match="plugin hook"):
        scans.add("outside", object)  # registering() is over


def test_a_plugin_failing_in_its_second_kind_leaves_nothing_in_the_first() -> None:
    class TwoKinds:
        @staticmethod
        @hookimpl
        def dimsum_add_scans(registry: Registry) -> None:
            registry.add("two-kinds-scan", object)

        @staticmethod
        @hookimpl
        def dimsum_add_wavelets(registry: Registry) -> None:
            raise RuntimeError("boom")

    m = manager.PluginManager()
    m.register(TwoKinds, Provenance("two-kinds", "two-kinds-dist", "1"))
    assert "two-kinds-scan" not in m.registry("scan")
    assert [f.plugin for f in m.failed] == ["two-kinds"]
