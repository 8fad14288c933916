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


def find_recipe(ref: str) -> Path:
    path = Path(ref)
    if path.is_file():
        return path
    for candidate in (RECIPE_DIR / ref, RECIPE_DIR / f"{ref}.yaml"):
        if candidate.is_file():
            return candidate
    known = sorted(str(p.relative_to(RECIPE_DIR).with_suffix("")) for p in RECIPE_DIR.rglob("*.yaml")) \
        if RECIPE_DIR.is_dir() else []
    from dimsum_core.registry import closest

    hint = closest(ref, known)
    hint_text = f"; did you mean '{hint}'?" if hint else (f"; bundled recipes: {', '.join(known)}" if known else "")
    raise RecipeError(f"{ref}: no such recipe file{hint_text}")


class _RecipeLoader(yaml.SafeLoader):
    """YAML's safe loader that also reads ``1e-4`` (no dot, as everyone writes learning rates) as a
    number; plain YAML 1.1 reads it as a string."""


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"), list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` that reads ``1e-4`` as a number: for recipe files, overrides and CLI options."""
    return yaml.load(text, Loader=_RecipeLoader)


def _read_yaml(path: Path) -> DictConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the recipe ({exc.strerror})") from None
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
        cfg = OmegaConf.merge(_read_yaml(base_path), cfg)
    return cfg  # type: ignore[return-value]


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
        if "=" not in item:
            raise RecipeError(f"{path}: override '{item}' is not key=value (e.g. train.steps=100)")
        key, value = item.split("=", 1)
        if not key:
            raise RecipeError(f"{path}: override '{item}' has no key")
        try:
            parsed = parse_yaml(value) if value != "" else ""
        except yaml.YAMLError:
            parsed = value
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
