"""`dimsum bench`: what the command passes to the GPU benchmark, the image sizes it knows, and its one line on a
machine without a GPU (the measurements themselves run on the GPU machine: docs/benchmarks.md)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from dimsum_core import create_model
from dimsum_core.cli.main import cli
from dimsum_core.gpu_benchmark import IMAGE_SIZES


def test_sizes_and_batches_reach_the_benchmark(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr("dimsum_core.gpu_benchmark.run", lambda *args: calls.append(args))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["bench", "--models", "dimsum-S/2", "--models", "dit-S/2", "--sizes", "32",
                                      "--batch-32", "96", "--compile", "--cuda-graph", "--out", "x.json"])
    assert result.exit_code == 0, result.output
    models, out, repeats, batch_256, batch_512, sizes, compile_, backend, graphs, batch_32 = calls[0]
    assert (models, out, sizes, batch_32, compile_, graphs) == (["dimsum-S/2", "dit-S/2"], "x.json", (32,), 96, True, True)
    assert (batch_256, batch_512, backend) == (64, 16, "auto")


@pytest.mark.parametrize("px", sorted(IMAGE_SIZES))
def test_each_image_size_builds_the_model_input_it_names(px):
    """256 and 512 px are the VAE's latents (side / 8, 4 channels), 32 px is pixel space (3 channels)."""
    side, channels = IMAGE_SIZES[px]
    assert side == (px // 8 if channels == 4 else px)
    with torch.device("meta"):
        model = create_model("dit-S/2", input_size=side, in_channels=channels, num_classes=1000)
        out = model(torch.empty(2, channels, side, side), torch.empty(2), torch.zeros(2, dtype=torch.long))
    assert out.shape == (2, channels, side, side)


def test_an_unknown_size_is_one_line():
    result = CliRunner().invoke(cli, ["bench", "--sizes", "64"])
    assert result.exit_code != 0 and "'64' is not one of '256', '512', '32'" in result.output


@pytest.mark.parametrize("option", ["--repeats", "--batch-256", "--batch-512", "--batch-32"])
def test_counts_below_one_are_one_line(option):
    result = CliRunner().invoke(cli, ["bench", option, "0"])
    assert result.exit_code == 2 and f"Invalid value for '{option}': 0 is not in the range x>=1" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_without_a_gpu_the_benchmark_says_so_in_one_line():
    result = CliRunner().invoke(cli, ["bench", "--sizes", "32"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and lines == ["error: the GPU benchmark needs a CUDA GPU (this machine has none)"]


def test_a_name_it_cannot_build_or_a_result_it_would_replace_stops_it_before_any_timing(monkeypatch, tmp_path):
    """The benchmark runs for minutes and writes its JSON at the end: an unknown model (even the second) or an
    existing --out is one line before the first measurement, and the existing file is left as it was."""
    calls = []
    monkeypatch.setattr("dimsum_core.gpu_benchmark.run", lambda *args: calls.append(args))
    out = tmp_path / "gpu.json"
    result = CliRunner().invoke(cli, ["bench", "--models", "dit-S/2", "--models", "dimsum-Z/9", "--out", str(out)])
    assert result.exit_code == 2 and "unknown model 'dimsum-Z/9'" in result.output
    out.write_text("{}")
    result = CliRunner().invoke(cli, ["bench", "--models", "dit-S/2", "--out", str(out)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2 and lines == [f"error: {out}: already exists; choose another --out or pass --overwrite"]
    assert calls == [] and out.read_text() == "{}"
    result = CliRunner().invoke(cli, ["bench", "--models", "dit-S/2", "--out", str(out), "--overwrite"])
    assert result.exit_code == 0 and len(calls) == 1
