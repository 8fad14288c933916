"""CUDA-graph capture with Python's cycle collector run before and paused inside (dimsum_core.graph_capture).
The capture itself is faked: what is checked is the collector's state around it, on any machine."""

from __future__ import annotations

import contextlib
import gc

import pytest
import torch

from dimsum_core.graph_capture import capture


class _Holder:
    """Stands in for a training step and its CUDA graphs, which refer to each other: only the cycle collector
    frees them, and their finaliser must not run during a capture."""

    def __init__(self, log: list) -> None:
        self.log = log

    def __del__(self) -> None:
        self.log.append("freed")


def test_capture_collects_dead_cycles_first_and_pauses_the_collector(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list = []

    @contextlib.contextmanager
    def fake_graph(graph: object, **options: object):  # noqa: ANN202
        log.append(("enter", gc.isenabled(), options))
        yield
        log.append(("exit", gc.isenabled()))

    monkeypatch.setattr(torch.cuda, "graph", fake_graph)
    gc.disable()  # the cycle below is left for capture to collect
    first, second = _Holder(log), _Holder(log)
    first.other, second.other = second, first
    del first, second
    gc.enable()
    with capture(object(), pool="shared"):
        log.append(("inside", gc.isenabled()))
    assert log == ["freed", "freed", ("enter", False, {"pool": "shared"}), ("inside", False), ("exit", False)]
    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="capture failed"), capture(object()):
        raise RuntimeError("capture failed")
    assert gc.isenabled()  # restored when a capture raises
    gc.disable()
    try:
        with capture(object()):
            pass
        assert not gc.isenabled()  # a caller's own setting is kept
    finally:
        gc.enable()
