"""Seeded fuzzing of recipes and overrides: every generated override set goes through `dimsum validate`,
and the first ones that validate through a one-step `dimsum run`. No traceback, no hang, one line per
problem, and nothing that validates fails at run time."""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from click.testing import CliRunner, Result

from dimsum_core.cli.main import cli

CASES = 300
RUNS = 40
SEED = 16

# a tiny DiMSUM that trains in a fraction of a second; every case changes a few of its keys
BASE = ["model.hidden_size=32", "model.depth=1", "model.input_size=16", "data.resolution=16", "model.patch_size=4",
        "model.attn_heads=2", "model.fusion={name: cross-attention, num_heads: 2}", "data.size=8",
        "train.steps=1", "train.global_batch_size=4", "train.warmup_steps=0", "checkpoint.every=1",
        "log.sample_every=-1", "log.sample_n=2", "log.sampler={name: euler, steps: 2}", "log.tensorboard=false"]

# good and bad values for each key; a case draws one to four of them
CHOICES: dict[str, list[str]] = {
    "model.hidden_size": ["16", "32", "48", "64", "0", "-8", "33", "abc"],
    "model.depth": ["1", "2", "0", "-1", "1.5"],
    "model.input_size": ["8", "16", "12", "24", "0"],
    "data.resolution": ["8", "16", "12", "-4"],
    "model.patch_size": ["1", "2", "4", "3", "0"],
    "model.attn_heads": ["1", "2", "4", "3", "0"],
    "model.attn_every": ["1", "2", "0"],
    "model.drop_path": ["0.0", "0.1", ".nan", "1.5", "-0.1"],
    "model.fusion": ["concat", "sum", "{name: cross-attention, num_heads: 4}", "{name: cross-attention, num_heads: 0}",
                     "{name: cross-attention, num_heads: 3}", "{name: cross-attention, heads: 2}", "fuse"],
    "model.spatial_scan": ["sweep4", "zigzag8", "raster", "hilbert", "window", "{name: window, window: 3}", "swep4"],
    "model.wavelet_scan": ["window", "sweep8", "{name: local-window, window: 0}", "jpeg8"],
    "model.wavelet_layout": ["interleaved", "pyramid", "diagonal"],
    "model.transformer": ["shared", "independent", "none"],
    "model.branches": ["both", "spatial"],
    "model.num_classes": ["4", "0", "2", "-3"],
    "model.null_class": ["true", "false", "maybe"],
    "data.num_classes": ["4", "0", "9"],
    "data.size": ["8", "2", "0"],
    "train.global_batch_size": ["2", "4", "-8", "0", "3"],
    "train.grad_accum": ["1", "2", "3", "0"],
    "train.lr": ["1e-3", "0", "-1", ".nan", ".inf"],
    "train.betas": ["[0.9, 0.999]", "[0.9, 1.0]", "[0.9]", "[-0.1, 0.5]", "0.9"],
    "train.weight_decay": ["0", "0.1", "-1", ".nan"],
    "train.label_dropout": ["0", "0.1", "1.0", "-0.1"],
    "train.ema_decay": ["0.9", "1.0", "1.5"],
    "train.warmup_steps": ["0", "1", "-1"],
    "train.min_lr_ratio": ["0", "0.5", "2"],
    "train.lr_schedule": ["constant", "cosine", "linear", "step"],
    "train.grad_clip": ["null", "0", "1.0", "-1"],
    "train.num_workers": ["0", "10000", "-1"],
    "train.precision": ["fp32", "bf16", "fp64"],
    "log.every": ["1", "0", "-1"],
    "log.sample_every": ["-1", "0", "-2"],
    "log.sample_n": ["0", "2", "-1"],
    "log.cfg_scale": ["1", "2", ".nan"],
    "log.sampler": ["{name: euler, steps: 0}", "{name: heun, steps: 2}", "{name: dopri5, atol: 0}", "euler"],
    "checkpoint.every": ["1", "0"],
    "checkpoint.keep_last": ["0", "1", "-1"],
    "seed": ["0", "7", "-1", "1099511627776"],
    "objective": ["gvp", "linear", "flow", "{name: gvp, t_sampling: cosine}"],
}
# overrides that are wrong as overrides, not as values
JUNK = ["~model", "foo=1", "model.name=nope", "train=[1, 2]", "train.steps=abc", "a=[", "model={", "=3", "~nothing",
        "model.fusion={name: cross-attention, num_heads: 2, extra: 1}", "job=sample", "data=procedural",
        "model.mixer={name: mamba, backend: fast}", "out_dir=[1]"]


def cases() -> list[list[str]]:
    rng = random.Random(SEED)
    generated = []
    for _ in range(CASES):
        picked = [f"{key}={rng.choice(CHOICES[key])}" for key in rng.sample(sorted(CHOICES), rng.randint(1, 4))]
        if rng.random() < 0.15:
            picked.append(rng.choice(JUNK))
        generated.append(picked)
    return generated


@contextmanager
def deadline(seconds: int, what: str) -> Iterator[None]:
    def hang(signum, frame):  # noqa: ANN001, ANN202
        raise TimeoutError(f"{what} ran over {seconds} s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def invoke(args: list[str]) -> Result:
    with deadline(30, " ".join(args)):
        return CliRunner().invoke(cli, args)


def assert_clean(result: Result, args: list[str]) -> None:
    """Exit 0, or exit 2 with nothing but one-line errors; never an uncaught exception."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    assert "Traceback" not in result.output, args
    if result.exit_code != 0:
        assert result.exit_code == 2, (args, result.output)
        errors = [line for line in result.output.splitlines() if line.strip()]
        assert errors and all(line.startswith(("error:", "Error:", "Usage:", "Try ")) for line in errors), \
            (args, result.output)


@pytest.mark.slow
def test_fuzzed_recipes_validate_cleanly_and_what_validates_runs(tmp_path):
    validated = 0
    ran = 0
    for i, overrides in enumerate(cases()):
        args = [*BASE, *overrides, f"out_dir={tmp_path / str(i)}"]
        result = invoke(["validate", "quickstart", *args])
        assert_clean(result, overrides)
        if result.exit_code != 0 or ran >= RUNS:
            validated += result.exit_code == 0
            continue
        validated += 1
        ran += 1
        run = invoke(["run", "quickstart", *args])
        assert run.exit_code == 0 and run.exception is None, (overrides, run.exception, run.output[-500:])
    # the generator is tuned to exercise both sides; a change that makes everything (in)valid shows here
    print(f"fuzz: {CASES} cases, {validated} validated, {ran} run")
    assert 60 <= validated <= 200 and ran == RUNS, (validated, ran)
