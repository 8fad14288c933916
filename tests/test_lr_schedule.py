"""Learning-rate schedules: values at given steps, the lr the loop uses and logs, and resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import tiny_models
import torch
from safetensors.torch import load_file

from dimsum_core import checkpoint as ckpt
from dimsum_core.errors import RecipeError
from dimsum_core.train import CheckpointConfig, LogConfig, TrainConfig, Trainer, TrainingInterrupted
from dimsum_core.train.metrics import read_metrics
from dimsum_core.train.schedule import lr_at


@pytest.fixture(autouse=True)
def _tiny_models():
    tiny_models.register()


def test_constant_is_the_default_and_ignores_the_step():
    assert TrainConfig().lr_schedule == "constant" and TrainConfig().warmup_steps == 0
    assert [lr_at(s, lr=0.1, total_steps=10) for s in (0, 5, 9, 20)] == [0.1] * 4


def test_cosine_values():
    lrs = [lr_at(s, lr=1.0, total_steps=4, schedule="cosine") for s in range(4)]
    # progress s / 4: cos decay 1, (1 + cos(pi/4)) / 2, 1/2, (1 + cos(3pi/4)) / 2; the last update is not at 0
    expected = [1.0, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2]
    assert lrs == pytest.approx(expected, abs=1e-12)
    assert lr_at(100, lr=1.0, total_steps=4, schedule="cosine") == pytest.approx(0.0, abs=1e-12)


def test_linear_with_warmup_and_floor():
    lr = dict(lr=2.0, total_steps=12, schedule="linear", warmup_steps=4, min_lr_ratio=0.25)
    # warm-up 2 * (s + 1) / 4, then 2 * (0.25 + 0.75 * (1 - (s - 4) / 8))
    assert [lr_at(s, **lr) for s in range(4)] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert [lr_at(s, **lr) for s in (4, 8, 11)] == pytest.approx([2.0, 1.25, 0.6875])
    assert lr_at(12, **lr) == pytest.approx(0.5)


def test_warmup_applies_to_constant():
    assert [lr_at(s, lr=1.0, total_steps=10, warmup_steps=2) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]


def make_trainer(out_dir: Path, **train_overrides) -> Trainer:
    train = {"steps": 6, "global_batch_size": 8, "num_workers": 0, "device": "cpu", "ema_decay": 0.9, "lr": 1e-2,
             "lr_schedule": "cosine", "warmup_steps": 2, **train_overrides}
    return Trainer(out_dir=out_dir, model={"name": "tiny-train", "input_size": 8, "num_classes": 4},
                   data={"name": "procedural", "resolution": 8, "num_classes": 4, "size": 64}, seed=5,
                   train=TrainConfig(**train), checkpoint=CheckpointConfig(every=3, keep_last=0),
                   log=LogConfig(every=1, sample_every=-1, tensorboard=False), recipe_yaml="job: train\n")


def test_loop_uses_and_logs_the_scheduled_lr(tmp_path, monkeypatch):
    seen = []
    original = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    make_trainer(tmp_path).run()
    expected = [lr_at(s, lr=1e-2, total_steps=6, schedule="cosine", warmup_steps=2) for s in range(6)]
    assert seen == pytest.approx(expected)
    assert seen[0] == pytest.approx(5e-3) and seen[-1] < seen[2]
    logged = [r["lr"] for r in read_metrics(tmp_path) if "loss" in r]
    assert logged == pytest.approx(expected)


def test_resume_continues_the_schedule_bitwise(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    make_trainer(straight).run()

    killed = tmp_path / "killed"
    original = Trainer._train_step

    def dies_at_step_4(self, *args, **kwargs):
        if args[-2] == 4:  # the checkpoint of step 3 exists
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_step", dies_at_step_4)
    with pytest.raises(TrainingInterrupted):
        make_trainer(killed).run()
    monkeypatch.setattr(Trainer, "_train_step", original)
    assert make_trainer(killed).run().step == 6

    for name in (ckpt.MODEL_WEIGHTS, ckpt.EMA_WEIGHTS):
        a = load_file(straight / "checkpoints" / "0000006" / name)
        b = load_file(killed / "checkpoints" / "0000006" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    lrs = {r["step"]: r["lr"] for r in read_metrics(straight) if "loss" in r}
    resumed = {r["step"]: r["lr"] for r in read_metrics(killed) if "loss" in r}
    assert all(lrs[s] == resumed[s] for s in range(1, 7))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"warmup_steps": -1}, "train.warmup_steps: -1 is out of range; use a value >= 0"),
    ({"min_lr_ratio": 1.5}, r"train.min_lr_ratio: 1.5 is out of range; use a value in \[0, 1\]"),
])
def test_bad_schedule_options_are_named(tmp_path, overrides, message):
    with pytest.raises(RecipeError, match=message):
        make_trainer(tmp_path, **overrides)
    assert not (tmp_path / "checkpoints").exists()
