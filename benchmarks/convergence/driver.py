"""The study's command line (``python benchmarks/study.py``): train every arm for the same number of
images with each seed, evaluate at fixed intervals, keep every curve in ``OUT/results.json`` and render
``docs/study.md`` with its plots.

Results are written after every evaluation, one file per (arm, seed) under ``OUT/runs/``; a finished
(arm, seed) is never redone, so a killed run keeps its finished arms and the same command continues with
the rest. An unfinished run continues from its last evaluation (``runs/<arm>-seed<k>.pt``, deleted when
the run is complete). ``--jobs N`` trains N (arm, seed) runs at once in worker processes, spread over the
visible GPUs (with no more jobs than GPUs each run is timed alone; more share a GPU, which small models leave
partly idle); each worker claims the next unclaimed run.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from dimsum_core.config.load import apply_overrides
from dimsum_core.config.nodes import plain
from dimsum_core.errors import DimsumError, RecipeError
from dimsum_core.train.config import as_config

from .arms import STUDY_RECIPES, Arm, load_arm, parse_arms
from .classifier import ClassifierConfig, load_classifier, save_classifier, train_classifier
from .data import Split, load_split, split_node_for
from .evaluation import NFE_SWEEP, EvalSettings, StudyEvaluator
from .report import render, sampler_label
from .runner import train_arm

#: the study's command line, which workers run again
SCRIPT = Path(__file__).resolve().parents[1] / "study.py"
RESULTS = "results.json"
RUNS = "runs"
FORMAT = 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="benchmarks/study.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python benchmarks/study.py --arms all --images 200000 --seeds 2 --eval-every 50000 --out runs/study\n"
               "  python benchmarks/study.py --arms dimsum,dit --images 100000 --seeds 1 --eval-every 25000\n"
               "  python benchmarks/study.py --out runs/study --render-only\n"
               "  python benchmarks/study.py --arms dimsum,dit --set model.depth=4 --set dit:model.num_heads=4 ...\n"
               "  python benchmarks/study.py eval CHECKPOINT --ref runs/study/val_images.npz --extractor study-classifier "
               "--extractor-opt path=runs/study/classifier\n"
               "      (`dimsum eval` with the study's classifier registered as the study-classifier extractor)")
    p.add_argument("--arms", default="all", help="'all' or a comma-separated list of arms (recipes/study/<arm>.yaml)")
    p.add_argument("--images", type=int, default=200_000, help="training images per run (the same for every arm)")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 per arm")
    p.add_argument("--eval-every", type=int, default=50_000, help="evaluate every this many images (and at the end)")
    p.add_argument("--out", type=Path, default=Path("runs/study"), help="results, data cache, classifier, grids")
    p.add_argument("--doc", type=Path, default=Path("docs/study.md"), help="the report to write")
    p.add_argument("--render-only", action="store_true", help="only re-render --doc from OUT/results.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override in every arm recipe, or ARM:KEY=VALUE in one arm (repeatable)")
    p.add_argument("--classifier-set", dest="classifier_overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override in recipes/study/classifier.yaml (repeatable)")
    p.add_argument("--val-size", type=int, default=5000, help="validation split size (FD reference statistics)")
    p.add_argument("--val-loss-images", type=int, default=1000, help="validation images in the loss")
    p.add_argument("--t-grid", type=int, default=10, help="points of the t grid of the validation loss")
    p.add_argument("--samples-per-class", type=int, default=50, help="class-conditional samples per class per eval")
    p.add_argument("--eval-batch", type=int, default=500, help="batch size of evaluation forward passes")
    p.add_argument("--nfe-sweep", action="store_true",
                   help="after each run, sample its final weights with Euler, Heun and dopri5 at several NFE "
                        "(issue 18's question 2)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--title", default="", help="a line saying what this run is (defaults to the budget)")
    p.add_argument("--smoke", action="store_true", help="mark the report as a smoke run (automatic on the CPU)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs trained at once, each in its own process, spread over the visible GPUs (default 1)")
    # set by --jobs for its children: the worker flag and how many workers share this one's GPU
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--gpu-share", type=int, default=1, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: v for k, v in data.items() if not k.startswith("_")}, indent=1))
    tmp.replace(path)


def _run_path(out: Path, key: str) -> Path:
    arm, seed = key.split("/")
    return out / RUNS / f"{arm}-seed{seed}.json"


def load_results(out: Path) -> dict[str, Any]:
    """The study in ``out``: ``results.json`` (settings, classifier, data floor) plus every run file."""
    path = out / RESULTS
    if not path.is_file():
        raise DimsumError(f"{path}: no study results here; run the study first (without --render-only)")
    results = json.loads(path.read_text())
    if results.get("format") != FORMAT:
        raise DimsumError(f"{path}: a study of format {results.get('format')}, this code reads format {FORMAT}; "
                          f"rerun the study into a new --out")
    runs = [json.loads(f.read_text()) for f in sorted((out / RUNS).glob("*.json"))]
    results["runs"] = {f"{r['arm']}/{r['seed']}": r for r in runs}
    results["_dir"] = str(out)
    return results


def _claim(out: Path, key: str) -> bool:
    """Atomically claim a run for this process (False: another worker has it)."""
    try:
        os.close(os.open(_run_path(out, key).with_suffix(".claim"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def worker_gpus(jobs: int, device: torch.device) -> list[str | None]:
    """The GPU each of ``jobs`` workers trains on (None: the CPU), round-robin over the visible GPUs."""
    if device.type != "cuda":
        return [None] * jobs
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = ([g.strip() for g in visible.split(",") if g.strip()] if visible
           else [str(i) for i in range(torch.cuda.device_count())])
    return [ids[i % len(ids)] for i in range(jobs)]


def _run_workers(args: argparse.Namespace, argv: list[str], device: torch.device) -> None:
    for stale in (args.out / RUNS).glob("*.claim"):  # left by a killed run; its run continues
        stale.unlink()
    # several processes share the cores: idle OpenMP threads sleep (see dimsum_core/__init__.py)
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ}
    gpus = worker_gpus(args.jobs, device)
    workers = []
    for gpu in gpus:
        command = [sys.executable, str(SCRIPT), *argv, "--worker", "--gpu-share", str(gpus.count(gpu))]
        workers.append(subprocess.Popen(command, env=env if gpu is None else {**env, "CUDA_VISIBLE_DEVICES": gpu}))
    failed = [i for i, w in enumerate(workers) if w.wait() != 0]
    if failed:
        raise DimsumError(f"study worker(s) {failed} failed (see their output above); rerun the same command "
                          f"to continue with the unfinished runs")


def _check_identical(arms: list[Arm]) -> None:
    """The comparison is only fair if everything but the model is the same."""
    first = arms[0]
    for arm in arms[1:]:
        for what, a, b in [("data", first.data, arm.data), ("objective", first.objective, arm.objective),
                           ("train", first.train, arm.train), ("log.sampler", first.log.sampler, arm.log.sampler),
                           ("log.cfg_scale", first.log.cfg_scale, arm.log.cfg_scale)]:
            if plain(a) != plain(b):
                raise RecipeError(f"arms '{first.name}' and '{arm.name}' differ in {what} ({a} vs {b}); the study "
                                  f"compares arms that differ only in the model: fix recipes/study/{arm.name}.yaml")


def _classifier_config(overrides: list[str]) -> ClassifierConfig:
    path = STUDY_RECIPES / "classifier.yaml"
    cfg = apply_overrides(OmegaConf.load(path), overrides, str(path))
    return as_config(ClassifierConfig, OmegaConf.to_container(cfg, resolve=True), str(path))


def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise DimsumError("--device cuda: no CUDA device is visible; use --device cpu")
    return torch.device("cuda" if choice in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    # the machine, not torch's current thread count, which cpu_threads.make_room changes while work runs
    return f"CPU ({os.cpu_count()} cores)"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


#: settings that may differ between the invocations of one study (they do not change its numbers); the NFE
#: sweep only adds samples from a run's final weights, so the arms of question 3 can skip it (each run
#: records its own sweep, or none)
_PER_INVOCATION = ("seeds", "arms", "command", "commands", "jobs", "date", "title", "doc", "nfe_sweep")


def _fingerprint(settings: dict[str, Any]) -> str:
    keep = {k: v for k, v in settings.items() if k not in (*_PER_INVOCATION, "fingerprint")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _balanced(split: Split, per_class: int, num_classes: int) -> Split:
    """The first ``per_class`` items of each class, ordered like class-conditional samples (class = i % K)."""
    rows = [torch.nonzero(split.labels == c).flatten()[:per_class] for c in range(num_classes)]
    n = min(len(r) for r in rows)
    order = torch.stack([r[:n] for r in rows], dim=1).flatten()
    return Split(split.images[order], split.labels[order])


def run_study(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    out: Path = args.out
    names = parse_arms(args.arms)
    arms = [load_arm(name, args.overrides) for name in names]
    _check_identical(arms)
    base = arms[0]
    classifier_cfg = _classifier_config(args.classifier_overrides)
    device = _device(args.device)
    seeds = list(range(args.seeds))
    eval_settings = EvalSettings(val_loss_images=args.val_loss_images, t_grid=args.t_grid,
                                 samples_per_class=args.samples_per_class, batch_size=args.eval_batch)
    train_node = split_node_for(base.data, "train", int(plain(base.data).get("size", 50000)))
    val_node = split_node_for(base.data, "val", args.val_size)
    say = print
    out.mkdir(parents=True, exist_ok=True)
    workers = min(16, os.cpu_count() or 1)
    say(f"rendering (or loading) the train and val splits in {out / 'data'}")
    train = load_split(train_node, out / "data", workers)
    val = load_split(val_node, out / "data", workers)
    num_classes = int(train.labels.max()) + 1
    from dimsum_core.data.scenes import SHAPE_NAMES

    t = base.train
    settings: dict[str, Any] = {
        "title": args.title or f"{args.images:,} images per run, {len(seeds)} seed(s), batch {t.global_batch_size}",
        "images": args.images, "eval_every": args.eval_every, "seeds": seeds, "arms": names,
        "data": train_node, "train_items": len(train), "val_items": len(val), "resolution": train.images.shape[-1],
        "num_classes": num_classes,
        "classes": SHAPE_NAMES[:num_classes] if train_node["name"] == "procedural-scenes"
        else [str(c) for c in range(num_classes)],
        "objective": plain(base.objective), "batch_size": t.global_batch_size, "lr": t.lr, "betas": list(t.betas),
        "weight_decay": t.weight_decay, "grad_clip": t.grad_clip, "ema_decay": t.ema_decay,
        "label_dropout": t.label_dropout, "precision": t.precision if device.type == "cuda" else "fp32",
        "compile": t.compiles(device.type), "cuda_graph": t.cuda_graph, "sampler": plain(base.log.sampler), "cfg_scale": base.log.cfg_scale,
        "eval": eval_settings.__dict__, "nfe_sweep": NFE_SWEEP if args.nfe_sweep else [],
        "classifier": classifier_cfg.__dict__, "overrides": list(args.overrides),
        "device": _device_name(device), "torch": torch.__version__,
        "date": _now(),
        "smoke": bool(args.smoke or device.type == "cpu"),
        "command": "python benchmarks/study.py " + shlex.join(argv), "out": str(out), "doc": str(args.doc),
        "jobs": args.jobs,
    }
    settings["fingerprint"] = _fingerprint(settings)
    results_path = out / RESULTS
    settings["commands"] = [settings["command"]]
    if results_path.is_file():
        results = load_results(out)
        old = results["settings"]
        if _fingerprint(old) != settings["fingerprint"]:  # recomputed: what counts may change between versions
            differ = sorted(k for k in settings if k in old and old[k] != settings[k]
                            and k not in (*_PER_INVOCATION, "fingerprint"))
            raise DimsumError(f"{results_path} holds a study with other settings ({', '.join(differ) or 'settings'} "
                              f"differ); rerun with the same settings, or use another --out")
        settings["date"] = old["date"]  # the study's start; a continued run does not move it
        settings["commands"] = list(dict.fromkeys([*old.get("commands", [old["command"]]), settings["command"]]))
        settings["jobs"] = max(old.get("jobs", 1), settings["jobs"])
        settings["seeds"] = sorted(set(old["seeds"]) | set(seeds))
        settings["arms"] = list(dict.fromkeys([*old["arms"], *names]))
        results["settings"] = settings
    else:
        results = {"format": FORMAT, "settings": settings, "runs": {}, "_dir": str(out)}
    (out / RUNS).mkdir(exist_ok=True)

    # the classifier, trained once per output folder
    clf_dir = out / "classifier"
    classifier = None
    if (clf_dir / "classifier.json").is_file():
        classifier, report = load_classifier(clf_dir)
        if report.config != classifier_cfg.__dict__ or report.train_items != len(train):
            classifier = None
    if classifier is None:
        say(f"training the study classifier on {len(train):,} images ({device})")
        classifier, report = train_classifier(classifier_cfg, train, val, num_classes, device, log=say)
        save_classifier(clf_dir, classifier, report)
    weights_hash = hashlib.sha256((clf_dir / "classifier.safetensors").read_bytes()).hexdigest()[:16]
    scored_with = results.get("classifier", {}).get("sha256")
    if results["runs"] and scored_with not in (None, weights_hash):
        raise DimsumError(f"{results_path}: its runs were scored with classifier {scored_with}, but {clf_dir} holds "
                          f"{weights_hash}; restore that classifier folder (FDs from two classifiers do not compare) "
                          f"or use another --out")
    results["classifier"] = {**report.__dict__, "sha256": weights_hash}
    say(f"classifier: {report.val_accuracy:.2%} accuracy on {report.val_items:,} validation images")
    if not args.worker:
        np.savez(out / "val_images.npz", arr_0=val.images.permute(0, 2, 3, 1).numpy())  # for `dimsum eval --ref`

    precision = "bf16" if t.precision == "bf16" and device.type == "cuda" else "fp32"
    evaluator = StudyEvaluator(eval_settings, val, classifier, num_classes, base.log.sampler,
                               base.log.cfg_scale, precision, device)
    real = _balanced(train, args.samples_per_class, num_classes)
    if not args.worker:
        results["data_floor"] = {**evaluator.sample_metrics(real.images, real.labels), "samples": len(real)}
        _write_json(results_path, {k: v for k, v in results.items() if k != "runs"})
        if args.jobs > 1:
            _run_workers(args, argv, device)
            results = load_results(out)
            render(results, args.doc)
            say(f"wrote {results_path} and {args.doc}")
            return results

    grids = out / "grids"
    grids.mkdir(exist_ok=True)
    for seed in seeds:
        for arm in arms:
            key = f"{arm.name}/{seed}"
            if results["runs"].get(key, {}).get("complete"):
                say(f"{key}: done already, skipped")
                continue
            if args.worker and not _claim(out, key):
                continue
            if device.type == "cpu" and arm.train.precision == "bf16":
                arm.train = as_config(type(arm.train), {**arm.train.__dict__, "precision": "fp32"}, "train")

            def on_eval(run, point, grid, key=key) -> None:  # noqa: ANN001
                path = grids / f"{run.arm}-seed{run.seed}-{point['images']:09d}.png"
                grid.save(path)
                results["runs"][key] = {**run.__dict__, "complete": False, "grid": str(path.relative_to(out))}
                _write_json(_run_path(out, key), results["runs"][key])
                say(f"{key:<30} {point['images']:>10,} img  {point['train_seconds']:8.1f} s  "
                    f"train loss {point['train_loss']:.4f}  val loss {point['val_loss']:.4f}  "
                    f"FD {point['fd']:8.3f}  acc {point['accuracy']:6.1%}  (eval {point['eval_seconds']:.1f} s)")

            say(f"{key}: training {args.images:,} images in batches of {arm.train.global_batch_size} on {device}")
            state = _run_path(out, key).with_suffix(".pt")
            run = train_arm(arm, seed, args.images, args.eval_every, train, evaluator, device, on_eval,
                            settings["nfe_sweep"], state)
            # which machine ran it and when: one study is built up over several device allotments
            results["runs"][key].update(nfe_sweep=run.nfe_sweep, complete=True, device=settings["device"],
                                        torch=settings["torch"], date=_now(), gpu_share=args.gpu_share)
            for row in run.nfe_sweep:
                say(f"{key:<30} {sampler_label(row['sampler']):>18}  NFE {row['nfe']:6.1f}  FD {row['fd']:8.3f}  "
                    f"acc {row['accuracy']:6.1%}")
            _write_json(_run_path(out, key), results["runs"][key])
            state.unlink(missing_ok=True)
            if args.worker:
                continue
            try:
                render(results, args.doc)
            except DimsumError as exc:  # e.g. no matplotlib here: the results are safe, render elsewhere
                say(f"warning: could not render {args.doc} ({exc}); later: benchmarks/study.py --render-only")
    if args.worker:
        return results
    render(results, args.doc)
    say(f"wrote {results_path} and {args.doc}")
    return results


def evaluate(argv: list[str]) -> int:
    """``dimsum eval ARGV`` with the study's classifier registered as the ``study-classifier`` extractor."""
    from dimsum_core.cli.main import cli

    from .features import register

    register()
    try:
        cli.main(["eval", *argv], prog_name="benchmarks/study.py")
    except SystemExit as exc:  # click's standalone mode ends every command with one (code 0 on success)
        return int(exc.code or 0)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["eval"]:
        return evaluate(argv[1:])
    args = parse_args(argv)
    try:
        if args.render_only:
            results = load_results(args.out)
            render(results, args.doc)
            print(f"wrote {args.doc}")
        else:
            run_study(args, argv)
    except DimsumError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0

