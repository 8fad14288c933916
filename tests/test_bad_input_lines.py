"""Bad input gets one line that names the problem and the fix: recipe values `dimsum validate` must catch
before a run hits them, YAML that would hang or crash the loader, crafted checkpoints, sampler and eval
options, odd image files and misbehaving plugin scans."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tiny_velocity_models as tiny
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file, save_file

from dimsum_core import checkpoint as ckpt
from dimsum_core.cli.main import cli
from dimsum_core.data.image_files import find_images, load_image
from dimsum_core.errors import DataError
from dimsum_core.interfaces.scan import ScanOrder
from dimsum_core.models import create_model
from dimsum_core.plugin import hookimpl
from dimsum_core.plugin.manager import get_manager
from dimsum_core.registry import Provenance


def invoke(*args: object, **kwargs):  # noqa: ANN201
    tiny.register()
    result = CliRunner().invoke(cli, [str(a) for a in args], **kwargs)
    assert "Traceback" not in result.output and not isinstance(result.exception, (AssertionError, TypeError))
    return result


def one_error_line(result) -> str:  # noqa: ANN001
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith(("error:", "Error:"))]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is about a machine without CUDA")
def test_validate_and_run_refuse_cuda_graphs_without_cuda(tmp_path):
    for command in ("validate", "run"):
        line = one_error_line(invoke(command, "quickstart", "train.cuda_graph=true", f"out_dir={tmp_path / 'run'}"))
        assert line.endswith("quickstart.yaml: train.cuda_graph needs a CUDA device (the run would train on cpu); "
                             "set train.cuda_graph=false"), line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, expected", [
    ("train.global_batch_size=-8", "train.global_batch_size: -8 is out of range; use a value >= 1"),
    ("train.global_batch_size=0", "train.global_batch_size: 0 is out of range; use a value >= 1"),
    ("log.every=0", "log.every: 0 is out of range; use a value >= 1"),
    ("train.lr=-1e-3", "train.lr: -0.001 is out of range; use a value >= 0"),
    ("train.lr=.nan", "train.lr: expected a finite number, got nan"),
    ("train.weight_decay=-1", "train.weight_decay: -1 is out of range; use a value >= 0"),
    ("train.betas=[0.9,1.0]", "train.betas[1]: 1.0 is out of range; use a value in [0, 1)"),
    ("train.betas=[0.9]", "train.betas: expected a list of 2 values, got [0.9]"),
    ("train.num_workers=500", "train.num_workers: 500 is out of range; use a value in [0, 64]"),
    ("seed=-1", "seed: -1 is out of range; use a value in [0, 4294967295]"),
    ("model.attn_heads=5", "model: attention width 96 is not divisible by 5 heads; use a head count"),
    ("model.patch_size=3", "model: input_size 16 is not divisible by patch_size 3; use a patch size"),
    ("model.attn_every=0", "model.attn_every: 0 is out of range; use a value >= 1"),
    ("model.hidden_size=0", "model.hidden_size: 0 is out of range; use a value >= 1"),
    ("model.depth=-1", "model.depth: -1 is out of range; use a value >= 1"),
    ("model.drop_path=.nan", "model.drop_path: expected a finite number, got nan"),
    ("model.fusion={name: cross-attention, num_heads: 0}", "model.fusion.num_heads: 0 is out of range"),
    ("model.input_size=24", "model: a 2-level wavelet needs a token grid divisible by 4, got 6 (input_size"),
    ("data.resolution=8", "takes 3x16x16 inputs but the data gives 3x8x8; set model.in_channels=3 model.input_size=8"),
    ("data.size=100", "data: 100 items are fewer than one global batch (train.global_batch_size=128)"),
    ("model.null_class=false", "train.label_dropout=0.1 needs a null class"),
    ("log.cfg_scale=.inf", "log.cfg_scale: expected a finite number, got inf"),
    ("log.sampler={name: heun, steps: 0}", "log.sampler: steps must be a positive integer, got 0"),
])
def test_validate_and_run_refuse_what_the_run_would_hit(tmp_path, override, expected):
    for command in ("validate", "run"):
        line = one_error_line(invoke(command, "quickstart", override, f"out_dir={tmp_path / 'run'}"))
        assert line.startswith("error: ") and expected in line, line
    assert not (tmp_path / "run").exists()


class NotAPermutation(ScanOrder):
    def order(self, height: int, width: int, layer: int) -> torch.Tensor:
        return torch.zeros(height * width, dtype=torch.long)


class OldSignature(ScanOrder):
    def order(self, height: int, width: int) -> torch.Tensor:  # type: ignore[override] - the plugin's bug
        return torch.arange(height * width)


@hookimpl
def dimsum_add_scans(registry):  # noqa: ANN001 - pluggy hook
    registry.add("not-a-permutation", NotAPermutation)
    registry.add("old-signature", OldSignature)


@pytest.mark.parametrize("scan, expected", [
    ("not-a-permutation", "returned an order that is not a permutation of the 16 tokens of a 4x4 grid"),
    ("old-signature", "order(height=4, width=4, layer=0) failed (TypeError: "),
])
def test_a_faulty_scan_plugin_fails_validate_naming_the_scan_and_its_plugin(scan, expected):
    manager = get_manager()
    if "old-signature" not in manager.registry("scan"):
        manager.register(sys.modules[__name__], Provenance("tests-faulty-scans", "tests", "0"))
    line = one_error_line(invoke("validate", "quickstart", f"model.spatial_scan={scan}"))
    assert f"model: scan '{scan}' (plugin 'tests-faulty-scans', tests 0)" in line and expected in line, line


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True))


@pytest.mark.parametrize("text, expected", [
    (LAUGHS.encode(), "not valid YAML (expands to more than 100000 values"),
    (b"job: train\na: &a [*a]\n", "not valid YAML (contains itself (a recursive alias))"),
    (b"job: train\nbase: recipe.yaml\n", "base: leads back to itself (recipe.yaml -> recipe.yaml)"),
    (b"a: " + b"[" * 3000 + b"]" * 3000 + b"\n", "not valid YAML (nests too deeply to read"),
    (b"a: " + b"[" * 80 + b"]" * 80 + b"\n", "not valid YAML (nests deeper than 64 levels)"),
    (b"job: train\nx: \xff\n", "not UTF-8 text (byte 14); save the recipe as UTF-8"),
    (b"job: train\nx: !!set {a, b}\n", "not valid YAML (holds a set (a YAML !!set"),
    (b"job: train\n? null\n: 1\n", "not valid YAML (has a key None; keys are names (strings))"),
    (b"job: train\nx: !!timestamp 2024-01-01\n", "not valid YAML (holds a date"),
])
def test_yaml_that_would_hang_or_crash_is_one_line(tmp_path, text, expected):
    (tmp_path / "recipe.yaml").write_bytes(text)
    result = invoke("validate", tmp_path / "recipe.yaml")
    line = one_error_line(result)
    assert expected in line, line


def test_a_plain_date_is_a_string():
    result = invoke("validate", "quickstart", "out_dir=2024-01-01")
    assert result.exit_code == 0, result.output


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    tiny.register()
    torch.manual_seed(0)
    return tiny.write_checkpoint(tmp_path / "ckpt", create_model("tiny-conv"))


SAMPLE = ["-n", "2", "--sampler", "euler", "--steps", "2", "--device", "cpu"]


def _nan(path: Path) -> None:
    weights = load_file(path / ckpt.EMA_WEIGHTS)
    next(iter(weights.values())).view(-1)[0] = float("nan")
    save_file(weights, path / ckpt.EMA_WEIGHTS)


def _ints(path: Path) -> None:
    save_file({k: v.to(torch.int32) for k, v in load_file(path / ckpt.EMA_WEIGHTS).items()}, path / ckpt.EMA_WEIGHTS)


def _model_json(path: Path, **change: object) -> None:
    config = json.loads((path / ckpt.MODEL_JSON).read_text())
    (path / ckpt.MODEL_JSON).write_text(json.dumps({**config, **change}))


@pytest.mark.parametrize("spoil, expected", [
    (_nan, "holds NaN or infinite values (the run had diverged when it was saved); use an earlier checkpoint"),
    (_ints, "holds torch.int32 values where the model has floats"),
    (lambda p: _model_json(p, width="wide"), "model.json: model.width: expected an integer, got 'wide'"),
    (lambda p: _model_json(p, width=200_000), "weights do not fit the model: "),
])
def test_sample_refuses_crafted_or_broken_checkpoints(checkpoint, tmp_path, spoil, expected, monkeypatch):
    spoil(checkpoint)
    allocated = []
    monkeypatch.setattr(torch.nn.Conv2d, "reset_parameters",
                        lambda self: allocated.append(0 if self.weight.is_meta else self.weight.numel()))
    line = one_error_line(invoke("sample", checkpoint, "--out", tmp_path / "x.png", *SAMPLE))
    assert expected in line, line
    assert not (tmp_path / "x.png").exists()
    assert sum(allocated) < 10**7  # the 200k-wide model was refused before any real allocation


@pytest.mark.parametrize("options, expected", [
    (["--sampler-opt", "foo=1"], "sampler.foo: unknown key; valid keys: steps"),
    # read as a recipe override reads it (one parser): text that is no YAML value stays text
    (["--sampler", "dopri5", "--sampler-opt", "atol=[1"], "sampler.atol: expected a finite number, got '[1'"),
    (["--sampler", "dopri5", "--sampler-opt", "atol=0", "--sampler-opt", "rtol=0"],
     "sampler.atol: 0 is out of range; use a value > 0"),
    (["--seed", "-1"], "Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295"),
    (["--cfg", "nan"], "Invalid value for '--cfg': 'nan' is not a finite number"),
    (["--cfg", "inf"], "Invalid value for '--cfg': 'inf' is not a finite number"),
])
def test_sampler_options_are_one_line(checkpoint, tmp_path, options, expected):
    args = ["-n", "2", "--device", "cpu"] if "--sampler" in options else SAMPLE
    line = one_error_line(invoke("sample", checkpoint, "--out", tmp_path / "x.png", *args, *options))
    assert expected in line, line


def test_eval_reference_problems_are_one_line(checkpoint, tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(refs / "a.png")
    base = ["eval", checkpoint, "--ref", refs, "--extractor", "random-conv", *SAMPLE, "-n", "4"]
    assert "refs: holds 1 image(s); scoring needs at least 2 (a covariance)" in one_error_line(invoke(*base))
    (refs / "b.png").write_bytes(b"not a png")
    assert "b.png: unreadable image (cannot identify image file" in one_error_line(invoke(*base))
    line = one_error_line(invoke(*base, "--kid-subset-size", "0"))
    assert "Invalid value for '--kid-subset-size': 0 is not in the range x>=2" in line
    assert "--ref-resize 0: use a side of 1 pixel or more" in one_error_line(invoke(*base, "--ref-resize", "0"))


def test_info_and_show_scan_options_are_one_line():
    assert "model.depth: expected an integer, got 'x'" in one_error_line(invoke("info", "dimsum-S/2", "depth=x"))
    line = one_error_line(invoke("show-scan", "sweep4", "--grid", "100000"))
    assert "Invalid value for '--grid': 100000 is not in the range 1<=x<=256" in line


def test_sixteen_bit_and_float_images_convert_by_bit_depth(tmp_path):
    gray16 = np.full((8, 8), 32768, dtype=np.uint16)  # mid-grey at 16 bits
    Image.fromarray(gray16).save(tmp_path / "grey16.png")
    Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), mode="F").save(tmp_path / "grey.tiff")
    for name in ("grey16.png", "grey.tiff"):
        x = load_image(tmp_path / name, 8)
        assert torch.allclose(x, torch.zeros_like(x), atol=0.01), (name, x.mean())  # mid-grey is 0 in [-1, 1]


def test_a_decompression_bomb_is_one_line(tmp_path, monkeypatch):
    Image.new("RGB", (64, 64)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64x64 is then over twice the limit
    with pytest.raises(DataError, match=r"bomb.png: too large to decode safely .*; shrink or remove it"):
        load_image(tmp_path / "bomb.png", 8)


def test_images_beside_class_folders_are_named_not_dropped_silently(tmp_path):
    for folder in ("cats", "dogs"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / folder / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "loose.png")
    with pytest.warns(UserWarning, match=r"left out 1 image\(s\) beside the class folders \(e.g. loose.png\)"):
        found = find_images(tmp_path)
    assert found.classes == ["cats", "dogs"] and len(found.files) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(find_images(tmp_path, labels="none").files) == 3


def test_a_broken_diffusers_install_is_one_line_and_doctor_says_so(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def broken(name, *args, **kwargs):  # noqa: ANN001, ANN202
        if name == "diffusers":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", broken)
    (tmp_path / "vae").mkdir()
    from dimsum_core.vae import load_vae

    with pytest.raises(DataError, match=r"diffusers is installed but does not import \(RuntimeError: operator "
                                        r"torchvision::nms does not exist\); repair the install"):
        load_vae(tmp_path / "vae")
    doctor = invoke("doctor", env={"COLUMNS": "400"})
    assert doctor.exit_code == 0
    row = [line for line in doctor.output.splitlines() if line.startswith("diffusers")]
    assert len(row) == 1 and "VAE unavailable: diffusers is installed but does not import" in row[0]


def test_a_model_that_does_not_compile_ends_the_run_in_one_line(tmp_path, monkeypatch):
    """train.compile is on by default on CUDA: a compiler failure (here a backend that raises, as a plugin's
    op that inductor cannot lower would) is one line naming the way out, and no checkpoint is written."""
    import torch._dynamo

    from dimsum_core.network import PatchFlowModel

    def refusing_backend(gm, example_inputs):  # noqa: ANN001, ANN202
        raise NotImplementedError("no lowering for plugin::op")

    def compile_regions(self, **options):  # noqa: ANN001, ANN003, ANN202
        for block in self.blocks:
            block.compile(backend=refusing_backend)

    monkeypatch.setattr(PatchFlowModel, "compile_regions", compile_regions)
    torch._dynamo.reset()
    line = one_error_line(invoke("run", "quickstart", "train.compile=true", "train.steps=2", "train.num_workers=0",
                                 f"out_dir={tmp_path / 'run'}"))
    torch._dynamo.reset()
    assert line.startswith("error: torch.compile failed (BackendCompilerFailed: NotImplementedError: no lowering "
                           "for plugin::op); "), line
    assert line.endswith("run without compiling: train.compile=false for `dimsum run`, no --compile for "
                         "`dimsum sample` and `dimsum bench`"), line
    assert not list((tmp_path / "run").glob("checkpoints/*"))
    from dimsum_core.errors import compile_problem

    assert compile_problem(RuntimeError("CUDA out of memory")) is None  # other errors go on as they are
