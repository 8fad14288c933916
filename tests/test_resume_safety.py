"""Resume never loses or overwrites a checkpoint: damaged ones are skipped with a reason and kept, runs lock
their out_dir, a stop signal saves first, a finished run writes nothing, and diverged weights are never saved."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import signal
from pathlib import Path

import pytest
import tiny_models
import torch
import yaml
from click.testing import CliRunner
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dimsum_core import checkpoint as ckpt
from dimsum_core.cli.main import cli
from dimsum_core.errors import CheckpointError, OutputError
from dimsum_core.flow.objective import VelocityMatching
from dimsum_core.train import (
    CheckpointConfig,
    LogConfig,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
)
from dimsum_core.train.metrics import MetricsLog, read_metrics
from dimsum_core.train.out_dir import LOCK_FILE

MODEL = {"name": "tiny-train", "input_size": 8, "num_classes": 4}
DATA = {"name": "procedural", "resolution": 8, "num_classes": 4, "size": 64}


@pytest.fixture(autouse=True)
def _tiny_models():
    tiny_models.register()


def trainer(out: Path, steps: int, every: int = 2, resume: str = "auto", lr: float = 1e-3) -> Trainer:
    return Trainer(out_dir=out, model=MODEL, data=DATA, seed=0,
                   train=TrainConfig(steps=steps, global_batch_size=8, num_workers=0, device="cpu", lr=lr),
                   checkpoint=CheckpointConfig(every=every, keep_last=0, resume=resume),
                   log=LogConfig(every=1, sample_every=-1, tensorboard=False))


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(tmp_path: Path, out: Path, steps: int, every: int = 2) -> tuple[int, str]:
    recipe = {"job": "train", "out_dir": str(out), "model": MODEL, "data": DATA,
              "train": {"steps": steps, "global_batch_size": 8, "num_workers": 0, "device": "cpu"},
              "checkpoint": {"every": every, "keep_last": 0}, "log": {"sample_every": -1, "tensorboard": False}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(cli, ["run", str(path)], env={"COLUMNS": "400"})  # no wrapped lines
    return result.exit_code, result.output


def _nan_ema(d: Path) -> None:
    ema = load_file(d / ckpt.EMA_WEIGHTS)
    ema["inp.weight"][0, 0, 0, 0] = float("nan")
    save_file(ema, d / ckpt.EMA_WEIGHTS)


DAMAGES = {
    "truncated train_state": (lambda d: os.truncate(d / ckpt.TRAIN_STATE, 1000), "unreadable training state"),
    "empty train_state": (lambda d: os.truncate(d / ckpt.TRAIN_STATE, 0), "unreadable training state"),
    "pickled train_state": (lambda d: torch.save({"step": 4, "x": Path("/")}, d / ckpt.TRAIN_STATE),
                            "unreadable training state (UnpicklingError)"),
    "train_state not a dict": (lambda d: torch.save([1, 2], d / ckpt.TRAIN_STATE), "a list, not a mapping"),
    "train_state without step": (lambda d: torch.save({"optimizer": {}}, d / ckpt.TRAIN_STATE), "step is None"),
    "wrong optimizer state": (lambda d: torch.save({"step": 4, "optimizer": {"state": {0: {"exp_avg": torch.ones(3)}},
                                                                              "param_groups": []}},
                                                   d / ckpt.TRAIN_STATE), "optimizer state does not fit"),
    "missing model": (lambda d: (d / ckpt.MODEL_WEIGHTS).unlink(), "model.safetensors: missing"),
    "missing ema": (lambda d: (d / ckpt.EMA_WEIGHTS).unlink(), "ema.safetensors: missing"),
    "missing model.json": (lambda d: (d / ckpt.MODEL_JSON).unlink(), "not a dimsum checkpoint (no model.json)"),
    "truncated weights": (lambda d: os.truncate(d / ckpt.MODEL_WEIGHTS, 1000), "truncated safetensors"),
    "NaN EMA": (_nan_ema, "inp.weight holds NaN or infinite values"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_only_checkpoint_stops_the_run_and_nothing_changes(tmp_path, damage):
    out = tmp_path / "run"
    trainer(out, steps=4, every=4).run()
    spoil, reason = DAMAGES[damage]
    spoil(out / "checkpoints" / "0000004")
    before = snapshot(out)
    code, output = run_cli(tmp_path, out, steps=8, every=4)
    assert code == 2
    last = output.strip().splitlines()[-1]
    assert last.startswith("error: cannot resume: ") and "0000004" in last and reason in last, last
    assert "nothing was changed (to start over, move" in last and "Traceback" not in output
    assert snapshot(out) == before


def test_an_older_checkpoint_is_resumed_and_the_damaged_newer_one_is_kept(tmp_path):
    out = tmp_path / "run"
    trainer(out, steps=4).run()
    damaged = out / "checkpoints" / "0000004"
    os.truncate(damaged / ckpt.TRAIN_STATE, 1000)
    kept = snapshot(damaged)
    code, output = run_cli(tmp_path, out, steps=6)
    assert code == 0, output
    text = " ".join(output.split())
    assert "skipped" in text and "0000004/train_state.pt: unreadable training state" in text
    assert "kept it as 0000004.damaged" in text and "resumed from" in text and "0000002 at step 2" in text
    assert snapshot(out / "checkpoints" / "0000004.damaged") == kept  # the user's files, untouched
    assert [p.name for p in ckpt.training_checkpoints(out)] == ["0000002", "0000004", "0000006"]


def test_resuming_an_older_checkpoint_by_path_never_writes_over_newer_ones(tmp_path):
    out = tmp_path / "run"
    trainer(out, steps=4).run()
    before = snapshot(out / "checkpoints")
    with pytest.raises(CheckpointError, match="holds 0000004, newer than .*0000002 .step 2.; training on would"):
        trainer(out, steps=6, resume=str(out / "checkpoints" / "0000002")).run()
    assert snapshot(out / "checkpoints") == before


def test_a_finished_run_says_so_in_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    trainer(out, steps=2).run()
    before = snapshot(out)
    code, output = run_cli(tmp_path, out, steps=2)
    assert code == 0
    last = output.strip().splitlines()[-1]
    assert last.startswith("nothing to do: ") and last.endswith(
        "0000002 is at step 2 and train.steps=2 (raise train.steps to train longer)")
    assert "done:" not in output and "train ━" not in output and "resumed" not in output
    assert snapshot(out) == before


def test_a_resumed_run_logs_every_step_once(tmp_path, monkeypatch):
    out = tmp_path / "run"
    original = Trainer._train_step

    def dies_at_step_3(self, *args, **kwargs):
        if args[-2] == 3:  # the checkpoint of step 2 exists, metrics hold steps 1..3
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_step", dies_at_step_3)
    with pytest.raises(TrainingInterrupted):
        trainer(out, steps=6).run()
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == [1, 2, 3]
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "lo')  # a line torn by the kill
    monkeypatch.setattr(Trainer, "_train_step", original)
    trainer(out, steps=6).run()
    records = read_metrics(out)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records if r.get("event") == "resume"] == [2]


def test_sigint_saves_a_checkpoint_then_stops_and_the_resume_is_bitwise_the_same(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    trainer(straight, steps=6, every=6).run()
    calls = {"n": 0}
    original = VelocityMatching.loss

    def loss(self, prediction, target):
        calls["n"] += torch.is_grad_enabled()
        if calls["n"] == 3 and torch.is_grad_enabled():
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during step 3
        return original(self, prediction, target)

    monkeypatch.setattr(VelocityMatching, "loss", loss)
    out = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted, match=r"stopped by SIGINT at step 3; saved .*0000003: a re-run resumes"):
        trainer(out, steps=6, every=6).run()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers are put back
    monkeypatch.setattr(VelocityMatching, "loss", original)
    assert trainer(out, steps=6, every=6).run().step == 6
    for name in (ckpt.MODEL_WEIGHTS, ckpt.EMA_WEIGHTS):
        a, b = (load_file(d / "checkpoints" / "0000006" / name) for d in (straight, out))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_exit_code_and_message_from_the_cli(tmp_path, monkeypatch):
    original = VelocityMatching.loss
    monkeypatch.setattr(VelocityMatching, "loss", lambda self, p, t: (
        os.kill(os.getpid(), signal.SIGTERM) if torch.is_grad_enabled() else None) or original(self, p, t))
    out = tmp_path / "run"
    code, output = run_cli(tmp_path, out, steps=4, every=4)
    assert code == 130
    assert " ".join(output.split()[-12:]).endswith("0000001: a re-run resumes from it")
    assert "stopped by SIGTERM at step 1" in output


@pytest.mark.parametrize("lr", [1e30, 1e3])
def test_diverged_weights_are_never_saved_as_good(tmp_path, lr):
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as info:
        trainer(out, steps=20, every=1, lr=lr).run()
    assert "\n" not in str(info.value)
    saved = ckpt.training_checkpoints(out)
    assert str(saved[-1] if saved else "none") in str(info.value)
    for directory in saved:  # every checkpoint kept is one a resume can train on
        weights = load_file(directory / ckpt.MODEL_WEIGHTS)
        assert max(v.abs().max().item() for v in weights.values()) < 1e3


def test_leftover_temporaries_are_removed_and_a_second_run_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    trainer(out, steps=2).run()
    stale = out / "checkpoints" / ".0000004.tmp-99999"
    stale.mkdir()
    (stale / ckpt.MODEL_WEIGHTS).write_bytes(b"half")
    with (out / LOCK_FILE).open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds the out_dir
        with pytest.raises(OutputError, match="is in use by another dimsum run; wait for it to end"):
            trainer(out, steps=4).run()
        assert stale.exists()
    trainer(out, steps=4).run()
    assert not stale.exists()
    assert [p.name for p in ckpt.training_checkpoints(out)] == ["0000002", "0000004"]


def test_out_dir_that_is_a_file_and_a_full_disk_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("mine")
    code, output = run_cli(tmp_path, tmp_path / "file" / "run", steps=2)
    assert code == 2 and output.strip().splitlines()[-1] == (
        f"error: out_dir {tmp_path / 'file' / 'run'}: {tmp_path / 'file'} is a file; use a directory (set out_dir=...)")

    def full(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                              '"No space left on device" })')

    monkeypatch.setattr(ckpt, "save_file", full)
    code, output = run_cli(tmp_path, tmp_path / "run", steps=2)
    assert code == 2 and "Traceback" not in output
    assert output.strip().splitlines()[-1].startswith("error: cannot write checkpoint")
    assert "No space left on device" in output


def test_full_disk_while_writing_metrics_is_one_line(tmp_path, monkeypatch):
    class FullFile:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    original = MetricsLog.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._file = FullFile()

    monkeypatch.setattr(MetricsLog, "__init__", init)
    code, output = run_cli(tmp_path, tmp_path / "run", steps=2)
    assert code == 2
    assert output.strip().splitlines()[-1] == (f"error: {tmp_path / 'run' / 'metrics.jsonl'}: cannot write the "
                                               f"metrics (No space left on device: free disk space)")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_weight_files_get_the_mode_of_every_other_file(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        trainer(tmp_path, steps=2).run()
    finally:
        os.umask(old)
    final = tmp_path / "checkpoints" / "0000002"
    modes = {p.name: p.stat().st_mode & 0o777 for p in final.iterdir()}
    assert modes == {name: mode for name in modes}, modes


def test_a_read_only_out_dir_is_one_line(tmp_path, monkeypatch):
    from dimsum_core.train import out_dir as out_dir_module

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(out_dir_module.Path, "open", read_only)
    with pytest.raises(OutputError, match=r"out_dir .*run: cannot write there \(Read-only file system: use a place "
                                          r"you can write to\)"):
        trainer(tmp_path / "run", steps=2).run()
