"""The model factory: ``create_model`` builds a registered model by name, ``load_model`` opens a checkpoint.
The networks themselves are in :mod:`dimsum_core.network`."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any

import torch

from dimsum_core.checkpoint import (
    EMA_WEIGHTS,
    MODEL_JSON,
    MODEL_WEIGHTS,
    check_shapes,
    load_state_checked,
    read_model_config,
    read_weight_shapes,
    read_weights,
    resolve_checkpoint,
)
from dimsum_core.config.nodes import build, split_node
from dimsum_core.config.spec import Kind
from dimsum_core.config.validate import check_node
from dimsum_core.errors import CheckpointError, DimsumError, RecipeError
from dimsum_core.interfaces.model import FlowModel


def create_model(name: str | dict[str, Any], **overrides: Any) -> FlowModel:
    """Build a registered model preset, e.g. ``create_model("dimsum-L/2", num_classes=1000)``.

    ``name`` may also be a recipe node (``{"name": ..., **kwargs}``). Overrides whose value is
    None are dropped, so unset CLI or recipe options never replace a preset's default.
    """
    model_name, kwargs = split_node(name, "model")
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    _check_arguments(model_name, kwargs)
    check_node("model", {"name": model_name, **kwargs}, "model")
    model = build("model", model_name, **kwargs)
    if not isinstance(model, FlowModel):
        raise TypeError(f"model '{model_name}' did not return a FlowModel (got {type(model).__name__})")
    model._dimsum_config = {"name": model_name, **kwargs}
    return model


def _check_arguments(model_name: str, kwargs: dict[str, Any]) -> None:
    """One line naming an argument the model does not take, instead of a TypeError from its constructor.
    A key of one of the model's components (``backend`` of its mixer) is pointed to that component."""
    from dimsum_core.config.validate import recipe_parameters
    from dimsum_core.plugin.manager import registry
    from dimsum_core.registry import closest

    params, hints, takes_any = recipe_parameters(registry("model").get(model_name).factory)
    for key in kwargs:
        if takes_any or key in params:
            continue
        owner = _component_taking(key, params, hints)
        if owner:
            hint = f"it is an argument of the {owner[0]}: {owner[0]}={{'name': '{owner[1]}', '{key}': ...}}"
        else:
            near = closest(key, list(params))
            hint = (f"did you mean '{near}'? " if near else "") + f"it takes: {', '.join(params)}"
        raise RecipeError(f"model '{model_name}' has no argument '{key}'; {hint}")


def _component_taking(key: str, params: dict[str, inspect.Parameter], hints: dict[str, Any]) -> tuple[str, str] | None:
    """(argument, component name) of the model's default component that takes ``key``, if any."""
    from dimsum_core.config.validate import recipe_parameters
    from dimsum_core.plugin.manager import registry

    for arg, param in params.items():
        kinds = [m for m in typing.get_args(hints.get(arg)) if isinstance(m, Kind)]
        if not kinds or param.default is inspect.Parameter.empty:
            continue
        try:
            name, _ = split_node(param.default, kinds[0].kind)
            sub, _, _ = recipe_parameters(registry(kinds[0].kind).get(name).factory)
        except DimsumError:
            continue
        if key in sub:
            return arg, name
    return None


def load_model(path: str | Path, *, ema: bool = True, device: str = "cpu") -> FlowModel:
    """Open a checkpoint directory written by training or ``dimsum convert-official`` (or a run's out_dir,
    for its newest checkpoint). ``ema=True`` (the default) loads the EMA weights when the checkpoint has them.

    The model ``model.json`` describes is first built on the meta device and checked against the weights
    file's header: a crafted or foreign ``model.json`` gets one line instead of a huge allocation."""
    directory = resolve_checkpoint(path)
    weights = directory / EMA_WEIGHTS if ema and (directory / EMA_WEIGHTS).is_file() else directory / MODEL_WEIGHTS
    config = read_model_config(directory)
    name = config.pop("name")
    where = directory / MODEL_JSON
    try:
        with torch.device("meta"):
            probe = create_model(name, **config)
    except DimsumError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{where}: does not describe a buildable model ({exc})") from None
    check_shapes({k: tuple(v.shape) for k, v in probe.state_dict().items()}, read_weight_shapes(weights),
                 str(weights))
    model = create_model(name, **config)
    load_state_checked(model, read_weights(weights), str(weights))
    return model.to(device).eval()
