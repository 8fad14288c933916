"""The model contract every preset returns.

Time convention (all of dimsum): ``t`` in [0, 1] with **t = 0 noise and t = 1 data**; the model
returns the velocity ``dx/dt`` of the probability-flow ODE.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn


class FlowModel(nn.Module, ABC):
    #: channels of the input (4 for SD-VAE latents, 3 for pixels)
    in_channels: int
    #: spatial size of the input (latent side for latent models)
    input_size: int
    #: number of real classes; the null (guidance) class is index ``num_classes``. 0 = unconditional
    num_classes: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every model class records the keyword arguments it was built with (the outermost constructor
        records last), so a model made without ``create_model`` still saves a config that rebuilds it."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def recording_init(self: FlowModel, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            object.__setattr__(self, "_init_kwargs", dict(kw))

        cls.__init__ = recording_init

    @abstractmethod
    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, C, H, W), t (N,) in [0, 1], y (N,) int64 or None -> velocity (N, C, H, W)."""

    def compile_regions(self, **options: Any) -> None:
        """``torch.compile`` this model in place for ``train.compile`` and ``dimsum bench --compile``
        (``options`` as ``nn.Module.compile``'s: ``mode``, ``backend``, ...). This default compiles it
        whole; a model whose blocks repeat compiles each block once instead (:class:`PatchFlowModel`)."""
        self.compile(**options)

    def config(self) -> dict[str, Any]:
        """The registry name and keyword arguments that rebuild this model (saved with checkpoints):
        what ``create_model`` was given, or else this class's registered name and constructor arguments."""
        if hasattr(self, "_dimsum_config"):
            return dict(self._dimsum_config)
        from dimsum_core.errors import DimsumError
        from dimsum_core.plugin.manager import registry

        names = [entry.name for entry in registry("model") if entry.factory is type(self)]
        if not names:
            raise DimsumError(f"{type(self).__name__} is not a registered model, so a checkpoint of it could "
                              f"not be rebuilt; register it (docs/plugins.md) or build it with create_model")
        return {"name": names[0], **self._init_kwargs}
