"""Torch's CPU threads follow the cores other processes leave free (numbers: benchmarks/cpu_threads.py)."""

from __future__ import annotations

import pytest
import torch

from dimsum_core import cpu_threads
from dimsum_core.cpu_threads import ThreadShare, threads_for


@pytest.mark.parametrize("cores, others, threads", [(2, 0.0, 2), (2, 0.2, 2), (2, 0.4, 1), (2, 1.0, 1), (2, 1.9, 1),
                                                    (8, 0.1, 8), (8, 2.0, 6), (8, 9.0, 1)])
def test_threads_fill_the_cores_others_leave(cores, others, threads):
    assert threads_for(cores, others) == threads


class Clock:
    """Stands in for the wall clock, the machine's busy CPU seconds and this process's CPU seconds."""

    def __init__(self, monkeypatch):
        self.wall = self.busy = self.own = 0.0
        monkeypatch.setattr(cpu_threads, "busy_cpu_seconds", lambda: self.busy)
        monkeypatch.setattr(cpu_threads.time, "monotonic", lambda: self.wall)
        monkeypatch.setattr(cpu_threads.time, "process_time", lambda: self.own)

    def run(self, seconds: float, own_cores: float, other_cores: float) -> None:
        self.wall += seconds
        self.own += own_cores * seconds
        self.busy += (own_cores + other_cores) * seconds


@pytest.fixture
def threads():  # noqa: ANN201
    """Two torch threads for the test, whatever the machine; the original count afterwards."""
    original = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(original)


def test_a_busy_neighbour_takes_a_thread_and_gives_it_back(monkeypatch, threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    clock = Clock(monkeypatch)
    share = ThreadShare(interval_s=5.0)
    assert share.adjust() == 2
    clock.run(3.0, own_cores=2.0, other_cores=1.0)
    assert share.adjust() == 2 and torch.get_num_threads() == 2  # not measured yet: under 5 s
    clock.run(3.0, own_cores=1.0, other_cores=1.0)  # another process took a core
    assert share.adjust() == 1 and torch.get_num_threads() == 1
    clock.run(6.0, own_cores=1.0, other_cores=0.05)  # it ended
    assert share.adjust() == 2 and torch.get_num_threads() == 2


def test_a_count_the_user_chose_is_kept(monkeypatch, threads):
    clock = Clock(monkeypatch)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert not ThreadShare().enabled
    monkeypatch.delenv("OMP_NUM_THREADS")
    share = ThreadShare(interval_s=5.0)
    share.adjust()
    torch.set_num_threads(1)  # the program decided
    clock.run(6.0, own_cores=1.0, other_cores=0.0)
    assert share.adjust() == 1 and not share.enabled


def test_a_study_names_the_cpu_the_same_whatever_threads_it_has_now(threads):
    """The study compares its settings between invocations; make_room must not make them differ."""
    from convergence.driver import _device_name

    name = _device_name(torch.device("cpu"))
    torch.set_num_threads(1)
    assert _device_name(torch.device("cpu")) == name
