"""CPU speed of the pure-PyTorch selective scan (forward + backward), against a per-step loop.

Sizes are one DiM-S-like branch: batch 8, length 256, d_inner 384, d_state 16. Times are wall-clock,
median (and min) of ``--repeats`` runs after a warm-up, with ``torch.set_num_threads(--threads)``.
The target is a vectorised scan at most 0.1 s; a per-step loop with autograd is the baseline.

OpenMP workers wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless already set): on a shared machine,
libgomp's default spin-waiting makes every parallel op stall whenever another process holds a core
(2-thread medians of seconds instead of ~0.1 s at load 2-4). The policy used is in the JSON.

    python benchmarks/cpu_scan.py                      # table + runs/benchmarks/cpu_scan.json
    python benchmarks/cpu_scan.py --out benchmarks/results/cpu_scan.json   # replace the committed result
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp

import torch  # noqa: E402

from dimsum_core.nn.mixers import Mamba  # noqa: E402
from dimsum_core.ops.selective_scan import selective_scan, selective_scan_reference  # noqa: E402

BATCH, LENGTH, D_INNER, D_STATE = 8, 256, 384, 16
TARGET_S = 0.1
VECTORISED = "vectorised scan (chunked, float32, mixer layout)"
LOOP = "per-step loop (float32, autograd)"


def per_step_loop(u, delta, A, B, C, D, z, delta_bias):
    """The same math as the reference, float32, one autograd step per token."""
    delta = torch.nn.functional.softplus(delta + delta_bias[:, None])
    h = u.new_zeros(u.shape[0], A.shape[0], A.shape[1])
    ys = []
    for delta_t, u_t, B_t, C_t in zip(delta.unbind(-1), u.unbind(-1), B.unbind(-1), C.unbind(-1), strict=True):
        h = torch.exp(delta_t[..., None] * A) * h + (delta_t * u_t)[..., None] * B_t[:, None, :]
        ys.append(torch.bmm(h, C_t[..., None]).squeeze(-1))
    y = torch.stack(ys, dim=-1) + u * D[:, None]
    return y * torch.nn.functional.silu(z)


def scan_inputs(time_major: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """mamba-ssm's shapes (N, C, L); ``time_major``: stored as (N, L, C), as the Mamba mixer passes them
    (transposed views of its projections' outputs), else contiguous (N, C, L)."""
    g = torch.Generator().manual_seed(seed)
    n, length, d, s = BATCH, LENGTH, D_INNER, D_STATE

    def randn(c: int) -> torch.Tensor:
        if time_major:
            return torch.randn(n, length, c, generator=g).transpose(1, 2)
        return torch.randn(n, c, length, generator=g)

    dt = torch.exp(torch.rand(d, generator=g) * (torch.log(torch.tensor(0.1)) - torch.log(torch.tensor(1e-3)))
                   + torch.log(torch.tensor(1e-3)))
    inputs = {
        "u": randn(d),
        "delta": 0.5 * randn(d),
        "A": -torch.arange(1, s + 1, dtype=torch.float32).repeat(d, 1),
        "B": randn(s),
        "C": randn(s),
        "D": torch.ones(d),
        "z": randn(d),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),  # Mamba-1's dt init: softplus⁻¹ of [1e-3, 1e-1]
    }
    return {k: v.requires_grad_() for k, v in inputs.items()}


def time_it(fn: Callable[[], None], repeats: int, warmup: int = 2) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # the committed result is only replaced when asked for by name
    parser.add_argument("--out", type=Path, default=Path("runs/benchmarks/cpu_scan.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--skip-reference", action="store_true", help="skip the slow float64 reference")
    return parser


def main() -> None:
    args = arguments().parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    grad_out = torch.randn(BATCH, D_INNER, LENGTH)

    def backward_of(fn: Callable[..., torch.Tensor], inputs: dict[str, torch.Tensor], **kwargs
                    ) -> Callable[[], None]:
        def run() -> None:
            for t in inputs.values():
                t.grad = None
            fn(**inputs, **kwargs).backward(grad_out)
        return run

    mixer_layout, contiguous = scan_inputs(time_major=True), scan_inputs(time_major=False)
    cases: dict[str, Callable[[], None]] = {
        VECTORISED: backward_of(selective_scan, mixer_layout, delta_softplus=True),
        "vectorised scan, contiguous (N, C, L) inputs": backward_of(selective_scan, contiguous,
                                                                     delta_softplus=True),
        LOOP: backward_of(per_step_loop, contiguous),
    }
    if not args.skip_reference:
        cases["float64 reference (per-step loop)"] = backward_of(selective_scan_reference, contiguous,
                                                                 delta_softplus=True)
    mixer = Mamba(D_INNER // 2, backend="torch")
    x = torch.randn(BATCH, LENGTH, D_INNER // 2, requires_grad=True)
    cases["whole Mamba mixer, d_model 192 (torch backend)"] = lambda: mixer(x).sum().backward()

    results = {}
    for name, fn in cases.items():
        repeats = args.repeats if "reference" not in name else max(3, args.repeats // 5)
        results[name] = time_it(fn, repeats)

    print(f"forward + backward, batch {BATCH}, length {LENGTH}, d_inner {D_INNER}, d_state {D_STATE}, "
          f"{args.threads} threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"{'case':<52} {'median s':>10} {'min s':>10}")
    for name, r in results.items():
        print(f"{name:<52} {r['median_s']:>10.4f} {r['min_s']:>10.4f}")
    vectorised, loop = results[VECTORISED]["median_s"], results[LOOP]["median_s"]
    verdict = "meets" if vectorised <= TARGET_S else "misses"
    print(f"vectorised scan: {vectorised:.4f} s median, {loop / vectorised:.1f}x the per-step loop; "
          f"{verdict} the {TARGET_S} s target")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "sizes": {"batch": BATCH, "length": LENGTH, "d_inner": D_INNER, "d_state": D_STATE},
        "threads": args.threads, "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "torch": torch.__version__, "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg(),
        "target_s": TARGET_S, "meets_target": vectorised <= TARGET_S, "results": results,
    }, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
