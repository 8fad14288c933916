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
    two calls cost twice the per-call figure, beside the measured launch for both branches."""
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
           "one launch for both 0.613 / 1.894" in out
    assert out.count("both branches") == 1  # shapes without the measurement print no such line


def test_bench_table_shows_compiled_tf32(capsys):
    """`dimsum bench --compile` also times TF32 training compiled (graphed with --cuda-graph), issue 14's TF32
    target being compiled against compiled like the others; the table's next-to-last column shows it, "-"
    where a run has none (session 9's committed result), and the last the compile's seconds."""
    import json

    from dimsum_core.gpu_benchmark import print_table

    result = json.loads((REPO / "benchmarks" / "results" / "gpu_prefetch_h200.json").read_text())
    print_table(result)
    before = capsys.readouterr().out
    assert "compiled tf32" in before and "301.5" not in before
    assert next(line for line in before.splitlines() if line.startswith("dimsum-L/2")).split()[-2] == "-"
    result["models"]["dimsum-L/2"]["256px"]["train_tf32_compiled_graphed"] = {"img_per_s": 301.5}
    print_table(result)
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("dimsum-L/2"))
    compile_s = result["models"]["dimsum-L/2"]["256px"]["train_bf16_compiled"]["compile_s"]
    assert row.split()[-2:] == ["301.5", f"{compile_s:.1f}"]  # compiled TF32, then the compile's seconds


def test_bench_table_marks_what_a_run_did_not_time_and_what_ran_out_of_memory(capsys):
    """A 32-px run times no forward latencies: those cells read "-", an out-of-memory variant "OOM", and
    every row keeps the header's width, so the columns stay under their headers."""
    import json

    from dimsum_core.gpu_benchmark import print_table

    result = json.loads((REPO / "benchmarks" / "results" / "gpu_s14_32_dimsum_h200.json").read_text())
    result["models"]["dimsum-S/2"]["32px"]["train_tf32"] = {"error": "out of memory"}
    print_table(result)
    header, row = capsys.readouterr().out.splitlines()[-2:]
    assert row.split()[3:] == ["OOM", "633.2", "5.2%", "18.2", "-", "-", "-", "1077.9", "-", "1192.3", "1997.2",
                               "917.2", "36.4"]
    assert len(row) == len(header)
    assert header.index("fwd b1 ms") + len("fwd b1 ms") == row.index(" -") + 2  # right-aligned under its header


def test_profile_steps_sorts_kernels_into_categories_by_name():
    """benchmarks/profile_steps.py: the first matching category wins (a fused inductor kernel named after a
    reduction is a reduction), anything unmatched is "other", totals in ms, largest first."""
    spec = importlib.util.spec_from_file_location("profile_steps", REPO / "benchmarks" / "profile_steps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kernels = [{"name": "scan_bwd_kernel", "us": 600.0}, {"name": "scan_fwd_kernel", "us": 200.0},
               {"name": "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT", "us": 500.0},
               {"name": "triton_red_fused_native_layer_norm_0", "us": 300.0},
               {"name": "triton_poi_fused_cat_clone_transpose_30", "us": 100.0},
               {"name": "triton_poi_fused_gelu_mul_1", "us": 50.0}, {"name": "mystery", "us": 1.0}]
    cats = module.categorize(kernels)
    assert cats == {"scan": 0.8, "matrix products": 0.5, "reductions and norms": 0.3,
                    "copies and layouts": 0.1, "inductor fused": 0.05, "other": 0.001}
    assert list(cats) == sorted(cats, key=cats.get, reverse=True)
    out = module.arguments().parse_args([]).out
    assert not (REPO / out).resolve().is_relative_to(REPO / "benchmarks" / "results")
