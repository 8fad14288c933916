"""``dimsum prepare-latents`` with a tiny randomly initialised AutoencoderKL saved to a tmp dir."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dimsum_core.cli.main import cli
from dimsum_core.config import build

diffusers = pytest.importorskip("diffusers", reason='needs diffusers: pip install -e ".[test]"')


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=16, scaling_factor=0.5)  # not 0.18215 on purpose
    path = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(path)
    return path


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / "images" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
                tmp_path / "images" / cls / f"{i}.png")
    return tmp_path / "images"


def run(*args):
    return CliRunner().invoke(cli, ["prepare-latents", *map(str, args)])


def test_encodes_both_flips_with_the_vae_scaling_factor(tmp_path, images, vae_dir):
    out = tmp_path / "lat"
    result = run(images, "--vae", vae_dir, "--out", out, "--resolution", 16, "--batch-size", 4)
    assert result.exit_code == 0, result.output
    info = json.loads((out / "latents.json").read_text())
    assert info["count"] == 6 and info["flips"] == 2 and info["done"] == 6
    assert info["shape"] == [4, 8, 8] and info["scaling_factor"] == 0.5
    assert info["classes"] == ["cats", "dogs"] and info["num_classes"] == 2
    latents = np.load(out / "latents.npy", mmap_mode="r")
    assert latents.shape == (12, 4, 8, 8)
    assert np.load(out / "labels.npy").tolist() == [0, 0, 0, 1, 1, 1]

    # row i is image i, row 6 + i its mirror image; latents are posterior samples x 0.5
    from dimsum_core.data.image_files import load_image
    from dimsum_core.vae import load_vae
    vae = load_vae(vae_dir)
    x = load_image(sorted((images / "cats").iterdir())[1], 16)[None]
    dist = vae.encode(x).latent_dist
    for row, mean in ((1, dist.mean), (7, vae.encode(x.flip(-1)).latent_dist.mean)):
        z = torch.from_numpy(np.array(latents[row]))[None] / 0.5
        deviation = (z - mean) / dist.std
        assert deviation.abs().max() < 6 and deviation.std() > 0.5  # a sample, not the mean

    data = build("dataset", {"name": "latents", "root": str(out)})
    assert len(data) == 12 and data.resolution == 8 and data.channels == 4


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, images, vae_dir, monkeypatch):
    straight = tmp_path / "straight"
    assert run(images, "--vae", vae_dir, "--out", straight, "--resolution", 16, "--batch-size", 2).exit_code == 0

    import dimsum_core.vae as vae_module
    original, calls = vae_module.encode, {"n": 0}

    def dies_on_third_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(vae_module, "encode", dies_on_third_batch)
    killed = tmp_path / "killed"
    run(images, "--vae", vae_dir, "--out", killed, "--resolution", 16, "--batch-size", 2)
    assert json.loads((killed / "latents.json").read_text())["done"] == 4
    monkeypatch.setattr(vae_module, "encode", original)
    result = run(images, "--vae", vae_dir, "--out", killed, "--resolution", 16, "--batch-size", 2)
    assert result.exit_code == 0 and "resuming at image 4 of 6" in " ".join(result.output.split())
    np.testing.assert_array_equal(np.load(killed / "latents.npy"), np.load(straight / "latents.npy"))
    again = run(images, "--vae", vae_dir, "--out", killed, "--resolution", 16, "--batch-size", 2)
    assert "already complete" in " ".join(again.output.split())


def test_other_images_into_an_existing_store_are_refused(tmp_path, images, vae_dir):
    out = tmp_path / "lat"
    assert run(images, "--vae", vae_dir, "--out", out, "--resolution", 16).exit_code == 0
    before = (out / "latents.npy").read_bytes()
    result = run(images, "--vae", vae_dir, "--out", out, "--resolution", 8)
    assert result.exit_code == 2 and "holds latents of another image set" in " ".join(result.output.split())
    assert (out / "latents.npy").read_bytes() == before


@pytest.mark.parametrize("option, value, message", [
    ("--resolution", 15, "--resolution 15: use a multiple of 2, the VAE's downsampling factor"),  # a 2-stage VAE
    ("--resolution", 0, "--resolution 0: use 1 or more"),
    ("--batch-size", 0, "--batch-size 0: use 1 or more"),
])
def test_sizes_the_vae_cannot_take_are_one_line_and_write_nothing(tmp_path, images, vae_dir, option, value, message):
    result = run(images, "--vae", vae_dir, "--out", tmp_path / "lat", option, value)
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1] == f"error: {message}"
    assert not (tmp_path / "lat").exists()


def test_missing_vae_directory_says_what_to_put_where(tmp_path, images):
    result = run(images, "--vae", tmp_path / "no-vae", "--out", tmp_path / "lat")
    assert result.exit_code == 2
    line = result.output.strip().splitlines()[-1]
    assert "no-vae: no such VAE directory" in line and "config.json" in line
    assert "`hf download stabilityai/sd-vae-ft-ema --local-dir DIR`" in line  # huggingface-cli is gone
    assert not (tmp_path / "lat").exists()


def test_without_diffusers_the_error_names_the_extra(tmp_path, images, vae_dir, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import fails
    result = run(images, "--vae", vae_dir, "--out", tmp_path / "lat")
    assert result.exit_code == 2 and 'pip install -e ".[vae]"' in result.output


def test_training_on_latents_and_on_pixels_through_the_vae(tmp_path, images, vae_dir):
    import tiny_models

    from dimsum_core.train import CheckpointConfig, LogConfig, TrainConfig, Trainer

    tiny_models.register()
    out = tmp_path / "lat"
    assert run(images, "--vae", vae_dir, "--out", out, "--resolution", 16).exit_code == 0
    model = {"name": "tiny-train", "in_channels": 4, "input_size": 8, "num_classes": 2}
    common = dict(model=model, seed=0, checkpoint=CheckpointConfig(every=2),
                  train=TrainConfig(steps=2, global_batch_size=4, num_workers=0, device="cpu"),
                  log=LogConfig(sample_every=2, sample_n=4, sampler={"name": "euler", "steps": 2}, tensorboard=False))
    for name, data in (("latents", {"name": "latents", "root": str(out)}),
                       ("pixels", {"name": "image-folder", "root": str(images), "resolution": 16})):
        result = Trainer(out_dir=tmp_path / name, data=data, vae=str(vae_dir), **common).run()
        assert result.step == 2
        grid = Image.open(tmp_path / name / "samples" / "0000002.png")
        assert grid.size == (2 * 66 + 2, 2 * 66 + 2)  # 4 decoded 16 px samples, 2 per row, shown at 64 px
