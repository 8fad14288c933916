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


def test_scan_benchmark_table_reports_both_branches_in_one_call(capsys):
    """benchmarks/scan.py's table, from a committed H200 result plus the one-launch bound it now times:
    two calls cost twice the per-call figure, beside the measured call at twice the batch."""
    import json

    spec = importlib.util.spec_from_file_location("scan_benchmark", REPO / "benchmarks" / "scan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = json.loads((REPO / "benchmarks" / "results" / "scan_prefetch_h200.json").read_text())
    entry = result["shapes"]["L/2 512px (b16)"]
    entry["gluon_both_branches"] = {"scan_fwd_ms": 0.613, "scan_bwd_ms": 1.894}
    module.print_table(result)
    out = capsys.readouterr().out
    assert "L/2 512px (b16)   both branches, Gluon fwd / bwd ms: two calls 0.949 / 2.195, " \
           "one call at twice the batch 0.613 / 1.894" in out
    assert out.count("both branches") == 1  # shapes without the measurement print no such line
