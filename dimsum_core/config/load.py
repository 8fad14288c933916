"""Reading recipe files and applying ``key=value`` overrides."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dimsum_core.errors import RecipeError

#: bundled recipes, found by bare name (``dimsum run quickstart``) in a source checkout
RECIPE_DIR = Path(__file__).resolve().parents[2] / "recipes"


@dataclass
class Recipe:
    path: str
    cfg: DictConfig

    def to_yaml(self) -> str:
        return OmegaConf.to_yaml(self.cfg, resolve=True)

    def to_dict(self) -> dict[str, Any]:
        return OmegaConf.to_container(self.cfg, resolve=True)  # type: ignore[return-value]


def bundled_recipes() -> list[str]:
    """Names of the bundled recipes ``dimsum run NAME`` takes: the files that name a ``job:`` (shared
    bases such as ``study/base`` and settings files such as ``study/classifier`` do not)."""
    if not RECIPE_DIR.is_dir():
        return []
    names = []
    for path in sorted(RECIPE_DIR.rglob("*.yaml")):
        try:
            data = parse_yaml(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and "job" in data:
            names.append(str(path.relative_to(RECIPE_DIR).with_suffix("")))
    return names


def find_recipe(ref: str) -> Path:
    path = Path(ref)
    if path.is_file():
        return path
    for candidate in (RECIPE_DIR / ref, RECIPE_DIR / f"{ref}.yaml"):
        if candidate.is_file():
            return candidate
    known = bundled_recipes()
    from dimsum_core.registry import closest

    hint = closest(ref, known)
    hint_text = f"; did you mean '{hint}'?" if hint else (f"; bundled recipes: {', '.join(known)}" if known else "")
    raise RecipeError(f"{ref}: no such recipe file{hint_text}")


class _RecipeLoader(yaml.SafeLoader):
    """YAML's safe loader that also reads ``1e-4`` (no dot, as everyone writes learning rates) as a
    number; plain YAML 1.1 reads it as a string. Dates stay strings (no setting takes a timestamp)."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789."))

#: bounds on what one YAML text may expand to: aliases can make a few hundred bytes mean billions of
#: values ("billion laughs"), and every consumer (OmegaConf, validation) walks them all
MAX_VALUES = 100_000
MAX_DEPTH = 64
_PLAIN = (str, int, float, bool, type(None))


class YamlLimitError(yaml.YAMLError):
    """YAML that parses but is not a recipe value: too large, too deep, self-referencing or of an
    unsupported type. A ``yaml.YAMLError``, so every caller reports it as invalid YAML."""


def _check_values(data: Any) -> None:
    """Walk ``data`` as its consumers will (aliases expanded), within :data:`MAX_VALUES` and :data:`MAX_DEPTH`."""
    seen = 0
    stack: list[tuple[Any, int, tuple[int, ...]]] = [(data, 0, ())]
    while stack:
        value, depth, path = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise YamlLimitError(f"expands to more than {MAX_VALUES} values (aliases that repeat aliases?)")
        if isinstance(value, _PLAIN):
            continue
        if not isinstance(value, (dict, list)):
            raise YamlLimitError(f"holds a {type(value).__name__} (a YAML !!set, !!binary, !!timestamp ...); "
                                 f"write it as a list, mapping, string or number")
        if depth >= MAX_DEPTH:
            raise YamlLimitError(f"nests deeper than {MAX_DEPTH} levels")
        if id(value) in path:
            raise YamlLimitError("contains itself (a recursive alias)")
        inner = (*path, id(value))
        if isinstance(value, dict):
            for key in value:
                if key is None or not isinstance(key, _PLAIN):
                    raise YamlLimitError(f"has a key {key!r}; keys are names (strings)")
            children = list(value.values())
        else:
            children = value
        stack.extend((child, depth + 1, inner) for child in children)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` that reads ``1e-4`` as a number and refuses what no recipe value can be (see
    :class:`YamlLimitError`): for recipe files, overrides, CLI options and checkpoint recipes."""
    try:
        data = yaml.load(text, Loader=_RecipeLoader)
    except RecursionError:
        raise YamlLimitError(f"nests too deeply to read (keep it under {MAX_DEPTH} levels)") from None
    _check_values(data)
    return data


def _read_yaml(path: Path, including: tuple[Path, ...] = ()) -> DictConfig:
    """``including``: the recipes whose ``base:`` chain led here (a recipe may not be its own base)."""
    if path.resolve() in including:
        raise RecipeError(f"{path}: base: leads back to itself ({' -> '.join(p.name for p in (*including, path))})")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the recipe ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text (byte {exc.start}); save the recipe as UTF-8") from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{path}{where}: not valid YAML ({problem})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys to values, got {type(data).__name__}")
    base = data.pop("base", None)
    cfg = OmegaConf.create(data)
    if base is not None:
        base_path = (path.parent / str(base))
        if not base_path.is_file():
            raise RecipeError(f"{path}: base: '{base}' does not exist (paths are relative to the recipe)")
        cfg = OmegaConf.merge(_read_yaml(base_path, (*including, path.resolve())), cfg)
    return cfg  # type: ignore[return-value]


def parse_assignment(item: str, what: str) -> tuple[str, Any]:
    """One ``key=value`` (a recipe override, ``--sampler-opt``, ``--extractor-opt``, ``show-scan --set``):
    the value read as YAML (``1e-4`` a number, ``[1, 2]`` a list), kept as text where it is no YAML value,
    the empty string where it is empty. ``what`` names the option in the error line."""
    key, sep, value = item.partition("=")
    if not sep:
        raise RecipeError(f"{what} '{item}' is not key=value (e.g. train.steps=100)")
    if not key:
        raise RecipeError(f"{what} '{item}' has no key")
    try:
        return key, parse_yaml(value) if value != "" else ""
    except yaml.YAMLError:
        return key, value


def parse_assignments(items: list[str] | tuple[str, ...], what: str) -> dict[str, Any]:
    """``key=value`` items (see :func:`parse_assignment`) as keyword arguments of one component."""
    return dict(parse_assignment(item, what) for item in items)


def apply_overrides(cfg: DictConfig, overrides: list[str], path: str) -> DictConfig:
    """``key=value`` sets (values parsed as YAML), ``~key`` deletes."""
    for item in overrides:
        if item.startswith("~"):
            key = item[1:]
            parent_key, _, leaf = key.rpartition(".")
            parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
            if not isinstance(parent, DictConfig) or leaf not in parent:
                raise RecipeError(f"{path}: override '{item}': there is no key '{key}' to delete")
            del parent[leaf]
            continue
        key, parsed = parse_assignment(item, f"{path}: override")
        try:
            OmegaConf.update(cfg, key, parsed, merge=False, force_add=True)
        except OmegaConfBaseException as exc:
            raise RecipeError(f"{path}: override '{item}': {str(exc).splitlines()[0]}") from None
    return cfg


def load_recipe(ref: str, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe (a path, or the name of a bundled recipe) and apply overrides."""
    path = find_recipe(ref)
    cfg = apply_overrides(_read_yaml(path), list(overrides or []), str(path))
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise RecipeError(f"{path}: interpolation failed: {str(exc).splitlines()[0]}") from None
    return Recipe(str(path), cfg)
