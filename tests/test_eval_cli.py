"""``dimsum eval`` end to end on the CPU with the ``random-conv`` stand-in extractor plugin."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import tiny_velocity_models as tiny
from click.testing import CliRunner
from PIL import Image

from dimsum_core.checkpoint import EMA_WEIGHTS
from dimsum_core.cli.main import cli

EXTRACTOR = ["--extractor", "random-conv", "--extractor-opt", "dim=16"]
FAST = ["--sampler", "euler", "--steps", "6", "--device", "cpu", "--batch-size", "32"]


@pytest.fixture(scope="module")
def conv_ckpt(tmp_path_factory):
    tiny.register()
    return tiny.write_checkpoint(tmp_path_factory.mktemp("conv") / "ckpt", tiny.train_tiny_conv())


@pytest.fixture(scope="module")
def ref_folder(tmp_path_factory):
    """Training-like toy images as the reference set."""
    folder = tmp_path_factory.mktemp("ref")
    images, _ = tiny.toy_images(64, seed=9)
    for i, image in enumerate(((images + 1) * 127.5).round().clamp(0, 255).byte()):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    return folder


def invoke(*args):
    tiny.register()
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_eval_a_checkpoint_writes_a_complete_result(conv_ckpt, ref_folder, tmp_path):
    out = tmp_path / "result.json"
    result = invoke("eval", conv_ckpt, "--ref", ref_folder, "-n", 48, "--cfg", 1.5, *FAST, *EXTRACTOR,
                    "--cache-dir", tmp_path / "cache", "--kid-subset-size", 40, "--out", out)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    metrics = record["metrics"]
    assert set(metrics) == {"fid", "kid_mean", "kid_std", "is_mean", "is_std", "precision", "recall"}
    assert all(np.isfinite(v) for v in metrics.values())
    assert record["checkpoint"]["weights_file"] == EMA_WEIGHTS and len(record["checkpoint"]["sha256"]) == 64
    assert record["sampling"]["sampler"] == {"name": "euler", "steps": 6}
    assert record["sampling"]["mean_nfe"] == 6 and record["sampling"]["guidance_scale"] == 1.5
    assert record["sampling"]["precision"] == "fp32"  # --precision tf32 (the default) is float32 on a CPU
    assert "sample 48/48 (100%)" in result.output  # progress as a plain line when not on a terminal
    # the console table names the extractor, as the JSON does, and does not pass the score off as a FID
    assert "metrics, extractor random-conv" in result.output and "not a FID" in result.output
    assert record["samples"]["count"] == 48
    assert record["reference"]["count"] == 64 and len(record["reference"]["stats_sha256"]) == 64
    assert record["reference"]["from_cache"] is False
    assert record["extractor"] == {"name": "random-conv", "dim": 16}
    assert record["versions"]["torch"] and "not interchangeable" in record["note"]

    again = invoke("eval", conv_ckpt, "--ref", ref_folder, "-n", 48, "--cfg", 1.5, *FAST, *EXTRACTOR,
                   "--cache-dir", tmp_path / "cache", "--kid-subset-size", 40, "--metrics", "fid")
    assert again.exit_code == 0
    repeat = json.loads(again.stdout)
    assert repeat["reference"]["from_cache"] is True
    assert repeat["reference"]["stats_sha256"] == record["reference"]["stats_sha256"]
    assert repeat["metrics"] == {"fid": pytest.approx(metrics["fid"], rel=1e-9)}


def test_a_trained_checkpoint_beats_noise_on_the_stand_in_fid(conv_ckpt, ref_folder, tmp_path):
    """Scoring existing samples: the model's samples are closer to the reference than pure noise."""
    assert invoke("sample", conv_ckpt, "-n", 48, "--out", tmp_path / "s.npz", *FAST).exit_code == 0
    noise = np.random.default_rng(0).integers(0, 256, size=(48, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "noise.npz", noise)
    fids = {}
    for name in ("s", "noise"):
        result = invoke("eval", "--samples", tmp_path / f"{name}.npz", "--ref", ref_folder, *EXTRACTOR,
                        "--metrics", "fid,pr", "--cache-dir", tmp_path / "cache", "--device", "cpu")
        assert result.exit_code == 0, result.output
        record = json.loads(result.stdout)
        assert record["samples"] == {"source": "path", "path": str(tmp_path / f"{name}.npz"), "count": 48}
        fids[name] = record["metrics"]["fid"]
    assert fids["s"] < 0.7 * fids["noise"]


def test_eval_user_errors(conv_ckpt, ref_folder, tmp_path):
    result = invoke("eval", "--ref", ref_folder, *EXTRACTOR)
    assert result.exit_code == 2 and "either CHECKPOINT" in result.output
    result = invoke("eval", conv_ckpt, "--ref", tmp_path / "missing", *EXTRACTOR)
    assert result.exit_code == 2 and "no such image folder" in result.output
    result = invoke("eval", conv_ckpt, "--ref", ref_folder, "-n", 4, "--preset", "fid10k", *EXTRACTOR)
    assert result.exit_code == 2 and "not both" in result.output
    result = invoke("eval", conv_ckpt, "--ref", ref_folder, "-n", 1, *EXTRACTOR)
    assert result.exit_code == 2 and "1 is not in the range x>=2" in result.output and "sampling" not in result.output
    result = invoke("eval", conv_ckpt, "--ref", ref_folder, "--metrics", "fid,lpips", *EXTRACTOR)
    assert result.exit_code == 2 and "lpips" in result.output
    (tmp_path / "r.json").write_text("{}")
    result = invoke("eval", conv_ckpt, "--ref", ref_folder, *EXTRACTOR, "--out", tmp_path / "r.json")
    assert result.exit_code == 2 and "--overwrite" in result.output


def test_default_extractor_without_torch_fidelity_says_so_first(conv_ckpt, ref_folder, tmp_path, monkeypatch):
    """A CPU install has no torch-fidelity: say that (not "download the weights"), before sampling."""
    monkeypatch.setenv("DIMSUM_CACHE", str(tmp_path))
    monkeypatch.delenv("DIMSUM_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import fails, as on a CPU install
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", None)
    result = invoke("eval", conv_ckpt, "--ref", ref_folder, "-n", 8, *FAST)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "needs torch-fidelity" in result.output and "--extractor random-conv" in result.output
    assert "sample" not in result.output.split("error:")[0]  # nothing was sampled first


def test_missing_inception_weights_is_a_one_line_error(conv_ckpt, ref_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("DIMSUM_CACHE", str(tmp_path))
    monkeypatch.delenv("DIMSUM_INCEPTION_WEIGHTS", raising=False)
    fidelity = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    fidelity.FeatureExtractorInceptionV3 = object
    monkeypatch.setitem(sys.modules, "torch_fidelity", types.ModuleType("torch_fidelity"))
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", fidelity)
    result = invoke("eval", "--samples", ref_folder, "--ref", ref_folder, "--device", "cpu")
    assert result.exit_code == 2
    assert "weights-inception-2015-12-05-6726825d.pth" in result.output
    assert result.output.count("\n") == 1
