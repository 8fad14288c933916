"""The Mamba mixer's kernels at DiMSUM's shapes, one process, one GPU: dimsum's selective scan (the Gluon
kernels and the Triton ones) and causal conv + SiLU against mamba-ssm's / causal-conv1d's CUDA kernels and
against the bytes-moved bound.

    python benchmarks/scan.py --out benchmarks/results/scan_h200.json
    python benchmarks/scan.py --sweep          # also try tile configurations of both scans and the conv

Shapes: one branch's scan of a DiM block (d_inner = hidden width, n = 16), bf16 sequences as under bf16
autocast, float32 parameters. Forward and backward are timed as separate calls: one pass over several input
sets (so no call reads another's cached output) is captured in a CUDA graph and its replays timed (CUDA events,
warm-up, median of repeats), which gives the kernels' device time, as a graphed or compiled training step pays
it; ``--eager-timing`` times the calls as Python issues them, host dispatch included (the only way until
session 9, when the conv forward read 59-74 µs a call at shapes moving 25 to 67 MB, the smallest among the
slowest: the host's time, it seems, not the kernel's). The bound
is the bytes each call must move (every input read once, every output written once) over the copy
bandwidth measured in the same run. All take the same (N, d, L) time-contiguous inputs. The Gluon
forward also writes the chunk states its backward reads (not counted in the bound). Each shape also times
a block's two scans as one launch (what a compiled training step runs) against two calls.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dimsum_core.gpu_benchmark import cuda_time
from dimsum_core.graph_capture import capture

SHAPES = {  # name: (batch, length, d_inner, scans in a training step = 2 per DiM block)
    "L/2 256px (b64)": (64, 256, 1024, 32),
    "L/2 512px (b16)": (16, 1024, 1024, 32),
    "S/2 256px (b64)": (64, 256, 384, 24),
}
STATE = 16
SWEEP = [(256, 8, 4), (128, 4, 1), (64, 8, 1), (128, 2, 1), (128, 8, 2), (64, 16, 2), (128, 16, 4), (256, 16, 8)]
SWEEP_CONV = [(256, 16, 4), (256, 8, 4)]
SWEEP_GLUON = [(16, 1), (16, 2), (16, 4), (8, 2), (8, 4), (32, 1)]
SCAN_ARGS = ("u", "delta", "A", "B", "C", "D", "z", "bias")


#: how calls are timed: replays of a CUDA graph of one pass over the input sets (the kernels' device time,
#: what a graphed or compiled training step pays), or the calls themselves (--eager-timing: the host's
#: dispatch too, which custom ops and Triton's launcher make tens of µs a call, more than a small kernel)
GRAPHED = True
#: the calls that could not be captured in a CUDA graph and were timed eagerly instead
EAGER_FALLBACKS: list[str] = []


def cuda_ms(fn: Callable[[int], Any], sets: int, warmup: int = 3, repeats: int = 20) -> float:
    """Median ms of fn(i), i cycling over the input sets; each sample times one pass over all sets."""
    if GRAPHED:
        side = torch.cuda.Stream()  # warm-up (compiles, allocator) off the capturing stream, as CUDA graphs need
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                for i in range(sets):
                    fn(i)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with capture(graph):
                for i in range(sets):
                    fn(i)
        except RuntimeError as exc:  # a call the graph cannot hold: time it eagerly, and say so
            EAGER_FALLBACKS.append(f"{getattr(fn, '__qualname__', fn)}: {str(exc).splitlines()[0][:120]}")
        else:
            return 1e3 * cuda_time(graph.replay, warmup=2, repeats=repeats) / sets
    index = itertools.cycle(range(sets))
    return 1e3 * cuda_time(lambda: fn(next(index)), warmup=warmup, repeats=repeats, inner=sets)


def copy_bandwidth() -> float:
    """Bytes/s of a large device-to-device copy, counting bytes read plus written. Timed eagerly: a 2-GiB
    copy is no host-bound call, and captured in a CUDA graph it becomes a memcpy node that the copy engine
    runs at 2.8 TB/s instead of the copy kernel's 4.2 (H200, session 10), which would halve every bound."""
    src = torch.empty(2 * 2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return 2 * src.numel() / cuda_time(lambda: dst.copy_(src), warmup=3, repeats=20)


def make_inputs(batch: int, length: int, dim: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator(device="cuda").manual_seed(seed)

    def randn(*shape: int, dtype: torch.dtype = torch.bfloat16, scale: float = 1.0) -> torch.Tensor:
        return (scale * torch.randn(*shape, generator=g, device="cuda")).to(dtype)

    return dict(u=randn(batch, dim, length), delta=randn(batch, dim, length, scale=0.5), z=randn(batch, dim, length),
                B=randn(batch, STATE, length), C=randn(batch, STATE, length), dout=randn(batch, dim, length),
                A=-torch.rand(dim, STATE, generator=g, device="cuda") - 0.1, D=randn(dim, dtype=torch.float32),
                bias=randn(dim, dtype=torch.float32, scale=0.5) - 2.0,
                x=randn(batch, dim, length), w=randn(dim, 4, dtype=torch.float32, scale=0.5),
                wb=randn(dim, dtype=torch.float32))


def scan_bytes(batch: int, length: int, dim: int) -> tuple[int, int]:
    seq, bc = batch * length * dim * 2, batch * length * STATE * 2
    return 4 * seq + 2 * bc, 7 * seq + 4 * bc  # fwd: u, delta, z in, out; bwd: + dout in, du, ddelta, dz, dB, dC out


def time_gluon(sets: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    ops = torch.ops.dimsum
    states = [ops.gluon_scan_fwd(*(s[k] for k in SCAN_ARGS))[1] for s in sets]

    def fwd(i: int) -> Any:
        return ops.gluon_scan_fwd(*(sets[i][k] for k in SCAN_ARGS))

    def bwd(i: int) -> Any:
        return ops.gluon_scan_bwd(*(sets[i][k] for k in SCAN_ARGS), states[i], sets[i]["dout"])

    return {"scan_fwd_ms": cuda_ms(fwd, len(sets)), "scan_bwd_ms": cuda_ms(bwd, len(sets))}


def time_triton(sets: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    ops = torch.ops.dimsum

    def fwd(i: int) -> Any:
        return ops.triton_scan_fwd(*(sets[i][k] for k in SCAN_ARGS))

    def bwd(i: int) -> Any:
        return ops.triton_scan_bwd(*(sets[i][k] for k in SCAN_ARGS), sets[i]["dout"])

    def conv_fwd(i: int) -> Any:
        return ops.triton_conv_silu_fwd(sets[i]["x"], sets[i]["w"], sets[i]["wb"])

    def conv_bwd(i: int) -> Any:
        return ops.triton_conv_silu_bwd(sets[i]["x"], sets[i]["w"], sets[i]["wb"], sets[i]["dout"])

    n = len(sets)
    return {"scan_fwd_ms": cuda_ms(fwd, n), "scan_bwd_ms": cuda_ms(bwd, n),
            "conv_fwd_ms": cuda_ms(conv_fwd, n), "conv_bwd_ms": cuda_ms(conv_bwd, n)}


def time_cudnn_conv(sets: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """PyTorch's depthwise conv1d (cuDNN) + SiLU on the same (N, d, L) input, for comparison."""
    import torch.nn.functional as F

    xs = [s["x"].detach().clone().requires_grad_(True) for s in sets]
    ws = [s["w"].to(torch.bfloat16)[:, None, :].requires_grad_(True) for s in sets]

    def conv_fwd(i: int) -> Any:
        return F.silu(F.conv1d(xs[i], ws[i], sets[i]["wb"].to(torch.bfloat16), padding=3, groups=ws[i].shape[0])
                      [..., : xs[i].shape[-1]])

    def conv_fwd_bwd(i: int) -> Any:
        conv_fwd(i).backward(sets[i]["dout"])

    fwd = cuda_ms(conv_fwd, len(sets))
    return {"conv_fwd_ms": fwd, "conv_bwd_ms": cuda_ms(conv_fwd_bwd, len(sets)) - fwd}


def time_mamba_ssm(sets: list[dict[str, torch.Tensor]]) -> dict[str, float] | None:
    try:
        import selective_scan_cuda
    except ImportError:
        return None
    cf = [{**s, "B": s["B"].unsqueeze(1), "C": s["C"].unsqueeze(1)} for s in sets]  # one group
    saved = [selective_scan_cuda.fwd(s["u"], s["delta"], s["A"], s["B"], s["C"], s["D"], s["z"], s["bias"], True)
             for s in cf]

    def fwd(i: int) -> Any:
        s = cf[i]
        return selective_scan_cuda.fwd(s["u"], s["delta"], s["A"], s["B"], s["C"], s["D"], s["z"], s["bias"], True)

    def bwd(i: int) -> Any:
        s, (out, states, _) = cf[i], saved[i]
        return selective_scan_cuda.bwd(s["u"], s["delta"], s["A"], s["B"], s["C"], s["D"], s["z"], s["bias"],
                                       s["dout"], states, out, None, True, False)

    result = {"scan_fwd_ms": cuda_ms(fwd, len(cf)), "scan_bwd_ms": cuda_ms(bwd, len(cf))}
    try:
        from causal_conv1d import causal_conv1d_fn
    except ImportError:
        return result
    xs = [s["x"].detach().clone().requires_grad_(True) for s in sets]
    ws = [s["w"].detach().clone().requires_grad_(True) for s in sets]

    def conv_fwd(i: int) -> Any:
        return causal_conv1d_fn(xs[i], ws[i], sets[i]["wb"], activation="silu")

    def conv_fwd_bwd(i: int) -> Any:
        conv_fwd(i).backward(sets[i]["dout"])

    result["conv_fwd_ms"] = cuda_ms(conv_fwd, len(sets))
    result["conv_bwd_ms"] = cuda_ms(conv_fwd_bwd, len(sets)) - result["conv_fwd_ms"]
    return result


def check_against_reference(s: dict[str, torch.Tensor]) -> dict[str, float]:
    """rel. L2 of the default scan's forward and gradients against the float64 reference, on a slice of
    one set."""
    from dimsum_core.ops.selective_scan import selective_scan_reference
    from dimsum_core.ops.triton_ops import selective_scan_triton

    sl = {k: (v[:2] if v.dim() == 3 else v) for k, v in s.items()}
    ins = [sl[k].detach().clone().requires_grad_(True) for k in SCAN_ARGS]
    out = selective_scan_triton(*ins)
    grads = torch.autograd.grad(out, ins, sl["dout"])
    ref_ins = [t.detach().double().requires_grad_(True) for t in ins]
    ref = selective_scan_reference(*ref_ins, delta_softplus=True)
    ref_grads = torch.autograd.grad(ref, ref_ins, sl["dout"].double())

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a.double() - b).norm() / b.norm()).item()

    return {"out": rel(out, ref), **{f"d{k}": rel(g, r) for k, g, r in zip(SCAN_ARGS, grads, ref_grads, strict=True)}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/bench/scan.json", help="JSON result file")
    parser.add_argument("--sweep", action="store_true", help="also time the scans' and the conv's tile configurations")
    parser.add_argument("--sets", type=int, default=3, help="input sets to rotate among")
    parser.add_argument("--eager-timing", action="store_true",
                        help="time the calls as Python issues them (host dispatch included) instead of CUDA-graph "
                             "replays of them (the kernels' device time)")
    args = parser.parse_args(argv)
    global GRAPHED
    GRAPHED = not args.eager_timing
    if not torch.cuda.is_available():
        sys.exit("benchmarks/scan.py needs a CUDA GPU")
    from dimsum_core.ops import triton_ops

    bandwidth = copy_bandwidth()
    result: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                              "copy_bandwidth_tb_s": bandwidth / 1e12, "scan_kernels": triton_ops.scan_kernels(),
                              "timing": "CUDA-graph replays" if GRAPHED else "eager calls",
                              "configs": {"fwd": triton_ops.SCAN_FWD, "bwd": triton_ops.SCAN_BWD,
                                          "gluon": triton_ops.GLUON_SCAN, "conv": triton_ops.CONV}, "shapes": {}}
    for name, (batch, length, dim, scans) in SHAPES.items():
        sets = [make_inputs(batch, length, dim, seed) for seed in range(args.sets)]
        fwd_bytes, bwd_bytes = scan_bytes(batch, length, dim)
        entry: dict[str, Any] = {
            "batch": batch, "length": length, "d_inner": dim, "d_state": STATE, "scans_per_step": scans,
            "bound_fwd_ms": fwd_bytes / bandwidth * 1e3, "bound_bwd_ms": bwd_bytes / bandwidth * 1e3,
            "gluon": time_gluon(sets) if triton_ops.scan_kernels() == "gluon" else None,
            "triton": time_triton(sets), "mamba_ssm": time_mamba_ssm(sets), "cudnn_conv": time_cudnn_conv(sets),
        }
        if entry["gluon"] is not None:
            entry["gluon_both_branches"] = time_both_branches(batch, length, dim, args.sets)
        if name.startswith("L/2 256"):
            entry["rel_l2_vs_float64"] = check_against_reference(sets[0])
        if args.sweep:
            entry["sweep"] = sweep(triton_ops, sets)
        result["shapes"][name] = entry
        print(name, json.dumps(entry), flush=True)
        del sets
        torch.cuda.empty_cache()
    result["eager_fallbacks"] = EAGER_FALLBACKS
    print_table(result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return result


def time_both_branches(batch: int, length: int, dim: int, n_sets: int) -> dict[str, float]:
    """A DiM block's two scans (their own inputs and parameters) as one launch: the ops a compiled training step
    runs (``gluon_scan_both_fwd`` / ``_bwd``), one call a block against two."""
    ops = torch.ops.dimsum
    pairs = [(make_inputs(batch, length, dim, 100 + seed), make_inputs(batch, length, dim, 200 + seed))
             for seed in range(n_sets)]
    for first, second in pairs:  # training gives dout channels-last
        for s in (first, second):
            s["dout"] = s["dout"].transpose(1, 2).contiguous().transpose(1, 2)

    def inputs(i: int) -> list[torch.Tensor]:
        return [pairs[i][j][k] for j in (0, 1) for k in SCAN_ARGS]

    states = [ops.gluon_scan_both_fwd(*inputs(i))[2] for i in range(n_sets)]

    def fwd(i: int) -> Any:
        return ops.gluon_scan_both_fwd(*inputs(i))

    def bwd(i: int) -> Any:
        return ops.gluon_scan_both_bwd(*inputs(i), states[i], pairs[i][0]["dout"], pairs[i][1]["dout"])

    return {"scan_fwd_ms": cuda_ms(fwd, n_sets), "scan_bwd_ms": cuda_ms(bwd, n_sets)}


def sweep(triton_ops: Any, sets: list[dict[str, torch.Tensor]]) -> list[dict[str, Any]]:
    """Forward and backward time of each Triton scan (T, BD, warps) in SWEEP, Gluon scan (T, warps) in
    SWEEP_GLUON and conv (rows, channels, warps) in SWEEP_CONV; the defaults are restored after."""
    defaults = triton_ops.SCAN_FWD, triton_ops.SCAN_BWD, triton_ops.CONV, triton_ops.GLUON_SCAN
    gluon = SWEEP_GLUON if triton_ops.scan_kernels() == "gluon" else []
    rows = []
    for kind, configs in (("scan", SWEEP), ("gluon", gluon), ("conv", SWEEP_CONV)):
        for config in configs:
            if kind == "scan":
                triton_ops.SCAN_FWD = triton_ops.SCAN_BWD = config
            elif kind == "gluon":
                triton_ops.GLUON_SCAN = config
            else:
                triton_ops.CONV = config
            try:
                t = time_gluon(sets) if kind == "gluon" else time_triton(sets)
                part = "conv" if kind == "conv" else "scan"
                rows.append({"kind": kind, "config": config, "fwd_ms": t[f"{part}_fwd_ms"], "bwd_ms": t[f"{part}_bwd_ms"]})
            except Exception as exc:  # a config the compiler cannot fit (registers, shared memory)
                rows.append({"kind": kind, "config": config, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
            print("sweep", rows[-1], flush=True)
        triton_ops.SCAN_FWD, triton_ops.SCAN_BWD, triton_ops.CONV, triton_ops.GLUON_SCAN = defaults
    return rows


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['gpu']}, torch {result['torch']}, copy bandwidth {result['copy_bandwidth_tb_s']:.2f} TB/s, "
          f"default scan kernels: {result['scan_kernels']}, timed as {result.get('timing', 'eager calls')}")
    for fallback in result.get("eager_fallbacks", []):
        print(f"timed eagerly (could not be captured in a CUDA graph): {fallback}")
    print(f"{'shape':<18}{'kernel':<9}{'bound':>8}{'gluon':>8}{'triton':>8}{'mamba-ssm':>11}{'best/bound':>12}"
          f"{'vs mamba-ssm':>14}")
    nan = float("nan")
    for name, e in result["shapes"].items():
        m, g = e["mamba_ssm"] or {}, e["gluon"] or {}
        for part in ("scan_fwd", "scan_bwd", "conv_fwd", "conv_bwd"):
            tri, glu, ref = e["triton"][f"{part}_ms"], g.get(f"{part}_ms"), m.get(f"{part}_ms")
            best = min(tri, glu or tri)
            bound = e.get(f"bound_{part[5:]}_ms") if part.startswith("scan") else None
            print(f"{name:<18}{part.replace('_', ' '):<9}{bound or nan:8.3f}{glu or nan:8.3f}{tri:8.3f}{ref or nan:11.3f}"
                  f"{best / bound if bound else nan:12.1f}{ref / best if ref else nan:14.1f}")
        # training runs the Gluon pair where it runs (its backward needs its forward's states)
        per_step = {kind: e["scans_per_step"] * sum({**e["triton"], **scans}.values())
                    for kind, scans in (("gluon", g), ("triton", {})) if kind == "triton" or g}
        ref = e["scans_per_step"] * sum(m.values()) if len(m) == 4 else nan
        print(f"{name:<18}{e['scans_per_step']} scans + convs of a training step, fwd + bwd, ms: "
              + ", ".join(f"{v:.2f} {k}" for k, v in per_step.items()) + f", {ref:.2f} mamba-ssm + causal-conv1d")
        if e.get("gluon_both_branches"):
            two, one = g, e["gluon_both_branches"]
            print(f"{name:<18}both branches, Gluon fwd / bwd ms: two calls {2 * two['scan_fwd_ms']:.3f} / "
                  f"{2 * two['scan_bwd_ms']:.3f}, one launch for both {one['scan_fwd_ms']:.3f} / "
                  f"{one['scan_bwd_ms']:.3f}")


if __name__ == "__main__":
    main()
