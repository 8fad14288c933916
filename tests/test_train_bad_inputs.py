"""Bad inputs to training: each error is one line that names the problem, and nothing is lost."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import pytest
import tiny_models
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from dimsum_core import checkpoint as ckpt
from dimsum_core.cli.main import cli
from dimsum_core.errors import CheckpointError, DataError
from dimsum_core.flow.objective import VelocityMatching
from dimsum_core.train import CheckpointConfig, LogConfig, TrainConfig, Trainer, TrainingDiverged

MODEL = {"name": "tiny-train", "input_size": 8, "num_classes": 4}
DATA = {"name": "procedural", "resolution": 8, "num_classes": 4, "size": 64}


@pytest.fixture(autouse=True)
def _tiny_models():
    tiny_models.register()


def trainer(out_dir: Path, steps: int = 4, model: dict | None = None, data: dict | None = None) -> Trainer:
    return Trainer(out_dir=out_dir, model=model or MODEL, data=data or DATA, seed=0,
                   train=TrainConfig(steps=steps, global_batch_size=8, num_workers=0, device="cpu"),
                   checkpoint=CheckpointConfig(every=2, keep_last=0),
                   log=LogConfig(every=1, sample_every=-1, tensorboard=False))


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root with its content hash."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(tmp_path: Path, recipe: dict) -> tuple[int, str]:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(cli, ["run", str(path)])
    return result.exit_code, result.output


def image_folder_recipe(out_dir: Path, root: Path, **data) -> dict:
    return {"job": "train", "out_dir": str(out_dir), "model": {**MODEL, "num_classes": 2},
            "data": {"name": "image-folder", "root": str(root), "resolution": 8, **data},
            "train": {"steps": 2, "global_batch_size": 2, "num_workers": 0, "device": "cpu"},
            "log": {"sample_every": -1, "tensorboard": False}}


def write_images(folder: Path, n: int, size: tuple[int, int] = (12, 10)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, (20 * i, 100, 200)).save(folder / f"img{i}.png")


def test_missing_data_folder_is_one_line_and_nothing_is_written(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, output = run_cli(tmp_path, image_folder_recipe(out, tmp_path / "nope"))
    assert code == 2
    lines = output.strip().splitlines()
    assert lines[-1].startswith("error: ") and "nope: no such data folder; give a folder of images (in a recipe: data.root)" in lines[-1]
    assert "Traceback" not in output
    assert snapshot(out) == {"notes.txt": hashlib.sha1(b"keep me").hexdigest()}


def test_empty_data_folder_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("not an image")
    code, output = run_cli(tmp_path, image_folder_recipe(tmp_path / "run", tmp_path / "empty"))
    assert code == 2
    assert "empty: no images found" in output.strip().splitlines()[-1]
    assert (tmp_path / "empty" / "readme.txt").read_text() == "not an image"
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unreadable_image_is_skipped_and_counted_or_an_error(tmp_path):
    root = tmp_path / "images"
    write_images(root / "cats", 3)
    write_images(root / "dogs", 3)
    (root / "dogs" / "broken.png").write_bytes(b"definitely not a png")
    before = snapshot(root)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\): dogs/broken.png"):
        result = trainer(tmp_path / "skip", steps=2, model={**MODEL, "num_classes": 2},
                         data={"name": "image-folder", "root": str(root), "resolution": 8}).run()
    assert result.step == 2
    code, output = run_cli(tmp_path, image_folder_recipe(tmp_path / "err", root, on_bad_image="error"))
    assert code == 2
    assert "broken.png: unreadable image; fix or remove it, or set data.on_bad_image=skip" in output
    assert snapshot(root) == before  # the data is never touched


def test_checkpoint_that_does_not_fit_the_recipe_names_keys_and_shapes(tmp_path):
    trainer(tmp_path, steps=2).run()
    before = snapshot(tmp_path / "checkpoints")
    with pytest.raises(CheckpointError) as info:
        trainer(tmp_path, steps=4, model={**MODEL, "width": 8}).run()
    message = str(info.value)
    assert "\n" not in message
    assert "0000002/model.safetensors: weights do not fit the model" in message
    assert "shape mismatch" in message and "(16, 3, 3, 3) vs model (8, 3, 3, 3)" in message
    assert "width: default in the checkpoint vs 8 in the recipe" in message
    assert snapshot(tmp_path / "checkpoints") == before


def test_nan_loss_stops_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = VelocityMatching.loss

    def loss(self, prediction, target):
        calls["n"] += torch.is_grad_enabled()  # training steps only (saving checks the weights without grad)
        value = original(self, prediction, target)
        return value * float("nan") if calls["n"] == 5 and torch.is_grad_enabled() else value

    monkeypatch.setattr(VelocityMatching, "loss", loss)
    with pytest.raises(TrainingDiverged) as info:
        trainer(tmp_path, steps=8).run()
    message = str(info.value)
    assert "\n" not in message
    assert "loss is nan at step 5" in message and "last good checkpoint" in message and "0000004" in message
    assert [p.name for p in ckpt.training_checkpoints(tmp_path)] == ["0000002", "0000004"]
    good = tmp_path / "checkpoints" / "0000004"
    assert ckpt.is_complete_checkpoint(good)
    weights = ckpt.read_weights(good / ckpt.MODEL_WEIGHTS)
    assert all(torch.isfinite(v).all() for v in weights.values())


def test_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    original = ckpt.write_train_state
    saves = {"n": 0}

    def write_train_state(directory, state):
        saves["n"] += 1
        if saves["n"] == 2:  # mid-save: weights already written into the temporary directory
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(directory, state)

    monkeypatch.setattr(ckpt, "write_train_state", write_train_state)
    out = tmp_path / "run"
    recipe = {"job": "train", "out_dir": str(out), "model": MODEL, "data": DATA,
              "train": {"steps": 4, "global_batch_size": 8, "num_workers": 0, "device": "cpu"},
              "checkpoint": {"every": 2, "keep_last": 0}, "log": {"sample_every": -1, "tensorboard": False}}
    code, output = run_cli(tmp_path, recipe)
    assert code == 2
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: cannot write checkpoint") and "0000004" in last
    assert "No space left on device" in last and "0000002 is intact" in last
    assert [p.name for p in ckpt.training_checkpoints(out)] == ["0000002"]
    assert ckpt.is_complete_checkpoint(out / "checkpoints" / "0000002")
    leftovers = [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_resume_never_refuses_to_overwrite_a_run(tmp_path):
    trainer(tmp_path, steps=2).run()
    before = snapshot(tmp_path / "checkpoints")
    t = trainer(tmp_path, steps=2)
    t.ckpt_cfg = CheckpointConfig(resume="never")
    with pytest.raises(CheckpointError, match="already holds checkpoints .*resume=auto"):
        t.run()
    assert snapshot(tmp_path / "checkpoints") == before


def test_resume_from_a_missing_path_is_one_line(tmp_path):
    t = trainer(tmp_path / "run", steps=2)
    t.ckpt_cfg = CheckpointConfig(resume=str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError, match="nowhere: no such checkpoint directory"):
        t.run()


def test_image_folder_that_is_a_file(tmp_path):
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DataError, match="is a file"):
        trainer(tmp_path / "run", data={"name": "image-folder", "root": str(tmp_path / "file.png")}).run()
