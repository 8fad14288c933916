"""The training loop: a short run, bitwise resume after a kill, EMA, label dropout, options."""

from __future__ import annotations

from pathlib import Path

import pytest
import tiny_models
import torch
from safetensors.torch import load_file

from dimsum_core import checkpoint as ckpt
from dimsum_core import load_model
from dimsum_core.errors import RecipeError
from dimsum_core.train import CheckpointConfig, LogConfig, TrainConfig, Trainer, TrainingInterrupted
from dimsum_core.train.batches import GlobalBatchSampler, slot_seeds
from dimsum_core.train.ema import create_ema, update_ema
from dimsum_core.train.metrics import read_metrics


@pytest.fixture(autouse=True)
def _tiny_models():
    tiny_models.register()


MODEL = {"name": "tiny-train", "input_size": 8, "num_classes": 4, "drop": 0.2}
DATA = {"name": "procedural", "resolution": 8, "num_classes": 4, "size": 64}


def make_trainer(out_dir: Path, steps: int = 6, every: int = 3, resume: str = "auto", model: dict | None = None,
                 **train_overrides) -> Trainer:
    train = {"steps": steps, "global_batch_size": 8, "num_workers": 0, "device": "cpu", "label_dropout": 0.2,
             "grad_accum": 2, "ema_decay": 0.9, "lr": 1e-3, **train_overrides}
    return Trainer(out_dir=out_dir, model=model or MODEL, data=DATA, objective="gvp", seed=3,
                   train=TrainConfig(**train), checkpoint=CheckpointConfig(every=every, keep_last=0, resume=resume),
                   log=LogConfig(every=1, sample_every=-1, tensorboard=False), recipe_yaml="job: train\n")


def read_checkpoint(directory: Path) -> tuple[dict, dict, dict]:
    state = torch.load(directory / ckpt.TRAIN_STATE, weights_only=True)
    return (load_file(directory / ckpt.MODEL_WEIGHTS), load_file(directory / ckpt.EMA_WEIGHTS), state)


def assert_bitwise_equal(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_bitwise_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_bitwise_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_short_run_writes_checkpoints_metrics_and_freezes_dead_params(tmp_path):
    result = make_trainer(tmp_path, steps=4, every=2).run()
    assert result.step == 4
    assert result.frozen == ["cond_proj.weight", "cond_proj.bias"]
    names = [p.name for p in ckpt.training_checkpoints(tmp_path)]
    assert names == ["0000002", "0000004"]
    final = tmp_path / "checkpoints" / "0000004"
    for f in ("model.json", "model.safetensors", "ema.safetensors", "recipe.yaml", "train_state.pt"):
        assert (final / f).is_file(), f
    model, ema, state = read_checkpoint(final)
    assert state["step"] == 4 and state["format"] == 1
    assert state["sampler"]["global_batch_size"] == 8
    # the dead parameters never move, in the model and the EMA
    torch.manual_seed(3)
    fresh = tiny_models.TinyTrainModel(input_size=8, num_classes=4, drop=0.2)
    assert torch.equal(model["cond_proj.weight"], fresh.cond_proj.weight.detach())
    assert not torch.equal(model["inp.weight"], fresh.inp.weight.detach())
    records = [r for r in read_metrics(tmp_path) if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 and r["grad_norm"] > 0 and r["img_per_s"] > 0 for r in records)
    loaded = load_model(final)  # sampling loads the EMA weights
    assert torch.equal(loaded.inp.weight.detach(), ema["inp.weight"])


def test_resume_after_kill_is_bitwise_identical(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    make_trainer(straight, steps=6, every=3).run()

    killed = tmp_path / "killed"
    original = Trainer._train_step

    def dies_at_step_4(self, *args, **kwargs):
        if args[-2] == 4:  # the step about to run; the checkpoint of step 3 exists
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_step", dies_at_step_4)
    with pytest.raises(TrainingInterrupted, match=r"nothing was saved since .*0000003: a re-run resumes from it"):
        make_trainer(killed, steps=6, every=3).run()
    assert [p.name for p in ckpt.training_checkpoints(killed)] == ["0000003"]
    monkeypatch.setattr(Trainer, "_train_step", original)
    result = make_trainer(killed, steps=6, every=3).run()
    assert result.step == 6

    for step in ("0000003", "0000006"):
        a = read_checkpoint(straight / "checkpoints" / step)
        b = read_checkpoint(killed / "checkpoints" / step)
        for part, x, y in zip(("model", "ema", "train_state"), a, b, strict=True):
            assert_bitwise_equal(x, y, f"{step}/{part}")
    losses = {r["step"]: r["loss"] for r in read_metrics(straight) if "loss" in r}
    resumed = {r["step"]: r["loss"] for r in read_metrics(killed) if "loss" in r}
    assert all(losses[s] == resumed[s] for s in range(1, 7))


def test_train_state_loads_with_weights_only(tmp_path):
    make_trainer(tmp_path, steps=2, every=2).run()
    state = torch.load(tmp_path / "checkpoints" / "0000002" / ckpt.TRAIN_STATE, weights_only=True)
    assert set(state) >= {"step", "epoch", "optimizer", "sampler", "rng"}
    assert state["optimizer"]["state"][0]["step"].item() == 2


def test_keep_last_prunes_old_checkpoints(tmp_path):
    trainer = make_trainer(tmp_path, steps=4, every=1)
    trainer.ckpt_cfg = CheckpointConfig(every=1, keep_last=2)
    trainer.run()
    assert [p.name for p in ckpt.training_checkpoints(tmp_path)] == ["0000003", "0000004"]


def test_label_dropout_needs_a_null_class(tmp_path):
    trainer = make_trainer(tmp_path, model={**MODEL, "null_class": False})
    with pytest.raises(RecipeError, match="label_dropout=0.2 needs a null class.*null_class=true"):
        trainer.run()
    assert not (tmp_path / "checkpoints").exists()


def test_model_that_does_not_fit_the_data_is_named(tmp_path):
    with pytest.raises(RecipeError, match=r"takes 3x16x16 inputs but the data gives 3x8x8.*input_size=8"):
        make_trainer(tmp_path, model={**MODEL, "input_size": 16}).run()
    with pytest.raises(RecipeError, match="4 classes.*num_classes=2.*model.num_classes=4"):
        make_trainer(tmp_path, model={**MODEL, "num_classes": 2}).run()


def test_global_batch_must_split_over_slots(tmp_path):
    with pytest.raises(Exception, match="does not split into 1 rank"):
        make_trainer(tmp_path, global_batch_size=9).run()


def test_ema_starts_as_copy_and_follows_decay():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = create_ema(model)
    assert all(torch.equal(a, b) for a, b in zip(ema.parameters(), model.parameters(), strict=True))
    before = ema.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    update_ema(ema, model, 0.75)
    torch.testing.assert_close(ema.weight, 0.75 * before + 0.25 * model.weight.detach())


def test_global_batches_cover_the_epoch_and_split_over_slots():
    # 2 ranks x 2 micro-batches: the 4 slot streams together are the global batches in order
    per_rank = [GlobalBatchSampler(20, 8, rank=r, world_size=2, grad_accum=2, seed=1) for r in range(2)]
    streams = [iter(s) for s in per_rank]
    steps = [[b for r in range(2) for b in (next(streams[r]), next(streams[r]))] for _ in range(4)]
    one = iter(GlobalBatchSampler(20, 8, rank=0, world_size=1, grad_accum=4, seed=1))
    assert steps == [[next(one) for _ in range(4)] for _ in range(4)]
    epoch0 = sum((sum(s, []) for s in steps[:2]), [])
    assert len(set(epoch0)) == 16  # two steps per epoch without repeats; 4 items dropped
    resumed = iter(GlobalBatchSampler(20, 8, rank=1, world_size=2, grad_accum=2, seed=1, start_step=3))
    assert [next(resumed), next(resumed)] == steps[3][2:]


def test_slot_seeds_depend_on_seed_slot_and_step():
    seen = {slot_seeds(s, v, 4, k) for s in range(2) for v in range(4) for k in range(3)}
    assert len(seen) == 24
    assert slot_seeds(5, 1, 2, 7) == slot_seeds(5, 1, 2, 7)


@pytest.mark.parametrize("name", ["quickstart", "image_folder", "dimsum_L2_imagenet", "dit_L2_imagenet", "dimsum_L2_celebahq256",
                                  "dimsum_L2_celebahq512", "dimsum_L2_church256"])
def test_bundled_training_recipes_validate_and_start_with_the_launch_command(name):
    from dimsum_core.config import load_recipe, validate_recipe

    recipe = load_recipe(name)
    assert validate_recipe(recipe) == []
    first = Path(recipe.path).read_text().splitlines()[0]
    assert first.startswith("# dimsum run") or first.startswith("# torchrun")
    assert name in first


def test_a_log_file_gets_progress_lines_checkpoint_lines_and_labelled_losses(tmp_path):
    """Not a terminal (a log file, CliRunner): plain lines every log.every steps and after each checkpoint."""
    from click.testing import CliRunner

    from dimsum_core.cli.main import cli

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"job: train\nout_dir: {tmp_path / 'run'}\nmodel: {MODEL}\ndata: {DATA}\n"
                      "train: {steps: 4, global_batch_size: 8, num_workers: 0, device: cpu, label_dropout: 0.2}\n"
                      "checkpoint: {every: 2}\nlog: {every: 2, sample_every: -1}\n")
    result = CliRunner().invoke(cli, ["run", str(recipe)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    progress = [line for line in lines if line.startswith("train ")]
    assert [line.split(":")[0] for line in progress] == ["train 2/4 (50%)", "train 4/4 (100%)"]
    assert "(mean of 2 steps)" in progress[0] and "img/s" in progress[0] and "left" in progress[0]
    saved = [line for line in lines if line.startswith("saved ")]
    assert saved == [f"saved {tmp_path / 'run' / 'checkpoints' / name}" for name in ("0000002", "0000004")]
    done = next(line for line in lines if line.startswith("done: "))
    assert "(mean of the last logged interval)" in done


def test_more_model_classes_than_data_classes_warns(tmp_path):
    import io

    from rich.console import Console

    trainer = make_trainer(tmp_path / "labelled", steps=1, every=1, model={**MODEL, "num_classes": 6})
    trainer.console = Console(file=io.StringIO(), width=300)
    trainer.run()
    text = trainer.console.file.getvalue()
    assert "model.num_classes=6 but the data has 4 classes: labels 4..5 are never trained" in text
    assert "set model.num_classes=4" in text

    trainer = make_trainer(tmp_path / "fits", steps=1, every=1)
    trainer.console = Console(file=io.StringIO(), width=300)
    trainer.run()
    assert "never trained" not in trainer.console.file.getvalue()


@pytest.mark.parametrize("setting, notice", [("auto", False), (True, True), (False, False)])
def test_tensorboard_notice_only_when_asked_for_by_name(tmp_path, monkeypatch, setting, notice):
    import sys

    from dimsum_core.train.metrics import MetricsLog

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # not installed
    log = MetricsLog(tmp_path, setting)
    log.close()
    assert log.tensorboard_missing is notice
    assert LogConfig().tensorboard == "auto"


def test_sample_grids_of_an_unconditional_model_ignore_the_guidance_scale(tmp_path):
    """log.cfg_scale is for class-conditional grids; an unconditional run must not fail at its first grid."""
    trainer = make_trainer(tmp_path, steps=1, every=1, model={**MODEL, "num_classes": 0}, label_dropout=0.0)
    trainer.data_node = {**DATA, "num_classes": 0}
    trainer.log_cfg = LogConfig(every=1, sample_every=1, sample_n=2, cfg_scale=2.0, tensorboard=False,
                                sampler={"name": "euler", "steps": 1})
    assert trainer.run().step == 1
    assert (tmp_path / "samples" / "0000001.png").is_file()


def test_cpu_training_makes_room_every_step(tmp_path, monkeypatch):
    from dimsum_core.train import loop

    calls = []
    monkeypatch.setattr(loop, "make_room", lambda: calls.append(1))
    make_trainer(tmp_path, steps=3, every=3).run()
    assert len(calls) == 3
