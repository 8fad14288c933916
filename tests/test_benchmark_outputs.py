"""Benchmarks write their JSON outside the committed results unless --out names a committed file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_cpu_scan_does_not_overwrite_its_committed_result_by_default():
    spec = importlib.util.spec_from_file_location("cpu_scan_benchmark", REPO / "benchmarks" / "cpu_scan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.arguments().parse_args([]).out
    assert (REPO / "benchmarks" / "results" / "cpu_scan.json").is_file()
    assert not (REPO / out).resolve().is_relative_to(REPO / "benchmarks" / "results")
