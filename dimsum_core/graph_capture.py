"""CUDA-graph capture that a Python garbage collection cannot break.

``torch.cuda.graph`` captures in CUDA's global mode, where a thread must not free device memory or destroy a
graph while it captures. Python's cycle collector can run at any allocation, and a dead reference cycle may
hold an earlier CUDA graph (a training step and its graphs refer to each other), whose destruction then frees
the graph's memory pool in the middle of another capture: the capture fails with "operation failed due to a
previous error during capture" at whichever launch comes next. ``torch.cuda.graph`` no longer collects before
a capture (``torch.compiler.config.force_cudagraph_gc``, off by default), so :func:`capture` does: once before,
and none during.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def capture(graph: torch.cuda.CUDAGraph, **options) -> Iterator[None]:  # noqa: ANN003
    """``torch.cuda.graph(graph, **options)`` with dead cycles collected first and the collector paused inside."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with torch.cuda.graph(graph, **options):
            yield
    finally:
        if was_enabled:
            gc.enable()
