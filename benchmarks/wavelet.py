"""The Haar packet transform at DiMSUM-L/2's wavelet-branch shape: operator count and time.

Operators are counted at the dispatcher (each is one kernel launch on a GPU), for the forward and
inverse transforms and for their backward pass; time is the median of repeats of forward + inverse
(+ backward) on the chosen device. For scale, also the kernels of a whole DiMSUM-L/2 forward at batch 1
outside its Mamba mixers (the structure at width 64: the count does not depend on the width). Prints a
table and writes JSON.

    python benchmarks/wavelet.py --device cpu --out benchmarks/results/wavelet_cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dimsum_core.nn.wavelets import HaarPacket

#: metadata-only operators: no kernel runs for them
VIEWS = {"view", "_unsafe_view", "select", "unsqueeze", "squeeze", "slice", "split", "unbind", "transpose",
         "permute", "expand", "t", "alias", "detach", "as_strided", "reshape", "_reshape_alias"}


class OpCounter(TorchDispatchMode):
    """Counts kernel-launching operators; ``paused`` > 0 (inside a module being skipped) counts nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels = 0
        self.paused = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if not self.paused and func.__name__.split(".")[0] not in VIEWS:
            self.kernels += 1
        return func(*args, **(kwargs or {}))


def count(fn: Callable[[], object]) -> int:
    with OpCounter() as counter:
        fn()
    return counter.kernels


def model_kernels_outside_mixers(name: str = "dimsum-L/2") -> tuple[int, int]:
    """(kernels of a batch-1 forward outside the Mamba mixers, number of mixers); the mixers are left
    out because on a GPU they run mamba-ssm's fused kernels, not the CPU path counted here."""
    from dimsum_core import create_model
    from dimsum_core.nn.mixers import Mamba

    model = create_model(name, input_size=32, num_classes=1000, hidden_size=64, attn_heads=4,
                         mixer={"name": "mamba", "backend": "torch"}).eval()
    counter = OpCounter()
    mixers = [m for m in model.modules() if isinstance(m, Mamba)]
    for mixer in mixers:
        mixer.register_forward_pre_hook(lambda *_: setattr(counter, "paused", counter.paused + 1))
        mixer.register_forward_hook(lambda *_: setattr(counter, "paused", counter.paused - 1))
    x, t, y = torch.randn(1, 4, 32, 32), torch.rand(1), torch.tensor([3])
    with torch.no_grad(), counter:
        model(x, t, y)
    return counter.kernels, len(mixers)


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    times = []
    for i in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:  # two warm-up rounds
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(batch: int, channels: int, grid: int, levels: int, device: torch.device, repeats: int) -> dict:
    haar = HaarPacket(levels=levels).to(device)
    x = torch.randn(batch, channels, grid, grid, device=device)
    coeffs = haar(x)
    xg = x.clone().requires_grad_()

    def train() -> None:
        haar.inverse(haar(xg)).square().sum().backward()

    with torch.no_grad():
        fwd_ms = 1e3 * median_seconds(lambda: haar(x), device, repeats)
        inv_ms = 1e3 * median_seconds(lambda: haar.inverse(coeffs), device, repeats)
    return {
        "shape": [batch, channels, grid, grid], "levels": levels, "device": str(device),
        "kernels_forward": count(lambda: haar(x)), "kernels_inverse": count(lambda: haar.inverse(coeffs)),
        "kernels_forward_inverse_backward": count(train),
        "forward_ms": fwd_ms, "inverse_ms": inv_ms,
        "forward_inverse_backward_ms": 1e3 * median_seconds(train, device, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64, help="images (DiMSUM-L/2 training batch: 64)")
    parser.add_argument("--channels", type=int, default=512, help="wavelet-branch width (L/2: 512)")
    parser.add_argument("--grid", type=int, default=16, help="token grid side (256 px, patch 2: 16)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/wavelet.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    result = measure(args.batch, args.channels, args.grid, 2, device, args.repeats)
    result["dimsum_L2_b1_forward_kernels_outside_mixers"], mixers = model_kernels_outside_mixers()
    result["torch"] = torch.__version__
    result["threads"] = torch.get_num_threads()
    print(f"{'Haar packet, 2 levels':<24}{'kernels':>9}{'ms':>10}   shape {tuple(result['shape'])} on {device}")
    for name, kernels, ms in (("forward", "kernels_forward", "forward_ms"),
                              ("inverse", "kernels_inverse", "inverse_ms"),
                              ("fwd + inv + backward", "kernels_forward_inverse_backward",
                               "forward_inverse_backward_ms")):
        print(f"{name:<24}{result[kernels]:>9}{result[ms]:>10.2f}")
    print(f"dimsum-L/2 forward at batch 1: {result['dimsum_L2_b1_forward_kernels_outside_mixers']} kernels "
          f"outside its {mixers} Mamba mixers")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
