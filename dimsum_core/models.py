"""``create_model`` and ``load_model``: the Python entry points to the model registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dimsum_core.config.build import build, split_node
from dimsum_core.interfaces.model import FlowModel


def create_model(name: str | dict[str, Any], **overrides: Any) -> FlowModel:
    """Build a registered model preset, e.g. ``create_model("dimsum-L/2", num_classes=1000)``.

    ``name`` may also be a recipe node (``{"name": ..., **kwargs}``). Overrides whose value is
    None are dropped, so unset CLI or recipe options never replace a preset's default.
    """
    model_name, kwargs = split_node(name, "model")
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    model = build("model", model_name, **kwargs)
    if not isinstance(model, FlowModel):
        raise TypeError(f"model '{model_name}' did not return a FlowModel (got {type(model).__name__})")
    model._dimsum_config = {"name": model_name, **kwargs}
    return model


def load_model(path: str | Path, *, ema: bool = True, device: str = "cpu") -> FlowModel:
    """Open a checkpoint directory written by training or ``dimsum convert-official``.

    ``ema=True`` (the default) loads the EMA weights when the checkpoint has them.
    """
    from dimsum_core.checkpoint import load_model_from_checkpoint

    return load_model_from_checkpoint(Path(path), ema=ema, device=device)
