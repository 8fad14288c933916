"""``create_model`` and ``load_model``: the Python entry points to the model registry."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any

from dimsum_core.config.build import build, split_node
from dimsum_core.config.spec import Kind
from dimsum_core.config.validate import check_node
from dimsum_core.errors import DimsumError, RecipeError
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
    """Open a checkpoint directory written by training or ``dimsum convert-official``.

    ``ema=True`` (the default) loads the EMA weights when the checkpoint has them.
    """
    from dimsum_core.checkpoint import load_model_from_checkpoint

    return load_model_from_checkpoint(Path(path), ema=ema, device=device)
