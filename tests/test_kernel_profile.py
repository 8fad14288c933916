"""`kernel_profile` (dimsum_core.gpu_benchmark; `benchmarks/small_models.py --profile`): per-call kernel
counts and times from torch.profiler. On the CPU the "kernels" are aten ops, which exercises the same
grouping and per-call arithmetic as the GPU's kernels."""

from __future__ import annotations

import inspect

import torch

from dimsum_core.gpu_benchmark import kernel_profile


def test_profile_counts_each_calls_kernels_and_ranks_them_by_time():
    a, b = torch.randn(256, 256), torch.randn(256, 256)

    def step() -> None:
        for _ in range(3):
            torch.mm(a, b)
        torch.add(a, b)

    prof = kernel_profile(step, torch.device("cpu"), steps=4, top=50)
    by_name = {k["name"]: k for k in prof["top"]}
    assert by_name["aten::mm"]["calls"] == 3 and by_name["aten::add"]["calls"] == 1
    assert prof["kernels_per_call"] >= 4
    times = [k["us"] for k in prof["top"]]
    assert times == sorted(times, reverse=True) and all(t > 0 for t in times)
    # every op with time made the list, so the shares add up to the whole
    assert abs(sum(k["share"] for k in prof["top"]) - 1) < 1e-6
    assert abs(sum(times) - prof["device_us_per_call"]) < 1e-6 * prof["device_us_per_call"]
    assert by_name["aten::mm"]["us"] > by_name["aten::add"]["us"]  # 3 matmuls outweigh one add


def test_user_annotations_are_not_counted_as_kernels():
    """On the GPU the optimizer's profiler range shows up as a device event spanning its kernels; counting it
    would count those kernels twice."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    from dimsum_core.gpu_benchmark import summarize_kernels

    def event(key: str, us: float, annotation: bool) -> SimpleNamespace:
        return SimpleNamespace(key=key, count=2, device_type=DeviceType.CUDA, self_device_time_total=us,
                               is_user_annotation=annotation)

    averages = [event("Optimizer.step#AdamW.step", 300.0, True), event("adam_kernel", 200.0, False),
                event("gemm", 600.0, False)]
    prof = summarize_kernels(averages, steps=2, top=10, cuda=True)
    assert [k["name"] for k in prof["top"]] == ["gemm", "adam_kernel"]
    assert prof["device_us_per_call"] == 400.0 and prof["kernels_per_call"] == 2.0


def test_copies_are_attributed_to_the_function_that_asked_for_them_or_to_the_backward_node():
    from dimsum_core.nn.layers import unpatchify

    x = torch.randn(64, 48, requires_grad=True)

    def step() -> None:
        # a cast from this file (outside dimsum), and its backward casting the gradient back (as autocast's)
        x.double().sum().backward()

    sources = {k["source"]: k["calls"] for k in kernel_profile(step, torch.device("cpu"), steps=2, top=10)["copies"]}
    assert sources == {"(outside dimsum)": 1, "backward of ToCopyBackward0": 1}
    # inside dimsum_core a copy is named by its function (file and def line): unpatchify's strided reshape
    tokens = torch.randn(2, 16, 2 * 2 * 3)
    prof = kernel_profile(lambda: unpatchify(tokens, 2, 3), torch.device("cpu"), steps=3, top=10)
    line = inspect.getsourcelines(unpatchify)[1]
    assert [(k["source"], k["calls"]) for k in prof["copies"]] == [(f"dimsum_core/nn/layers.py({line}): unpatchify", 1)]
    assert prof["copies"][0]["us"] > 0
