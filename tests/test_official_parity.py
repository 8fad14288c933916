"""Our DiMSUM reproduces the official network on the shared fixtures (official code's outputs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import fixtures_or_skip
from numerics import rel_l2
from safetensors.torch import load_file, save_file

from dimsum_core import load_model
from dimsum_core.cli.main import cli
from dimsum_core.errors import CheckpointError
from dimsum_core.official import infer_config, model_from_official, read_official


def official(fixtures: Path, name: str) -> tuple[dict, dict]:
    sd = {k: v.float() for k, v in load_file(str(fixtures / name / "state_dict.safetensors")).items()}
    return sd, load_file(str(fixtures / name / "io.safetensors"))


@pytest.mark.parametrize("name", ["A", "B"])
def test_float32_parity(official_fixtures: Path, name: str) -> None:
    sd, io = official(official_fixtures, name)
    model = model_from_official(read_official(official_fixtures / name / "state_dict.safetensors")["ema"])
    config = json.loads((official_fixtures / name / "config.json").read_text())
    assert sum(p.numel() for p in model.parameters()) == config["num_parameters"]
    model.eval()
    with torch.no_grad():
        out = model(io["x"], io["t"], io["y"])
    # tolerance from the fixture README: float32 vs the float64 reference, rel. L2 <= 1e-5, max abs <= 1e-4
    assert rel_l2(out, io["output"]) < 1e-5
    assert (out - io["output"]).abs().max() < 1e-4


@pytest.mark.parametrize("name", ["A", "B"])
def test_float64_parity_and_block0_internals(official_fixtures: Path, name: str) -> None:
    sd, io = official(official_fixtures, name)
    model = model_from_official(read_official(official_fixtures / name / "state_dict.safetensors")["ema"])
    model = model.double().eval()
    x, t, y = io["x"].double(), io["t"].double(), io["y"]
    with torch.no_grad():
        out = model(x, t, y)
        # exact ±0.5 Haar taps vs the official float32 ±0.49999997: README says max abs <= 1e-5
        assert (out - io["output_f64"]).abs().max() < 1e-5
        c = model.t_embedder(t) + model.y_embedder(y, 2, x.device)
        assert (c - io["c"].double()).abs().max() < 1e-6
        blk = model.blocks[0]
        h = blk.norm(model.x_embedder(x) + model.pos_embed)
        x1, x2 = h.chunk(2, dim=-1)
        y1, y2 = blk.spatial_mamba(x1, c), blk.freq_mamba(x2, c)
        assert (y1 - io["blk0.spatial_out"]).abs().max() < 1e-5
        assert (y2 - io["blk0.wavelet_out"]).abs().max() < 1e-5
        assert (blk.proj(y1, y2) - io["blk0.fusion_out"]).abs().max() < 1e-5


def test_conversion_round_trip_through_the_cli(official_fixtures: Path, tmp_path: Path) -> None:
    sd, io = official(official_fixtures, "B")
    noisy = {k: v + 0.01 for k, v in sd.items()}  # 'model' entry differs from 'ema'
    torch.save({"model": noisy, "ema": sd, "args": {"lr": 1e-4}}, tmp_path / "official.pt")
    out = tmp_path / "ckpt"
    result = CliRunner().invoke(cli, ["convert-official", str(tmp_path / "official.pt"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "10 classes" in result.output
    model = load_model(out)  # EMA weights by default
    with torch.no_grad():
        assert rel_l2(model(io["x"], io["t"], io["y"]), io["output"]) < 1e-5
    raw = load_model(out, ema=False)
    assert torch.allclose(raw.pos_embed, model.pos_embed + 0.01)
    # a bare state dict and a safetensors file convert too
    torch.save(sd, tmp_path / "pytorch_model.bin")
    assert CliRunner().invoke(cli, ["convert-official", str(tmp_path / "pytorch_model.bin"),
                                    "--out", str(tmp_path / "bare")]).exit_code == 0
    config = json.loads((tmp_path / "bare" / "model.json").read_text())
    assert (config["depth"], config["hidden_size"], config["num_classes"], config["input_size"]) == (8, 128, 10, 32)


def test_converter_errors_are_one_line(official_fixtures: Path, tmp_path: Path) -> None:
    sd, _ = official(official_fixtures, "A")
    runner = CliRunner()

    def fails(path: Path, message: str) -> None:
        result = runner.invoke(cli, ["convert-official", str(path), "--out", str(tmp_path / "never")])
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
        assert not (tmp_path / "never").exists()

    torch.save({"weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    fails(tmp_path / "other.pt", "not a DiMSUM checkpoint")
    torch.save(sd, tmp_path / "full.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "full.pt").read_bytes()[:100_000])
    fails(tmp_path / "cut.pt", "truncated or not a PyTorch checkpoint")
    bad = dict(sd)
    bad["blocks.0.mlp.w12.weight"] = torch.zeros(1000, 128)
    save_file(bad, str(tmp_path / "misfit.safetensors"))
    fails(tmp_path / "misfit.safetensors", "blocks.0.mlp.w12.weight (1000, 128) vs model (1024, 128)")
    fails(tmp_path / "missing.pt", "no such file")
    with pytest.raises(CheckpointError, match="not a square grid"):
        infer_config({**sd, "pos_embed": torch.zeros(1, 250, 128)})


def test_without_the_fixtures_the_skip_says_they_are_optional(tmp_path: Path) -> None:
    with pytest.raises(pytest.skip.Exception, match="optional: the official-parity tests") as skipped:
        fixtures_or_skip(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(skipped.value) and "DIMSUM_FIXTURES" in str(skipped.value)
