"""``dimsum sample``: outputs, per-index determinism across batch sizes and ranks, latent decoding."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tiny_velocity_models as tiny
import torch
from click.testing import CliRunner
from PIL import Image

from dimsum_core.checkpoint import RECIPE
from dimsum_core.cli.main import cli
from dimsum_core.models import create_model
from dimsum_core.sampling.fixed_step import EulerSampler
from dimsum_core.sampling.generate import generate, merge_batches, rank_indices
from dimsum_core.sampling.outputs import grid_columns

FAST = ["--sampler", "euler", "--steps", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def conv_ckpt(tmp_path_factory):
    tiny.register()
    return tiny.write_checkpoint(tmp_path_factory.mktemp("conv") / "ckpt", tiny.train_tiny_conv())


def invoke(*args: str):
    tiny.register()
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_grid_npz_and_folder_outputs(conv_ckpt, tmp_path):
    result = invoke("sample", conv_ckpt, "--n", 6, "--out", tmp_path / "grid.png", "--upscale", 1, *FAST)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "grid.png").size == (3 * 10 + 2, 2 * 10 + 2)  # 3 x 2 grid of 8 px + 2 px pads
    assert "sample 6/6 (100%)" in result.output  # progress, as a plain line when not on a terminal

    result = invoke("sample", conv_ckpt, "--n", 5, "--class", 1, "--class", 0, "--out", tmp_path / "s.npz", *FAST)
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "s.npz") as data:
        assert data["arr_0"].shape == (5, 8, 8, 3) and data["arr_0"].dtype == np.uint8
        assert data["arr_1"].tolist() == [1, 0, 1, 0, 1]

    result = invoke("sample", conv_ckpt, "--n", 3, "--out", tmp_path / "pngs", *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert np.asarray(Image.open(tmp_path / "pngs" / "000000.png")).shape == (8, 8, 3)


@pytest.mark.parametrize("n, classes, columns", [(8, 0, 4), (7, 0, 7), (16, 0, 4), (32, 0, 8), (1, 0, 1),
                                                  (32, 4, 4), (6, 3, 3), (2, 3, 2)])
def test_grid_columns_are_classes_or_a_divisor(n, classes, columns):
    assert grid_columns(n, classes) == columns


def test_grids_have_one_class_per_column_and_no_empty_cells(conv_ckpt, tmp_path):
    """Labels cycle through the --class values, so one column per value keeps each column one class."""
    out = tmp_path / "g.png"
    assert invoke("sample", conv_ckpt, "-n", 8, "--class", 0, "--class", 1, "--upscale", 1, "--out", out,
                  *FAST).exit_code == 0
    assert Image.open(out).size == (2 * 10 + 2, 4 * 10 + 2)
    assert invoke("sample", conv_ckpt, "-n", 8, "--upscale", 1, "--out", tmp_path / "h.png", *FAST).exit_code == 0
    assert Image.open(tmp_path / "h.png").size == (4 * 10 + 2, 2 * 10 + 2)


def test_png_grids_enlarge_tiny_tiles_while_npz_and_folders_stay_exact(conv_ckpt, tmp_path):
    assert invoke("sample", conv_ckpt, "-n", 4, "--out", tmp_path / "g.png", *FAST).exit_code == 0
    grid = np.asarray(Image.open(tmp_path / "g.png"))
    assert grid.shape == (2 * 66 + 2, 2 * 66 + 2, 3)  # 8 px tiles x 8 = 64 px, 2 px pads
    assert invoke("sample", conv_ckpt, "-n", 4, "--out", tmp_path / "s.npz", *FAST).exit_code == 0
    with np.load(tmp_path / "s.npz") as data:
        tiles = data["arr_0"]
    assert tiles.shape == (4, 8, 8, 3)
    # nearest-neighbour: each pixel becomes an 8 x 8 block of itself
    assert np.array_equal(grid[2:66, 2:66], tiles[0].repeat(8, axis=0).repeat(8, axis=1))
    assert invoke("sample", conv_ckpt, "-n", 1, "--out", tmp_path / "pngs", *FAST).exit_code == 0
    assert np.asarray(Image.open(tmp_path / "pngs" / "000000.png")).shape == (8, 8, 3)


def test_a_run_folder_samples_its_newest_checkpoint(conv_ckpt, tmp_path):
    run = tmp_path / "run"
    for step in ("0000002", "0000004"):
        shutil.copytree(conv_ckpt, run / "checkpoints" / step)
        torch.save({"step": int(step), "optimizer": {"state": {}, "param_groups": []}},
                   run / "checkpoints" / step / "train_state.pt")
    result = invoke("sample", run, "-n", 2, "--out", tmp_path / "g.png", *FAST)
    assert result.exit_code == 0, result.output
    assert f"checkpoint: {run / 'checkpoints' / '0000004'}" in result.output
    assert invoke("sample", run / "checkpoints", "-n", 2, "--out", tmp_path / "h.png", *FAST).exit_code == 0
    latest = invoke("sample", run / "checkpoints" / "latest", "--out", tmp_path / "i.png", *FAST)
    assert latest.exit_code == 2 and f"the newest is {run / 'checkpoints' / '0000004'}" in latest.output
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    empty = invoke("sample", tmp_path / "empty", "--out", tmp_path / "j.png", *FAST)
    assert empty.exit_code == 2 and "no complete checkpoint yet" in empty.output
    assert len(empty.output.strip().splitlines()) == 1


def test_cuda_graph_without_cuda_says_so(conv_ckpt, tmp_path):
    result = invoke("sample", conv_ckpt, "-n", 2, "--cuda-graph", "--out", tmp_path / "g.png", *FAST)
    assert result.exit_code == 0, result.output
    assert "--cuda-graph needs a CUDA device; sampling on the cpu runs the plain forward" in result.output


def test_compile_samples_what_the_plain_model_samples(conv_ckpt, tmp_path, compile_on_eager_backend):
    """--compile goes through FlowModel.compile_regions (on dynamo's eager backend here) and draws the same
    samples."""
    for name, extra in (("plain.npz", ()), ("compiled.npz", ("--compile",))):
        result = invoke("sample", conv_ckpt, "--n", 4, "--seed", 3, "--out", tmp_path / name, *extra, *FAST)
        assert result.exit_code == 0, result.output
    assert len(compile_on_eager_backend) == 1
    with np.load(tmp_path / "plain.npz") as a, np.load(tmp_path / "compiled.npz") as b:
        assert np.array_equal(a["arr_0"], b["arr_0"])


def test_results_do_not_depend_on_batch_size(conv_ckpt, tmp_path):
    for batch in (1, 4):
        assert invoke("sample", conv_ckpt, "--n", 7, "--seed", 5, "--batch-size", batch,
                      "--out", tmp_path / f"b{batch}.npz", *FAST).exit_code == 0
    with np.load(tmp_path / "b1.npz") as a, np.load(tmp_path / "b4.npz") as b:
        assert np.abs(a["arr_0"].astype(int) - b["arr_0"].astype(int)).max() <= 1
        assert np.array_equal(a["arr_1"], b["arr_1"])
    assert invoke("sample", conv_ckpt, "--n", 7, "--seed", 6, "--out", tmp_path / "s6.npz", *FAST).exit_code == 0
    with np.load(tmp_path / "b1.npz") as a, np.load(tmp_path / "s6.npz") as c:
        assert not np.array_equal(a["arr_0"], c["arr_0"])


@pytest.mark.parametrize("n, world", [(10, 3), (2, 4), (8, 2), (1, 1)])
def test_ranks_split_indices_without_duplicates_or_gaps(n, world):
    parts = [rank_indices(n, r, world) for r in range(world)]
    assert sorted(i for p in parts for i in p) == list(range(n))


def test_rank_split_gives_the_single_process_samples(conv_ckpt):
    from dimsum_core.models import load_model

    model, sampler = load_model(conv_ckpt), EulerSampler(steps=3)
    single = [b for b in generate(model, sampler, range(7), seed=2, batch_size=7)]
    split = [b for r in range(3) for b in generate(model, sampler, rank_indices(7, r, 3), seed=2, batch_size=2)]
    indices, images, labels = merge_batches(split)
    _, single_images, single_labels = merge_batches(single)
    assert indices == list(range(7)) and torch.equal(labels, single_labels)
    assert (images.int() - single_images.int()).abs().max() <= 1


def test_report_prints_nfe_and_time(conv_ckpt, tmp_path):
    result = invoke("sample", conv_ckpt, "--n", 2, "--cfg", 2.0, "--report", "--out", tmp_path / "g.png", *FAST)
    assert result.exit_code == 0
    assert "mean NFE" in result.output and "4.0" in result.output and "counts once" in result.output
    assert "seconds / image" in result.output


def test_user_errors_are_one_line(conv_ckpt, tmp_path):
    (tmp_path / "g.png").write_bytes(b"precious")
    result = invoke("sample", conv_ckpt, "--out", tmp_path / "g.png", *FAST)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (tmp_path / "g.png").read_bytes() == b"precious"
    result = invoke("sample", conv_ckpt, "--out", tmp_path / "x.jpg", *FAST)
    assert result.exit_code == 2 and ".npz" in result.output
    result = invoke("sample", conv_ckpt, "--class", 7, "--out", tmp_path / "y.png", *FAST)
    assert result.exit_code == 2 and "out of range" in result.output
    result = invoke("sample", conv_ckpt, "--sampler", "dopri", "--out", tmp_path / "y.png", *FAST[2:])
    assert result.exit_code == 2 and "did you mean 'dopri5'" in result.output
    result = invoke("sample", conv_ckpt, "--nrow", -2, "--out", tmp_path / "y.png", *FAST)
    assert result.exit_code == 2 and "-2 is not in the range x>=1" in result.output
    assert not (tmp_path / "y.png").exists()


def tiny_vae(directory):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                  latent_channels=4, norm_num_groups=4, sample_size=8).save_pretrained(directory)
    return directory


def test_latent_models_need_and_use_a_vae(tmp_path):
    tiny.register()
    model = create_model("tiny-linear", in_channels=4, input_size=4)
    ckpt = tiny.write_checkpoint(tmp_path / "latent", model)
    (ckpt / RECIPE).write_text("job: train\nvae: /data/sd-vae-ft-ema\ndata: {name: image-folder, root: x}\n")
    result = invoke("sample", ckpt, "--n", 2, "--out", tmp_path / "a.png", *FAST)
    assert result.exit_code == 2
    assert "trained on VAE latents (training used /data/sd-vae-ft-ema); pass --vae DIR" in result.output
    pytest.importorskip("diffusers")
    vae = tiny_vae(tmp_path / "vae")
    result = invoke("sample", ckpt, "--n", 3, "--vae", vae, "--out", tmp_path / "a.npz", *FAST)
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "a.npz") as data:
        assert data["arr_0"].shape == (3, 8, 8, 3)  # 4x4 latents decoded to 8x8 RGB
    pixel = tiny.write_checkpoint(tmp_path / "pixel", create_model("tiny-linear"))
    result = invoke("sample", pixel, "--vae", vae, "--out", tmp_path / "b.png", *FAST)
    assert result.exit_code == 2 and "trained on pixels" in result.output


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_torchrun_two_ranks_match_one_process(tmp_path, free_port):
    """Two gloo ranks on the CPU produce exactly the single-process .npz (real registry model)."""
    torch.manual_seed(0)
    model = create_model("dit", depth=1, hidden_size=32, num_heads=2, input_size=8, patch_size=2,
                         in_channels=3, num_classes=3)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    ckpt = tiny.write_checkpoint(tmp_path / "dit", model)
    args = ["sample", str(ckpt), "-n", "5", "--cfg", "2", *FAST]  # torchrun would take --n for itself
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # A static rendezvous on 127.0.0.1: --standalone advertises the host's FQDN to the ranks, which a
    # sandboxed CI host need not resolve.
    launch = [torchrun, "--nnodes", "1", "--node-rank", "0", "--master-addr", "127.0.0.1",
              "--master-port", str(free_port), "--nproc-per-node", "2"]
    for command, out in ((launch + ["-m", "dimsum_core.cli.main"], "two.npz"),
                         ([sys.executable, "-m", "dimsum_core.cli.main"], "one.npz")):
        done = subprocess.run([*command, *args, "--out", str(tmp_path / out)], env=env, capture_output=True,
                              text=True)
        assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    with np.load(tmp_path / "one.npz") as one, np.load(tmp_path / "two.npz") as two:
        assert np.abs(one["arr_0"].astype(int) - two["arr_0"].astype(int)).max() <= 1
        assert np.array_equal(one["arr_1"], two["arr_1"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_samples_match_cpu_samples(conv_ckpt):
    """Noise is drawn on the CPU, so a GPU run reproduces the CPU images (up to float rounding)."""
    from dimsum_core.models import load_model

    sampler = EulerSampler(steps=4)
    cpu = next(generate(load_model(conv_ckpt), sampler, range(6), seed=1, precision="fp32"))
    gpu_model = load_model(conv_ckpt, device="cuda")
    gpu = next(generate(gpu_model, sampler, range(6), seed=1, precision="fp32"))
    assert (cpu.images.int() - gpu.images.int()).abs().max() <= 2
    bf16 = next(generate(gpu_model, sampler, range(6), seed=1, precision="bf16"))
    assert (cpu.images.float() - bf16.images.float()).abs().mean() < 8


def test_cpu_sampling_makes_room_every_batch(conv_ckpt, monkeypatch):
    from dimsum_core.models import load_model
    from dimsum_core.sampling import generate as generate_module

    calls = []
    monkeypatch.setattr(generate_module, "make_room", lambda: calls.append(1))
    list(generate(load_model(conv_ckpt), EulerSampler(steps=1), range(5), batch_size=2))
    assert len(calls) == 3
