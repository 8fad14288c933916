"""Where a training step's device time goes, kernel by kernel and by rough category, for model presets side
by side (issue 14: which work separates DiMSUM from DiT), and the kernels of a batch-1 forward.

    python benchmarks/profile_steps.py --out benchmarks/results/prof_compiled_steps_h200.json
    python benchmarks/profile_steps.py --models dimsum-S/2 dit-S/2 --latent 32 --batch 128 --no-compile

Each step is `dimsum bench`'s (:func:`~dimsum_core.gpu_benchmark.train_step_fn`: bf16, compiled by default as
``train.compile`` does) under the torch profiler (:func:`~dimsum_core.gpu_benchmark.kernel_profile`), with the
step's wall time beside its kernels' device time (the gap is the host: launches, Python). Kernels are named
only outside CUDA graphs, so a graphed step is profiled as its ungraphed twin. One process, one GPU.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import torch

from dimsum_core.gpu_benchmark import build_model, cuda_time, kernel_profile, train_step_fn
from dimsum_core.nn.precision import precision_scope

#: first match wins; inductor names a fused kernel after the ops it fuses, so a category is approximate
CATEGORIES = [("scan", r"scan_(fwd|bwd)_kernel"), ("conv", r"conv"),
              ("matrix products", r"gemm|nvjet|cutlass|xmma|cublas|matmul|bmm"),
              ("attention", r"flash|fmha|attention|sdpa"), ("reductions and norms", r"reduce|red_|sum|norm"),
              ("copies and layouts", r"copy|cat|transpose|index"), ("inductor fused", r"^triton_"),
              ("optimizer", r"multi_tensor|adam|foreach")]


def categorize(kernels: list[dict[str, Any]]) -> dict[str, float]:
    """Milliseconds per category of ``kernels`` (``kernel_profile``'s ``top``: name and µs a call), largest first."""
    totals: dict[str, float] = {}
    for k in kernels:
        cat = next((c for c, pattern in CATEGORIES if re.search(pattern, k["name"], re.I)), "other")
        totals[cat] = totals.get(cat, 0.0) + k["us"] / 1e3
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def profile_step(name: str, latent: int, batch: int, compile: bool, top: int) -> dict[str, Any]:
    torch._dynamo.reset()
    with precision_scope("bf16", training=True):
        model = build_model(name, latent).train()
        step = train_step_fn(model, batch, "bf16", compile=compile)
        for _ in range(3):  # compiles, then settles the allocator
            step()
        prof = kernel_profile(step, torch.device("cuda"), top=top)
        prof["wall_ms"] = 1e3 * cuda_time(step, warmup=2, repeats=10)
    prof["categories_ms"] = categorize(prof["top"])
    return prof


@torch.no_grad()
@precision_scope("tf32")
def profile_forward_b1(name: str, latent: int, top: int) -> dict[str, Any]:
    """The kernels of one batch-1 forward in TF32, as `dimsum bench` times it (uncompiled)."""
    model = build_model(name, latent).eval()
    x, t = torch.randn(1, model.in_channels, latent, latent, device="cuda"), torch.rand(1, device="cuda")
    y = torch.zeros(1, dtype=torch.long, device="cuda")
    return kernel_profile(lambda: model(x, t, y), torch.device("cuda"), top=top)


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["dimsum-L/2", "dit-L/2"])
    parser.add_argument("--latent", type=int, default=32, help="latent side (32: 256 px)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="profile the eager step")
    parser.add_argument("--top", type=int, default=60, help="kernels kept per step (the categories sum these)")
    parser.add_argument("--forward-b1", action="store_true", help="also the kernels of a batch-1 forward")
    parser.add_argument("--out", default="runs/bench/profile_steps.json", help="JSON result file")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = arguments()
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.exit(1, "benchmarks/profile_steps.py needs a CUDA GPU\n")
    result: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                              "latent": args.latent, "batch": args.batch, "compiled": args.compile, "steps": {}}
    for name in args.models:
        prof = profile_step(name, args.latent, args.batch, args.compile, args.top)
        result["steps"][name] = {**prof, "batch": args.batch}
        print(f"== {name}: {prof['kernels_per_call']:.0f} kernels, {prof['device_us_per_call'] / 1e3:.1f} ms device, "
              f"{prof['wall_ms']:.1f} ms wall", {c: round(v, 2) for c, v in prof["categories_ms"].items()}, flush=True)
        for k in prof["top"][:30]:
            print(f"  {k['us'] / 1e3:7.2f} ms {k['calls']:5.0f}x {k['share']:6.1%}  {k['name'][:110]}", flush=True)
        if args.forward_b1:
            result.setdefault("forward_b1_tf32", {})[name] = b1 = profile_forward_b1(name, args.latent, 25)
            print(f"== {name} batch-1 forward: {b1['kernels_per_call']:.0f} kernels, "
                  f"{b1['device_us_per_call'] / 1e3:.2f} ms device", flush=True)
        torch.cuda.empty_cache()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
