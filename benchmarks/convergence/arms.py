"""The arms of the study: one ``train`` recipe each in ``recipes/study/``, sharing ``base.yaml``.

Each arm recipe is an ordinary training recipe (``dimsum validate`` and ``dimsum run`` work on it);
the study reads its model, data, objective, optimiser (``train:``) and sampler (``log:``) settings
and runs its own loop with evaluations at fixed image counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dimsum_core.config import load_recipe, validate_recipe
from dimsum_core.config.load import RECIPE_DIR
from dimsum_core.errors import RecipeError
from dimsum_core.train.config import LogConfig, TrainConfig, as_config

STUDY_RECIPES = RECIPE_DIR / "study"

#: arm name -> what it tests (the recipe is recipes/study/<name>.yaml)
ARMS = {
    "dimsum": "DiMSUM-S/2, official settings",
    "dit": "DiT-S/2 (attention only)",
    "mamba-sweep4": "Mamba-only-S/2, sweep-4 scan",
    "no-wavelet": "DiMSUM-S/2 without the wavelet branch",
    "concat-fusion": "DiMSUM-S/2, concat fusion instead of cross-attention",
    "no-transformer": "DiMSUM-S/2 without the shared transformer",
    "independent-transformers": "DiMSUM-S/2, independent transformers instead of one shared",
    "pyramid-layout": "DiMSUM-S/2, pyramid wavelet layout instead of interleaved",
}
#: question 3 (scan-order sensitivity): the spatial scans compared, each with and without the wavelet
#: branch; sweep4 (the official order) is the `dimsum` and `no-wavelet` arms
SCAN_ORDERS = ("bidirectional", "jpeg8", "sweep8", "zigzag8")
ARMS.update({arm: what for order in SCAN_ORDERS for arm, what in (
    (f"scan-{order}", f"DiMSUM-S/2, {order} spatial scan"),
    (f"scan-{order}-no-wavelet", f"DiMSUM-S/2 without the wavelet branch, {order} spatial scan"))})


def scan_order_arms(order: str) -> tuple[str, str]:
    """The (with wavelet, without wavelet) arms of one spatial scan order of question 3."""
    return ("dimsum", "no-wavelet") if order == "sweep4" else (f"scan-{order}", f"scan-{order}-no-wavelet")


@dataclass
class Arm:
    name: str
    recipe: Path
    model: Any
    data: dict[str, Any]
    objective: Any
    train: TrainConfig
    log: LogConfig


def parse_arms(text: str) -> list[str]:
    """``all`` or a comma-separated list of arm names."""
    if text.strip() == "all":
        return list(ARMS)
    names = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in names if a not in ARMS]
    if unknown or not names:
        raise RecipeError(f"unknown arm '{unknown[0] if unknown else text}'; arms: all, {', '.join(ARMS)}")
    return names


def scoped_overrides(overrides: list[str], arm: str) -> list[str]:
    """``key=value`` applies to every arm, ``ARM:key=value`` only to that arm."""
    chosen = []
    for item in overrides:
        head = item.split("=", 1)[0]
        if ":" in head:
            scope, rest = item.split(":", 1)
            if scope not in ARMS:
                raise RecipeError(f"override '{item}': '{scope}' is not an arm; arms: {', '.join(ARMS)}")
            if scope == arm:
                chosen.append(rest)
        else:
            chosen.append(item)
    return chosen


def load_arm(name: str, overrides: list[str] | None = None, recipe_dir: Path = STUDY_RECIPES) -> Arm:
    """Read and validate ``recipe_dir/<name>.yaml`` with the overrides that apply to this arm."""
    path = recipe_dir / f"{name}.yaml"
    recipe = load_recipe(str(path), scoped_overrides(list(overrides or []), name))
    problems = validate_recipe(recipe)
    if problems:
        raise RecipeError(problems[0])
    data = recipe.to_dict()
    if data.get("job") != "train":
        raise RecipeError(f"{path}: a study arm is a training recipe (job: train), got job: {data.get('job')}")
    return Arm(name, path, data["model"], data["data"], data.get("objective", "gvp"),
               as_config(TrainConfig, data.get("train"), "train"), as_config(LogConfig, data.get("log"), "log"))
