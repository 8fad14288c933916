"""A tiny trainable flow model for the training tests, registered as a test plugin (``tiny-train``).

Like the official DiMSUM it carries a parameter that never gets a gradient (``cond_proj``, the
conditional-Mamba projection whose output the official kernel overwrites), so DDP and the optimizer must cope with it.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from dimsum_core.interfaces.model import FlowModel
from dimsum_core.plugin import hookimpl
from dimsum_core.plugin.manager import get_manager
from dimsum_core.registry import Provenance

PLUGIN = "tests-tiny-train-models"


class TinyTrainModel(FlowModel):
    """conv -> (+ time and label embedding) -> conv -> conv, with a dead ``cond_proj``."""

    def __init__(self, *, in_channels: int = 3, input_size: int = 8, num_classes: int = 4,
                 null_class: bool = True, width: int = 16, drop: float = 0.0):
        super().__init__()
        self.in_channels, self.input_size, self.num_classes = in_channels, input_size, num_classes
        self.null_class = null_class
        self.inp = nn.Conv2d(in_channels, width, 3, padding=1)
        self.time = nn.Linear(1, width)
        self.label = nn.Embedding(max(num_classes, 1) + int(null_class), width)
        self.mid = nn.Conv2d(width, width, 3, padding=1)
        self.out = nn.Conv2d(width, in_channels, 3, padding=1)
        self.cond_proj = nn.Linear(width, width)  # never used: no gradient, like the official one
        self.drop = nn.Dropout(drop)

    @property
    def has_null_class(self) -> bool:
        return self.null_class

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0]
        if y is None:
            y = torch.full((n,), self.num_classes if self.null_class else 0, dtype=torch.long, device=x.device)
        c = self.time(t.reshape(n, 1).to(x.dtype)) + self.label(y)  # (N, W)
        h = torch.nn.functional.silu(self.inp(x) + c[:, :, None, None])
        h = self.drop(torch.nn.functional.silu(self.mid(h)))
        return self.out(h)


@hookimpl
def dimsum_add_models(registry):  # noqa: ANN001 - pluggy hook
    registry.add("tiny-train", TinyTrainModel)


def register() -> None:
    """Register the test plugin in this process (idempotent)."""
    manager = get_manager()
    if not any(p.plugin == PLUGIN for p in manager.loaded):
        manager.register(sys.modules[__name__], Provenance(PLUGIN, "tests", "0"))
