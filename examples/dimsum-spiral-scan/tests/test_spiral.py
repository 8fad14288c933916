"""Tests a plugin author writes: the order itself, and that dimsum finds it once installed."""

from __future__ import annotations

import torch
from dimsum_spiral_scan import SpiralScan

from dimsum_core.config import build
from dimsum_core.interfaces.scan import ScanIndex
from dimsum_core.plugin.manager import registry


def test_clockwise_from_the_top_left():
    # [[0, 1, 2, 3],
    #  [4, 5, 6, 7],
    #  [8, 9, 10, 11]]
    assert SpiralScan().order(3, 4, 0).tolist() == [0, 1, 2, 3, 7, 11, 10, 9, 8, 4, 5, 6]
    assert SpiralScan().order(3, 4, 1).tolist() == [6, 5, 4, 8, 9, 10, 11, 7, 3, 2, 1, 0]


def test_is_a_permutation_that_scan_index_undoes():
    x = torch.randn(2, 35, 4)
    for layer in range(4):
        index = ScanIndex(SpiralScan(), 5, 7, layer)
        assert torch.equal(index.unscan(index.scan(x)), x)


def test_registered_with_dimsum():
    entry = registry("scan").get("spiral")
    assert entry.provenance.distribution == "dimsum-spiral-scan"
    assert isinstance(build("scan", "spiral"), SpiralScan)
