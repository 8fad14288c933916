"""Replaying a model's forward from CUDA graphs: sampling at small batch is bound by kernel launches
and Python overhead (a DiMSUM-L/2 forward launches thousands of small kernels), which a graph removes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dimsum_core.graph_capture import capture
from dimsum_core.interfaces.model import FlowModel


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    x: torch.Tensor
    t: torch.Tensor
    y: torch.Tensor | None
    out: torch.Tensor


class CudaGraphForward:
    """``model(x, t, y)`` for inference, captured once per input signature (shapes, dtypes, autocast)
    and replayed afterwards. Falls back to the eager model off CUDA or when gradients are enabled.

    Outputs are copies, so callers (ODE solvers keep several stages) may hold them across calls.
    """

    def __init__(self, model: FlowModel, warmup: int = 2):
        self.model = model
        self.num_classes, self.in_channels, self.input_size = model.num_classes, model.in_channels, model.input_size
        self.warmup = warmup
        self._graphs: dict[tuple, _Graph] = {}

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.device.type != "cuda" or torch.is_grad_enabled():
            return self.model(x, t, y)
        key = (tuple(x.shape), x.dtype, tuple(t.shape), t.dtype, None if y is None else tuple(y.shape),
               torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"))
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._graphs[key] = self._capture(x, t, y)
        entry.x.copy_(x)
        entry.t.copy_(t)
        if y is not None:
            entry.y.copy_(y)  # type: ignore[union-attr]
        entry.graph.replay()
        return entry.out.clone()

    def _capture(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> _Graph:
        sx, st, sy = x.clone(), t.clone(), None if y is None else y.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up outside the graph: lazy inits, autotuning, one-time warnings
            for _ in range(self.warmup):
                self.model(sx, st, sy)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # autocast's weight-cast cache lives outside the graph and is freed when the caller's autocast
        # region ends, so the casts must be recorded inside the graph instead
        autocast = torch.is_autocast_enabled("cuda")
        with capture(graph), torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), enabled=autocast,
                                            cache_enabled=False):
            out = self.model(sx, st, sy)
        return _Graph(graph, sx, st, sy, out)
