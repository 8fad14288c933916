"""Training throughput of the study's small models (issue 14: "small models that are not launch-bound").

    python benchmarks/small_models.py --out benchmarks/results/small_models_h200.json
    python benchmarks/small_models.py --modes eager,graphed --profile 25   # where each step's time goes, and its copies
    python benchmarks/small_models.py --arms dit,dimsum --set data.resolution=16 --set model.input_size=16 \\
        --set model.hidden_size=128 --set model.depth=4 --set dit:model.num_heads=4

Each arm is built from its study recipe (``recipes/study/<arm>.yaml`` with the ``--set`` overrides, the
same ``ARM:key=value`` scoping as ``benchmarks/study.py``) and trained through the study's step
(:class:`~dimsum_core.train.step.TrainStep`, with its EMA) on a fixed batch, eager and replayed from CUDA
graphs (``train.cuda_graph``), optionally compiled too. One process, one GPU, CUDA-event medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from convergence.arms import load_arm, parse_arms
from dimsum_core import create_model
from dimsum_core.config.nodes import build
from dimsum_core.gpu_benchmark import cuda_time, kernel_profile
from dimsum_core.nn.precision import precision_scope
from dimsum_core.train.step import TrainStep

MODES = {"eager": (False, False), "graphed": (False, True), "compiled": (True, False),
         "compiled+graphed": (True, True)}


def measure(arm_name: str, overrides: list[str], mode: str, repeats: int, profile: int) -> dict[str, Any]:
    arm = load_arm(arm_name, overrides)
    compiled, graphed = MODES[mode]
    cfg = dataclasses.replace(arm.train, cuda_graph=graphed)
    device = torch.device("cuda")
    with precision_scope(cfg.precision, training=True):
        torch.manual_seed(0)
        model = create_model(arm.model).to(device).train()
        step = TrainStep(model, build("objective", arm.objective), cfg, device)
        if compiled:
            model.compile_regions()
        batch, res = cfg.global_batch_size, model.input_size
        x1 = torch.randn(batch, model.in_channels, res, res, device=device)
        y = torch.randint(0, model.num_classes, (batch,), device=device)
        generator = torch.Generator(device).manual_seed(0)
        seconds = cuda_time(lambda: step(x1, y, generator), warmup=5, repeats=repeats, inner=10)
        # kernels are named only outside CUDA graphs, so a graphed mode's profile is its eager twin's
        kernels = kernel_profile(lambda: step(x1, y, generator), device, top=profile) \
            if profile and not graphed else None
    return {"arm": arm_name, "mode": mode, "batch": batch, "resolution": res,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "step_ms": seconds * 1e3, "img_per_s": batch / seconds, "profile": kernels}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arms", default="dit,dimsum,mamba-sweep4")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--modes", default="eager,graphed", help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile each non-graphed mode's step: kernels, device time, the N slowest kernels "
                        "and the N costliest sources of copies")
    p.add_argument("--out", default="runs/bench/small_models.json", help="JSON result file")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("benchmarks/small_models.py needs a CUDA GPU (this machine has none)")
    modes = [m.strip() for m in args.modes.split(",")]
    if unknown := [m for m in modes if m not in MODES]:
        sys.exit(f"unknown mode '{unknown[0]}'; modes: {', '.join(MODES)}")
    rows = [measure(arm, args.overrides, mode, args.repeats, args.profile)
            for arm in parse_arms(args.arms) for mode in modes]
    print(f"\n{torch.cuda.get_device_name(0)}, torch {torch.__version__}; overrides: {' '.join(args.overrides) or 'none'}")
    print(f"{'arm':<16}{'mode':<18}{'px':>4}{'batch':>7}{'params M':>10}{'step ms':>10}{'img/s':>10}")
    for r in rows:
        print(f"{r['arm']:<16}{r['mode']:<18}{r['resolution']:>4}{r['batch']:>7}{r['params_m']:>10.2f}"
              f"{r['step_ms']:>10.2f}{r['img_per_s']:>10.0f}")
    for r in (r for r in rows if r["profile"]):
        prof = r["profile"]
        print(f"\n{r['arm']} {r['mode']}: {prof['kernels_per_call']:.0f} kernels a step, "
              f"{prof['device_us_per_call'] / 1e3:.2f} ms of device time in a {r['step_ms']:.2f} ms step")
        for k in prof["top"]:
            print(f"  {k['us']:9.1f} us {k['share']:6.1%} {k['calls']:6.0f}x  {k['name'][:100]}")
        print("  copies by source:")
        for k in prof["copies"]:
            print(f"  {k['us']:9.1f} us {k['calls']:6.0f}x  {k['source'][:100]}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                                          "overrides": args.overrides, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
