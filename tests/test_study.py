"""The convergence study (issue #9): the procedural-scenes data, the classifier, the metrics and a
2-arm, few-step run of benchmarks/study.py end to end (tiny models, 16 px, CPU)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from convergence import driver
from convergence.arms import ARMS, load_arm, parse_arms, scoped_overrides
from convergence.classifier import (
    ClassifierConfig,
    SceneClassifier,
    accuracy,
    load_classifier,
    save_classifier,
    train_classifier,
)
from convergence.data import decode, load_split
from convergence.features import register
from convergence.report import (
    Estimate,
    accuracy_at_chance,
    at_seconds,
    compare,
    nfe_estimates,
    render,
    saturation,
    verdict,
)
from convergence.runner import eval_steps
from dimsum_core.config.nodes import build
from dimsum_core.data.scenes import SHAPE_NAMES, ProceduralScenes
from dimsum_core.errors import CheckpointError, DataError, RecipeError
from dimsum_core.plugin import manager

# every arm shrunk to a few-second CPU run: 16 px, width 64 (the wavelet branch needs 32 = 2 x 16), depth 2
TINY = ["data.size=384", "data.resolution=16", "model.input_size=16", "model.hidden_size=64", "model.depth=2",
        "dimsum:model.attn_every=1", "dit:model.num_heads=4", "train.global_batch_size=32",
        "log.sampler={name: euler, steps: 3}"]
TINY_CLASSIFIER = ["epochs=1", "width=8", "feature_dim=16"]
TINY_EVAL = ["--val-size", "120", "--val-loss-images", "48", "--t-grid", "3", "--samples-per-class", "3",
             "--eval-batch", "64"]


def _study_args(out, doc, *extra: str) -> list[str]:
    args = ["--arms", "dimsum,dit", "--images", "128", "--seeds", "1", "--eval-every", "64",
            "--out", str(out), "--doc", str(doc), *TINY_EVAL, *extra]
    for item in TINY:
        args += ["--set", item]
    for item in TINY_CLASSIFIER:
        args += ["--classifier-set", item]
    return args


def test_the_core_imports_nothing_of_the_study():
    """A model build, the CLI and the built-in plugins load no module of the study, and no built-in is
    the study's (a fresh process: this one has imported the study; the study is importable there, so an
    import of it would succeed and show)."""
    code = ("import sys\n"
            "from dimsum_core import create_model\n"
            "from dimsum_core.plugin.manager import registry\n"
            "import dimsum_core.cli.main\n"
            "create_model('dimsum-S/2', input_size=16, depth=2)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'convergence' or m.startswith('dimsum_core.study')))\n"
            "print('study-classifier' in registry('feature'))\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "benchmarks")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "False"]


# -- data -----------------------------------------------------------------------------------------
def test_scenes_are_deterministic_per_seed_split_and_index():
    a = ProceduralScenes(resolution=16, size=50)
    x, y = a.render(np.arange(20))
    assert x.shape == (20, 3, 16, 16) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    again, labels_again = ProceduralScenes(resolution=16, size=50).render([7, 3])
    np.testing.assert_array_equal(again, x[[7, 3]])  # an item does not depend on its batch
    np.testing.assert_array_equal(labels_again, y[[7, 3]])
    item, label = a[7]
    assert torch.equal(item, torch.from_numpy(x[7])) and label == y[7]
    val, _ = ProceduralScenes(resolution=16, size=50, split="val").render(np.arange(20))
    other_seed, _ = ProceduralScenes(resolution=16, size=50, seed=1).render(np.arange(20))
    # disjoint streams: no validation item equals a train item
    assert min(np.abs(v - x).max(axis=(1, 2, 3)).min() for v in val) > 0.05
    assert np.abs(other_seed - x).mean() > 0.1


def test_scenes_labels_cover_the_classes_and_the_registry_builds_them():
    data = build("dataset", {"name": "procedural-scenes", "resolution": 8, "num_classes": 10, "size": 2000})
    _, labels = data.render(np.arange(2000))
    counts = np.bincount(labels, minlength=10)
    assert len(counts) == 10 and counts.min() > 140  # about 200 each
    assert data.classes == SHAPE_NAMES and data.channels == 3 and not data.is_latent
    _, few = ProceduralScenes(resolution=8, num_classes=3, size=100).render(np.arange(100))
    assert set(few.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("kwargs", [{"num_classes": 11}, {"num_classes": 0}, {"resolution": 4}, {"size": 0},
                                    {"split": "test"}])
def test_scenes_refuse_bad_arguments(kwargs):
    with pytest.raises(DataError):
        ProceduralScenes(**kwargs)


def test_split_cache_round_trips(tmp_path):
    node = {"name": "procedural-scenes", "resolution": 8, "size": 40, "split": "val", "seed": 0}
    first = load_split(node, tmp_path)
    assert first.images.dtype == torch.uint8 and first.images.shape == (40, 3, 8, 8)
    assert len(list(tmp_path.glob("val-*.npz"))) == 1
    cached = load_split(node, tmp_path)
    assert torch.equal(first.images, cached.images) and torch.equal(first.labels, cached.labels)
    x, _ = ProceduralScenes(resolution=8, size=40, split="val").render(np.arange(40))
    assert (decode(first.images) - torch.from_numpy(x)).abs().max() <= 1 / 127.5 + 1e-6


# -- classifier -----------------------------------------------------------------------------------
def test_classifier_trains_and_round_trips_as_a_feature_plugin(tmp_path):
    node = {"name": "procedural-scenes", "resolution": 16, "num_classes": 2, "size": 128, "seed": 0}
    train = load_split({**node, "split": "train"})
    val = load_split({**node, "split": "val", "size": 64})
    cfg = ClassifierConfig(width=8, feature_dim=16, epochs=1, batch_size=32)
    torch.manual_seed(0)
    untrained = SceneClassifier(2, 8, 16)
    model, report = train_classifier(cfg, train, val, 2, torch.device("cpu"), log=lambda _: None)
    assert report.val_accuracy == accuracy(model, val) and report.train_items == 128 and report.val_items == 64
    # the training moved the weights away from the seeded initialisation
    assert not torch.equal(untrained.head.weight, model.head.weight)
    save_classifier(tmp_path / "clf", model, report)
    loaded, loaded_report = load_classifier(tmp_path / "clf")
    assert loaded_report == report
    register()  # the study's plugin, registered at run time
    register()  # once: a second call changes nothing
    extractor = build("feature", {"name": "study-classifier", "path": str(tmp_path / "clf")})
    features, logits = extractor.features_and_logits(val.images[:10])
    assert features.shape == (10, 16) and extractor.dim == 16 and logits.shape == (10, 2)
    torch.testing.assert_close(features, model.features(decode(val.images[:10])))
    with pytest.raises(CheckpointError):
        load_classifier(tmp_path / "missing")


@pytest.mark.gpu
def test_classifier_recipe_recognises_real_validation_scenes():
    """The shipped classifier recipe on the study's full train split: the accuracy the study reports
    (92.5% at 16 px, 98.6% at 32 px on the H200)."""
    node = {k: v for k, v in load_arm("dit").data.items() if k != "split"}
    train = load_split({**node, "split": "train"}, workers=16)
    val = load_split({**node, "split": "val", "size": 5000}, workers=16)
    cfg = driver._classifier_config([])
    _, report = train_classifier(cfg, train, val, 10, torch.device("cuda"), log=lambda _: None)
    assert report.val_accuracy > 0.8, report


# -- arms, schedule, verdicts ---------------------------------------------------------------------
def test_every_arm_recipe_validates_and_differs_from_dimsum_only_in_the_model():
    arms = [load_arm(name) for name in ARMS]
    base = arms[0]
    for arm in arms:
        assert arm.data == base.data and arm.train == base.train and arm.log == base.log
    models = {arm.name: arm.model for arm in arms}
    assert models["mamba-sweep4"] == {**models["mamba-sweep4"], "name": "mamba-S/2", "scan": "sweep4"}
    assert models["no-wavelet"]["branches"] == "spatial" and models["pyramid-layout"]["wavelet_layout"] == "pyramid"
    assert parse_arms("all") == list(ARMS)
    with pytest.raises(RecipeError):
        parse_arms("dimsum,dimsum-XL")
    assert scoped_overrides(["a=1", "dit:b=2", "dimsum:c=3"], "dit") == ["a=1", "b=2"]


def test_eval_steps_and_verdicts():
    assert eval_steps(10, 32, 64) == [2, 4, 6, 8, 10]
    assert eval_steps(5, 32, 100) == [4, 5]
    lower = True
    assert compare(Estimate(1.0, 0.1, 2), Estimate(2.0, 0.1, 2), lower) == "better"
    assert compare(Estimate(1.0, 0.5, 2), Estimate(1.2, 0.5, 2), lower) == "same"
    assert compare(Estimate(0.9, 0.0, 1), Estimate(0.8, 0.0, 1), not lower) == "better"
    # one arm with 1 seed: the other arm's spread stands for both (2 * 0.1 * sqrt(1/2 + 1) = 0.245)
    assert compare(Estimate(1.0, 0.1, 2), Estimate(1.2, 0.0, 1), lower) == "same"
    assert compare(Estimate(1.0, 0.1, 2), Estimate(1.3, 0.0, 1), lower) == "better"
    assert verdict(["better", "better", "better"], 2, 2) == "held"
    assert verdict(["worse", "same", "worse"], 2, 2).startswith("did not hold")
    assert verdict(["better", "worse", "same"], 1, 1) == "mixed (1 seed each: no spread estimate)"
    assert verdict(["better", "better"], 2, 1) == "held (one arm has 1 seed: spread from the other's seeds)"
    run = {"curve": [{"train_seconds": 2.0, "fd": 10.0}, {"train_seconds": 4.0, "fd": 6.0}]}
    assert at_seconds(run, "fd", 3.0) == 8.0 and math.isnan(at_seconds(run, "fd", 1.0))


# -- the whole study, two arms, few steps ---------------------------------------------------------
def test_two_arm_study_end_to_end(tmp_path, capsys, monkeypatch):
    out, doc = tmp_path / "out", tmp_path / "docs" / "study.md"
    assert driver.main(_study_args(out, doc)) == 0
    results = driver.load_results(out)
    assert set(results["runs"]) == {"dimsum/0", "dit/0"}
    assert "runs" not in json.loads((out / "results.json").read_text())  # one file per run, under runs/
    for run in results["runs"].values():
        assert run["complete"] and run["steps"] == 4 and run["params"] > 0
        assert [p["images"] for p in run["curve"]] == [64, 128]
        point = run["curve"][-1]
        assert 0.0 <= point["accuracy"] <= 1.0 and point["fd"] > 0 and point["val_loss"] > 0
        assert len(point["val_loss_t"]) == 3 and point["train_seconds"] > 0
        assert (out / run["grid"]).is_file()
        assert run["device"].startswith("CPU") and run["torch"] == torch.__version__ and run["date"][:2] == "20"
    assert 0.0 <= results["classifier"]["val_accuracy"] <= 1.0 and results["data_floor"]["samples"] == 30
    text = doc.read_text()
    day = results["runs"]["dit/0"]["date"][:10]
    assert f"- Runs: `dimsum` seed 0, `dit` seed 0 on {results['settings']['device']}, torch {torch.__version__}, {day}." in text
    assert "Tiny CPU smoke run" in text and "| `dimsum` |" in text and "| `dit` |" in text
    assert "DiMSUM converges faster than DiT" in text and "not run" in text  # the other claims
    assert (doc.parent / "study" / "convergence.png").is_file() and (doc.parent / "study" / "grids" / "dit.png").is_file()
    assert (out / "val_images.npz").is_file()

    # rerunning skips finished runs and keeps their numbers
    capsys.readouterr()
    assert driver.main(_study_args(out, doc)) == 0
    assert "dimsum/0: done already, skipped" in capsys.readouterr().out
    assert driver.load_results(out)["runs"] == results["runs"]

    # --render-only rebuilds the same page from the JSON alone
    doc.unlink()
    assert driver.main(["--out", str(out), "--doc", str(doc), "--render-only"]) == 0
    assert doc.read_text() == text

    # `benchmarks/study.py eval` is `dimsum eval` with the study's classifier registered (in a process that
    # has not registered it yet): the validation split scored against itself
    monkeypatch.setattr(manager, "_MANAGER", None)
    npz, result = out / "val_images.npz", tmp_path / "eval.json"
    assert driver.main(["eval", "--samples", str(npz), "--ref", str(npz), "--metrics", "fid", "--device", "cpu",
                        "--extractor", "study-classifier", "--extractor-opt", f"path={out / 'classifier'}",
                        "--cache-dir", str(tmp_path / "cache"), "--out", str(result)]) == 0
    assert json.loads(result.read_text())["metrics"]["fid"] == pytest.approx(0, abs=1e-3)
    assert "python benchmarks/study.py eval runs/study/train/dimsum/checkpoints/<step>" in text

    # other settings in the same folder are refused with a one-line error
    capsys.readouterr()
    assert driver.main(_study_args(out, doc, "--t-grid", "4")) == 2
    assert "holds a study with other settings (eval differ)" in capsys.readouterr().err


def test_parallel_workers_give_the_same_study(tmp_path):
    """--jobs 2: two worker processes claim one run each; the curves equal a one-process study's."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert driver.main(_study_args(one, tmp_path / "one.md")) == 0
    (two / "runs").mkdir(parents=True)
    (two / "runs" / "dit-seed0.claim").touch()  # left by a killed run: cleared, the run is trained
    assert driver.main(_study_args(two, tmp_path / "two.md", "--jobs", "2")) == 0
    a, b = driver.load_results(one)["runs"], driver.load_results(two)["runs"]
    assert set(a) == set(b) == {"dimsum/0", "dit/0"}
    for key in a:
        assert b[key]["complete"]
        for p, q in zip(a[key]["curve"], b[key]["curve"], strict=True):
            assert p["images"] == q["images"]
            assert math.isclose(p["val_loss"], q["val_loss"], rel_tol=1e-4), key
    text = (tmp_path / "two.md").read_text()
    assert "| `dit` |" in text and "up to 2 trained at once in worker processes" in text
    assert "--jobs 2" in text  # the command that made it
    assert {run["gpu_share"] for run in b.values()} == {2}  # both workers on the one CPU
    # workers spread one a GPU were timed alone, and the page says so instead
    results = driver.load_results(two)
    for run in results["runs"].values():
        run["gpu_share"] = 1
    render(results, tmp_path / "spread.md")
    text = (tmp_path / "spread.md").read_text()
    assert "one on each GPU, so each was timed alone" in text and "Runs shared the device" not in text


def test_workers_are_spread_over_the_visible_gpus(monkeypatch):
    """--jobs: worker i trains on visible GPU i mod n, so with jobs <= GPUs each run is timed alone."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert driver.worker_gpus(3, torch.device("cuda")) == ["0", "1", "0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5")  # the user's own selection is kept
    assert driver.worker_gpus(2, torch.device("cuda")) == ["3", "5"]
    assert driver.worker_gpus(2, torch.device("cpu")) == [None, None]


def test_accuracy_at_chance_is_left_out_of_verdicts():
    def results(acc_dimsum: float, acc_dit: float) -> dict:
        run = lambda arm, acc: {"arm": arm, "seed": 0, "complete": True,  # noqa: E731
                                "curve": [{"accuracy": acc, "fd": 1.0, "val_loss": 1.0}]}
        return {"settings": {"num_classes": 10}, "runs": {"a": run("dimsum", acc_dimsum), "b": run("dit", acc_dit)}}

    assert accuracy_at_chance(results(0.12, 0.19))
    assert not accuracy_at_chance(results(0.12, 0.25))


def test_runner_follows_the_lr_schedule(tmp_path, monkeypatch):
    from PIL import Image

    from convergence.runner import train_arm
    from dimsum_core.train.schedule import lr_at

    arm = load_arm("dit", [*TINY, "train.lr_schedule=cosine", "train.warmup_steps=2", "train.lr=1e-3"])
    node = {"name": "procedural-scenes", "resolution": 16, "size": 96, "split": "train", "seed": 0}
    train = load_split(node)
    seen: list[float] = []
    step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    evaluator = lambda ema, objective: ({"val_loss": 1.0}, Image.new("RGB", (2, 2)))  # noqa: E731
    run = train_arm(arm, 0, 6 * 32, 6 * 32, train, evaluator, torch.device("cpu"), lambda *a: None)
    assert run.steps == 6
    expected = [lr_at(s, lr=1e-3, total_steps=6, schedule="cosine", warmup_steps=2) for s in range(6)]
    assert seen == pytest.approx(expected) and seen[1] == pytest.approx(1e-3) and seen[-1] < 2e-4


def test_runner_keeps_the_parameters_a_model_fixed_fixed(monkeypatch):
    """DiT's sin-cos pos_embed is fixed by the model (requires_grad=False): the study's step keeps it so,
    as `dimsum run` does, instead of training every parameter that is not dead."""
    from PIL import Image

    from convergence import runner
    from dimsum_core.models import create_model

    built = []

    def keep(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        built.append(create_model(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(runner, "create_model", keep)
    arm = load_arm("dit", TINY)
    train = load_split({"name": "procedural-scenes", "resolution": 16, "size": 32, "split": "train", "seed": 0})
    evaluator = lambda ema, objective: ({"val_loss": 1.0}, Image.new("RGB", (2, 2)))  # noqa: E731
    runner.train_arm(arm, 0, 32, 32, train, evaluator, torch.device("cpu"), lambda *a: None)
    fixed = create_model(arm.model).pos_embed
    assert not built[0].pos_embed.requires_grad and torch.equal(built[0].pos_embed, fixed)


def test_the_nfe_sweep_samples_the_final_weights_and_the_page_answers_question_2(tmp_path, monkeypatch):
    sweep = [{"name": "euler", "steps": 2}, {"name": "euler", "steps": 4}, {"name": "heun", "steps": 2},
             {"name": "dopri5", "atol": 1e-6, "rtol": 1e-3}]
    monkeypatch.setattr(driver, "NFE_SWEEP", sweep)
    out, doc = tmp_path / "out", tmp_path / "study.md"
    assert driver.main(_study_args(out, doc, "--nfe-sweep")) == 0
    results = driver.load_results(out)
    assert results["settings"]["nfe_sweep"] == sweep
    for run in results["runs"].values():
        rows = run["nfe_sweep"]
        assert [r["sampler"] for r in rows] == sweep
        assert [r["nfe"] for r in rows[:3]] == [2, 4, 4] and rows[3]["nfe"] > 6  # Heun: 2 calls a step
        assert all(0 <= r["accuracy"] <= 1 and r["fd"] > 0 for r in rows)
    text = doc.read_text()
    assert "## Sampling: NFE and quality against NFE (question 2)" in text
    assert "| DiMSUM needs fewer dopri5 NFE than DiT | `dit` |" in text
    assert "| euler 4 |" in text and "| dopri5 rtol 0.001 |" in text and (tmp_path / "study" / "nfe.png").is_file()
    # the sweep is per invocation: another arm added without it trains, and question 2 says it has no sweep
    assert driver.main(_study_args(out, doc, "--arms", "mamba-sweep4")) == 0
    results = driver.load_results(out)
    assert results["runs"]["mamba-sweep4/0"]["complete"] and results["runs"]["mamba-sweep4/0"]["nfe_sweep"] == []
    assert [r["sampler"] for r in results["runs"]["dit/0"]["nfe_sweep"]] == sweep  # kept
    text = doc.read_text()
    assert "| DiMSUM needs fewer dopri5 NFE than a Mamba-only model | `mamba-sweep4` | | no NFE sweep |" in text
    assert "| DiMSUM needs fewer dopri5 NFE than DiT | `dit` |" in text and "| `mamba-sweep4` |" in text
    assert "- The runs came from several invocations" in text  # so their seconds may come from other code


def test_nfe_saturation_is_where_fd_and_accuracy_stop_changing():
    """The fewest NFE from which on FD and accuracy match the largest NFE at 2 standard errors; a coarse
    setting with a lower FD (as guided Euler 4 had on the H200) does not count as saturated."""
    def run(seed: int, fds: list[float], accs: list[float]) -> dict:
        rows = [{"sampler": {"name": "euler", "steps": s}, "nfe": s, "fd": fd, "accuracy": acc}
                for s, fd, acc in zip((4, 8, 16, 32), fds, accs, strict=True)]
        return {"arm": "dimsum", "seed": seed, "complete": True, "curve": [], "nfe_sweep": rows}

    results = {"runs": {"a": run(0, [9.0, 5.0, 3.1, 3.0], [0.5, 0.7, 0.9, 0.9]),
                        "b": run(1, [9.2, 5.2, 2.9, 3.1], [0.52, 0.72, 0.91, 0.9]),
                        "c": run(2, [8.8, 4.8, 3.0, 2.9], [0.48, 0.68, 0.89, 0.91])}}
    estimates = nfe_estimates(results, "dimsum")
    assert estimates["euler 8"]["fd"].mean == pytest.approx(5.0) and estimates["euler 8"]["nfe"].n == 3
    assert saturation(estimates, "euler") == "16" and saturation(estimates, "heun") == "—"
    # a lower FD at 4 steps, but fewer samples of their class: saturated only from 16 on
    results["runs"]["a"] = run(0, [2.0, 5.0, 3.1, 3.0], [0.5, 0.7, 0.9, 0.9])
    results["runs"]["b"] = run(1, [2.1, 5.2, 2.9, 3.1], [0.52, 0.72, 0.91, 0.9])
    results["runs"]["c"] = run(2, [1.9, 4.8, 3.0, 2.9], [0.48, 0.68, 0.89, 0.91])
    assert saturation(nfe_estimates(results, "dimsum"), "euler") == "16"


def test_a_killed_run_continues_from_its_last_evaluation_as_if_it_had_not_stopped(tmp_path, monkeypatch, capsys):
    straight = tmp_path / "straight"
    assert driver.main(_study_args(straight, tmp_path / "a.md", "--arms", "dimsum")) == 0
    real = driver.train_arm

    def killed_after_first_evaluation(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        on_eval = args[7]

        def once(run, point, grid):  # noqa: ANN001, ANN202
            on_eval(run, point, grid)
            raise KeyboardInterrupt

        return real(*args[:7], once, *args[8:], **kwargs)

    out = tmp_path / "killed"
    monkeypatch.setattr(driver, "train_arm", killed_after_first_evaluation)
    with pytest.raises(KeyboardInterrupt):
        driver.main(_study_args(out, tmp_path / "b.md", "--arms", "dimsum"))
    state = out / "runs" / "dimsum-seed0.pt"
    assert state.is_file() and not driver.load_results(out)["runs"]["dimsum/0"]["complete"]
    monkeypatch.setattr(driver, "train_arm", real)
    capsys.readouterr()
    assert driver.main(_study_args(out, tmp_path / "b.md", "--arms", "dimsum")) == 0
    assert "dimsum/0: resumed at step 2 from" in capsys.readouterr().out
    a, b = (driver.load_results(d)["runs"]["dimsum/0"] for d in (straight, out))
    assert b["complete"] and not state.exists()
    assert [p["images"] for p in a["curve"]] == [p["images"] for p in b["curve"]] == [64, 128]
    for p, q in zip(a["curve"], b["curve"], strict=True):  # drop path, noise, data order: all continued
        assert (p["val_loss"], p["fd"], p["train_loss"]) == (q["val_loss"], q["fd"], q["train_loss"])

    # a state file that cannot be read is one line naming it and the fix
    torch.save({"step": 1}, state)
    (out / "runs" / "dimsum-seed0.json").write_text(json.dumps({**b, "complete": False}))
    assert driver.main(_study_args(out, tmp_path / "b.md", "--arms", "dimsum")) == 2
    assert "dimsum-seed0.pt: cannot resume this run from it" in capsys.readouterr().err


def test_scan_order_sensitivity_compares_the_spread_with_and_without_the_wavelet_branch():
    from convergence.report import _scan_order_section

    def runs(arm: str, fds: list[float]) -> dict:
        return {f"{arm}/{seed}": {"arm": arm, "seed": seed, "complete": True,
                                  "curve": [{"fd": fd, "accuracy": 0.8, "images": 1000, "train_seconds": 10.0}]}
                for seed, fd in enumerate(fds)}

    results = {"settings": {"seeds": [0, 1, 2], "images": 60000},
               "runs": {**runs("dimsum", [5.0, 5.1, 4.9]), **runs("scan-jpeg8", [5.2, 5.1, 5.3]),
                        **runs("no-wavelet", [5.0, 5.2, 4.8]), **runs("scan-jpeg8-no-wavelet", [8.0, 8.2, 7.8])}}
    text = "\n".join(_scan_order_section(results))
    assert "| jpeg8 | 5.2 ± 0.1 | 8 ± 0.2 | 80.0% ± 0.0% | 80.0% ± 0.0% |" in text
    assert "| FD | 0.2 | 3 |" in text and "less sensitive with the wavelet branch" in text
    # the six arms of the other three orders, three seeds each, at 100 img/s: 18 x 600 s
    assert "Not run yet: 18 (arm, seed) runs of 60,000 images" in text and "about 180 GPU-minutes of training" in text
    assert "scan-zigzag8-no-wavelet" in text


def test_the_committed_study_results_are_not_ignored_by_git():
    """A study is built up over device allotments from its committed files: an ignore rule that catches them
    (a repo-wide ``runs/`` once did) leaves the next allotment and ``--render-only`` without them."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    kept = ["results.json", "runs/dit-seed0.json", "classifier/classifier.json", "grids/dit-seed0-000001000.png"]
    dropped = ["data/train.npz", "val_images.npz", "runs/dit-seed0.pt", "runs/dit-seed0.claim"]
    paths = [f"benchmarks/results/study18/{p}" for p in kept + dropped]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=root, capture_output=True,
                             text=True).stdout.split()
    assert ignored == [f"benchmarks/results/study18/{p}" for p in dropped]


def test_an_fd_that_turns_up_while_accuracy_rises_is_pointed_out():
    from convergence.report import fd_turns

    def runs(arm: str, fds: list[list[float]], accs: list[float]) -> dict:
        return {f"{arm}/{seed}": {"arm": arm, "seed": seed, "complete": True,
                                  "curve": [{"images": 100 * (i + 1), "fd": fd, "accuracy": acc}
                                            for i, (fd, acc) in enumerate(zip(curve, accs, strict=True))]}
                for seed, curve in enumerate(fds)}

    turning = runs("dimsum", [[9.0, 4.0, 6.0], [9.2, 4.2, 6.1], [8.8, 3.8, 5.9]], [0.5, 0.9, 0.99])
    images, low, end = fd_turns({"runs": turning}, "dimsum")
    assert images == 200 and low.mean == pytest.approx(4.0) and end.mean == pytest.approx(6.0)
    # still falling at the end, a rise within the seed noise, or a rise with falling accuracy: nothing to say
    assert fd_turns({"runs": runs("dit", [[9.0, 6.0, 5.0]] * 3, [0.5, 0.8, 0.9])}, "dit") is None
    noisy = runs("a", [[9.0, 4.0, 4.3], [9.0, 4.6, 4.2], [9.0, 4.2, 4.7]], [0.5, 0.9, 0.99])  # 4.27 -> 4.40
    assert fd_turns({"runs": noisy}, "a") is None
    assert fd_turns({"runs": runs("b", [[9.0, 4.0, 6.0]] * 3, [0.5, 0.9, 0.7])}, "b") is None
