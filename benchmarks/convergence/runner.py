"""Training one arm for a fixed number of images, evaluating at fixed image counts.

The training step is ``dimsum run``'s (:class:`dimsum_core.train.step.TrainStep`: AdamW and its lr
schedule, gradient clipping, EMA of every parameter, label dropout for guidance, bf16 autocast,
parameters that get no gradient frozen), and so is the epoch order; the loop around it is lean for
short runs on one device: the whole train split lives on the device as uint8, batches are drawn by
index, and nothing is written but the curve and, at each evaluation, the state a killed run resumes
from (weights, EMA, AdamW, RNG; the driver deletes it when the run is complete).

Time is measured on the training steps only (the device is synchronised before the clock is read
around each evaluation), so ``train_seconds`` is comparable across arms however long evaluation takes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from dimsum_core.config.nodes import build
from dimsum_core.errors import DimsumError
from dimsum_core.flops import count_macs
from dimsum_core.models import create_model
from dimsum_core.nn.precision import precision_scope
from dimsum_core.train.batches import epoch_permutation, slot_seeds
from dimsum_core.train.step import TrainStep

from .arms import Arm
from .data import Split, decode
from .evaluation import StudyEvaluator


@dataclass
class ArmRun:
    arm: str
    seed: int
    params: int
    #: multiply-adds of one forward pass of one image (billions), as `dimsum info` counts them
    gmacs: float
    steps: int
    batch_size: int
    curve: list[dict[str, Any]] = field(default_factory=list)
    #: the final EMA weights' quality against NFE (StudyEvaluator.nfe_sweep), when the study asks for it
    nfe_sweep: list[dict[str, Any]] = field(default_factory=list)


def eval_steps(total_steps: int, batch_size: int, eval_every_images: int) -> list[int]:
    """Steps after which to evaluate: every ``eval_every_images`` images (rounded up to whole steps)
    and at the end."""
    every = max(1, math.ceil(eval_every_images / batch_size))
    return sorted({*range(every, total_steps + 1, every), total_steps})


def _save_state(path: Path, step: int, train_step: TrainStep, run: ArmRun, train_seconds: float,
                device: torch.device) -> None:
    state = {"step": step, "train_seconds": train_seconds, "curve": run.curve,
             "model": train_step.model.state_dict(), "ema": train_step.ema.state_dict(),
             "optimizer": train_step.optimizer.state_dict(), "cpu_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill while saving leaves the previous state whole


def _load_state(path: Path, train_step: TrainStep, run: ArmRun, device: torch.device) -> tuple[int, float]:
    """Restore what :func:`_save_state` wrote; (the step to continue from, training seconds so far)."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        train_step.model.load_state_dict(state["model"])
        train_step.ema.load_state_dict(state["ema"])
        train_step.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["cpu_rng"].cpu())
        if state["cuda_rng"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
        run.curve = list(state["curve"])
    except (RuntimeError, KeyError, OSError, EOFError) as exc:
        raise DimsumError(f"{path}: cannot resume this run from it ({str(exc).splitlines()[0]}); delete it to "
                          f"train the run from the start") from None
    print(f"{run.arm}/{run.seed}: resumed at step {state['step']} from {path}")
    return state["step"], state["train_seconds"]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_arm(arm: Arm, seed: int, images: int, eval_every_images: int, train: Split,
              evaluator: StudyEvaluator, device: torch.device,
              on_eval: Callable[[ArmRun, dict[str, Any], Image.Image], None],
              nfe_samplers: list[dict[str, Any]] | None = None, state_path: Path | None = None) -> ArmRun:
    """Train ``arm`` with ``seed`` on ``train`` (on ``device``) for ``images`` images; then, with
    ``nfe_samplers``, sweep them on the final EMA weights. With ``state_path`` the state after each
    evaluation is saved there, and a run that finds one continues from it (the same steps, noise and
    data order as if it had not stopped)."""
    cfg = arm.train
    batch = cfg.global_batch_size
    total_steps = max(1, math.ceil(images / batch))
    if len(train) < batch:
        raise DimsumError(f"arm {arm.name}: the train split has {len(train)} images, fewer than one batch "
                          f"({batch}); lower train.global_batch_size or raise data.size")
    steps_per_epoch = len(train) // batch  # the incomplete last batch is dropped, as in `dimsum run`
    objective = build("objective", arm.objective)
    with precision_scope(cfg.precision, training=True):
        torch.manual_seed(seed)
        model = create_model(arm.model).to(device)
        if (model.in_channels, model.input_size) != (3, train.images.shape[-1]):
            raise DimsumError(f"arm {arm.name}: the model takes {model.in_channels}x{model.input_size}px inputs but "
                              f"the data is 3x{train.images.shape[-1]}px; set model.input_size and model.in_channels")
        num_classes = int(train.labels.max()) + 1
        if model.num_classes < num_classes:
            raise DimsumError(f"arm {arm.name}: model.num_classes={model.num_classes} but the data has {num_classes}")
        train_step = TrainStep(model, objective, cfg, device)
        if cfg.compiles(device.type):
            model.compile_regions()
        run = ArmRun(arm.name, seed, sum(p.numel() for p in model.parameters()),
                     count_macs(model).macs / 1e9, total_steps, batch)
        images_dev, labels_dev = train.images.to(device), train.labels.to(device)
        noise_gen = torch.Generator(device)
        checkpoints = eval_steps(total_steps, batch, eval_every_images)
        train_seconds, interval_loss, interval_steps = 0.0, 0.0, 0
        first = 0
        if state_path is not None and state_path.is_file():
            first, train_seconds = _load_state(state_path, train_step, run, device)
        model.train()
        _synchronize(device)
        started = time.perf_counter()
        for step in range(first, total_steps):
            epoch, k = divmod(step, steps_per_epoch)
            if k == 0 or step == first:
                order = epoch_permutation(len(train), seed, epoch, device)
            train_step.set_lr(step, total_steps)  # as `dimsum run`: the lr is a function of the step
            idx = order[k * batch:(k + 1) * batch]
            # one slot per step: the noise of `dimsum run` on one rank without accumulation
            noise_gen.manual_seed(slot_seeds(seed, 0, 1, step)[0])
            loss, _ = train_step(decode(images_dev[idx]), labels_dev[idx], noise_gen)
            interval_loss += loss
            interval_steps += 1
            if step + 1 in checkpoints:
                _synchronize(device)
                train_seconds += time.perf_counter() - started
                mean_loss = float(interval_loss) / interval_steps
                if not math.isfinite(mean_loss):
                    raise DimsumError(f"arm {arm.name} seed {seed}: the training loss is {mean_loss} at step "
                                      f"{step + 1}; lower train.lr in recipes/study/base.yaml")
                metrics, grid = evaluator(train_step.ema, objective)
                point = {"step": step + 1, "images": (step + 1) * batch, "train_seconds": train_seconds,
                         "train_loss": mean_loss, **metrics}
                run.curve.append(point)
                if state_path is not None:
                    _save_state(state_path, step + 1, train_step, run, train_seconds, device)
                on_eval(run, point, grid)
                interval_loss, interval_steps = 0.0, 0
                _synchronize(device)
                started = time.perf_counter()
        if nfe_samplers:
            run.nfe_sweep = evaluator.nfe_sweep(train_step.ema, nfe_samplers)
    return run
