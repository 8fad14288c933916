"""The dry run: bind every component's arguments without building anything.

Unknown keys, wrong types, missing values and unknown component names are each reported as one
line naming the recipe file, the key and, where one exists, the closest valid choice.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal, Union

from dimsum_core.config.load import Recipe
from dimsum_core.config.nodes import plain
from dimsum_core.config.spec import Kind, Range
from dimsum_core.errors import RecipeError, UnknownComponentError
from dimsum_core.registry import closest

_UNION_TYPES: tuple[Any, ...] = (Union, types.UnionType)


@functools.cache  # factories are module-level classes and functions; every build asks
def recipe_parameters(factory: Any) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """The recipe-settable (keyword) parameters of a factory, their type hints, and whether it takes
    ``**kwargs``. Positional-only parameters are supplied by the caller, never by a recipe."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    sig = inspect.signature(factory)
    try:
        hints = typing.get_type_hints(target, include_extras=True)
    except Exception:  # unresolvable annotations: check names only
        hints = {}
    params, var_kw = {}, False
    for p in sig.parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            params[p.name] = p
    return params, hints, var_kw


def _type_name(ann: Any) -> str:
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        meta = [m for m in typing.get_args(ann)[1:] if isinstance(m, Kind)]
        return f"a {meta[0].kind} (name or mapping)" if meta else _type_name(typing.get_args(ann)[0])
    if origin in _UNION_TYPES:
        return " or ".join(_type_name(a) for a in typing.get_args(ann))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(ann))
    if ann is type(None):
        return "null"
    if dataclasses.is_dataclass(ann):
        return "a mapping"
    return getattr(ann, "__name__", str(ann))


class _Checker:
    def __init__(self, recipe_path: str):
        self.path = recipe_path
        self.problems: list[str] = []

    def report(self, key: str, message: str) -> None:
        self.problems.append(f"{self.path}: {key}: {message}" if self.path else f"{key}: {message}")

    # -- values ---------------------------------------------------------------------------------
    def value(self, value: Any, ann: Any, key: str) -> None:
        problem = self._value_problem(value, ann, key)
        if problem:
            self.report(key, problem)

    def _value_problem(self, value: Any, ann: Any, key: str) -> str | None:
        """None if ``value`` fits ``ann`` (nested problems are reported directly)."""
        if ann is Any or ann is inspect.Parameter.empty:
            return None
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            base, *meta = typing.get_args(ann)
            kinds = [m for m in meta if isinstance(m, Kind)]
            if kinds:
                if isinstance(value, (str, Mapping)):
                    self.component(kinds[0].kind, value, key)
                    return None
                return f"expected a {kinds[0].kind} name or a mapping with 'name', got {value!r}"
            problem = self._value_problem(value, base, key)
            ranges = [m for m in meta if isinstance(m, Range)]
            if problem is None and ranges and isinstance(value, (int, float)) and not isinstance(value, bool):
                problem = ranges[0].problem(value)
            return problem
        if origin in _UNION_TYPES:
            args = typing.get_args(ann)
            if value is None:
                return None if type(None) in args else f"expected {_type_name(ann)}, got null"
            # a component or dataclass alternative reports its own nested problems
            for arg in args:
                if arg is type(None):
                    continue
                saved = len(self.problems)
                problem = self._value_problem(value, arg, key)
                if problem is None:
                    return None
                del self.problems[saved:]
            return f"expected {_type_name(ann)}, got {value!r}"
        if origin is Literal:
            choices = typing.get_args(ann)
            if value in choices:
                return None
            hint = closest(str(value), [str(c) for c in choices])
            return f"{value!r} is not one of {', '.join(map(repr, choices))}" + (
                f"; did you mean '{hint}'?" if hint else "")
        if ann is type(None):
            return None if value is None else f"expected null, got {value!r}"
        if ann is bool:
            return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
        if ann is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
            return None if ok else f"expected an integer, got {value!r}"
        if ann is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            return None if ok else f"expected a finite number, got {value!r}"
        if ann is str:
            return None if isinstance(value, str) else f"expected a string, got {value!r}"
        if dataclasses.is_dataclass(ann) and isinstance(ann, type):
            if not isinstance(value, Mapping):
                return f"expected a mapping, got {value!r}"
            self.dataclass_fields(ann, value, key)
            return None
        if origin in (list, tuple, Sequence) or ann in (list, tuple):
            if not isinstance(value, (list, tuple)):
                return f"expected a list, got {value!r}"
            args = [a for a in typing.get_args(ann) if a is not Ellipsis]
            if origin is tuple and Ellipsis not in typing.get_args(ann) and len(value) != len(args):
                return f"expected a list of {len(args)} values, got {value!r}"
            if len(args) == 1 or (origin is tuple and len(set(args)) == 1 and args):
                for i, item in enumerate(value):
                    self.value(item, args[0], f"{key}[{i}]")
            return None
        if origin in (dict, Mapping) or ann in (dict,):
            return None if isinstance(value, Mapping) else f"expected a mapping, got {value!r}"
        return None

    # -- structures -----------------------------------------------------------------------------
    def keys(self, given: Mapping[str, Any], params: dict[str, Any], required: list[str], key: str,
             open_ended: bool = False) -> None:
        prefix = f"{key}." if key else ""
        for name in given:
            if name not in params and not open_ended:
                hint = closest(str(name), list(params))
                self.report(f"{prefix}{name}", "unknown key" + (f"; did you mean '{hint}'?" if hint else
                            f"; valid keys: {', '.join(params) or '(none)'}"))
        for name in required:
            if name not in given:
                self.report(f"{prefix}{name}", "missing value (it has no default; set it in the recipe "
                            f"or with {prefix}{name}=...)")

    def dataclass_fields(self, cls: type, given: Mapping[str, Any], key: str) -> None:
        hints = typing.get_type_hints(cls, include_extras=True)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        self.keys(given, fields, required, key)
        for name, v in given.items():
            if name in fields:
                self.value(v, hints.get(name, Any), f"{key}.{name}" if key else name)

    def component(self, kind: str, node: Any, key: str, supplied: Collection[str] = ()) -> None:
        """``supplied``: arguments the code that builds it passes itself (not the recipe's to give)."""
        from dimsum_core.plugin.manager import registry

        if isinstance(node, str):
            name, kwargs = node, {}
        elif "name" not in node:
            self.report(key, f"a {kind} mapping needs a 'name' key "
                        f"(e.g. {key.rsplit('.', 1)[-1]}: {{name: ..., arg: value}})")
            return
        else:
            name, kwargs = str(node["name"]), {k: v for k, v in node.items() if k != "name"}
        try:
            entry = registry(kind).get(name)
        except UnknownComponentError as exc:
            self.report(key if isinstance(node, str) else f"{key}.name", str(exc))
            return
        self.arguments(entry.factory, kwargs, key, supplied)

    def arguments(self, factory: Any, kwargs: Mapping[str, Any], key: str, supplied: Collection[str] = ()) -> None:
        params, hints, var_kw = recipe_parameters(factory)
        required = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in supplied]
        self.keys(kwargs, params, required, key, open_ended=var_kw)
        for name, v in kwargs.items():
            if name in params:
                self.value(v, hints.get(name, Any), f"{key}.{name}" if key else name)


def validate_recipe(recipe: Recipe) -> list[str]:
    """All problems of a recipe, one line each; an empty list means it is valid."""
    checker = _Checker(recipe.path)
    data = plain(recipe.cfg)
    if "job" not in data:
        from dimsum_core.plugin.manager import registry

        checker.report("job", "missing: a recipe says what to run, e.g. job: train "
                       f"(jobs: {', '.join(registry('job').names())})")
        return checker.problems
    job = data["job"]
    if not isinstance(job, str):
        checker.report("job", f"expected a job name, got {job!r}")
        return checker.problems
    from dimsum_core.plugin.manager import registry

    try:
        entry = registry("job").get(job)
    except UnknownComponentError as exc:
        checker.report("job", str(exc))
        return checker.problems
    settings = {k: v for k, v in data.items() if k != "job"}
    checker.arguments(entry.factory, settings, "")
    # a job may check more once every value is right: what its run would build and hit (``job.check``)
    deeper = getattr(entry.factory, "check", None)
    if not checker.problems and deeper is not None:
        for problem in deeper(settings):
            checker.problems.append(f"{recipe.path}: {problem}")
    return checker.problems


def _first_problem(checker: _Checker) -> None:
    if checker.problems:
        raise RecipeError(checker.problems[0])


def check_node(kind: str, node: Any, key: str, supplied: Collection[str] = ()) -> None:
    """The checks of `dimsum validate` for one component node, raising the first problem: every build runs
    them, so a Python caller or a run gets the same one line as the dry run."""
    checker = _Checker("")
    checker.component(kind, plain(node), key, supplied)
    _first_problem(checker)


def check_settings(cls: type, given: Mapping[str, Any], key: str) -> None:
    """The checks of `dimsum validate` for an option group (a dataclass such as ``train:``)."""
    checker = _Checker("")
    checker.dataclass_fields(cls, given, key)
    _first_problem(checker)
