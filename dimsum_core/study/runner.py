"""Training one arm for a fixed number of images, evaluating at fixed image counts.

The same loop as ``dimsum run`` in everything the comparison rests on (AdamW and its lr schedule,
gradient clipping, EMA of every parameter, label dropout for guidance, bf16 autocast, parameters that
get no gradient frozen), but lean for short runs on one device: the whole train split lives on the
device as uint8, batches are drawn by index, and nothing is written but the curve.

Time is measured on the training steps only (the device is synchronised before the clock is read
around each evaluation), so ``train_seconds`` is comparable across arms however long evaluation takes.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from dimsum_core.config.nodes import build
from dimsum_core.errors import DimsumError
from dimsum_core.flops import count_macs
from dimsum_core.models import create_model
from dimsum_core.study.arms import Arm
from dimsum_core.study.data import Split, decode
from dimsum_core.study.evaluation import StudyEvaluator
from dimsum_core.train.batches import slot_seeds
from dimsum_core.train.ema import create_ema, update_ema
from dimsum_core.train.loop import find_unused_parameters


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


def eval_steps(total_steps: int, batch_size: int, eval_every_images: int) -> list[int]:
    """Steps after which to evaluate: every ``eval_every_images`` images (rounded up to whole steps)
    and at the end."""
    every = max(1, math.ceil(eval_every_images / batch_size))
    return sorted({*range(every, total_steps + 1, every), total_steps})


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_arm(arm: Arm, seed: int, images: int, eval_every_images: int, train: Split,
              evaluator: StudyEvaluator, device: torch.device,
              on_eval: Callable[[ArmRun, dict[str, Any], Image.Image], None]) -> ArmRun:
    """Train ``arm`` from scratch with ``seed`` on ``train`` (on ``device``) for ``images`` images."""
    cfg = arm.train
    batch = cfg.global_batch_size
    total_steps = max(1, math.ceil(images / batch))
    if len(train) < batch:
        raise DimsumError(f"arm {arm.name}: the train split has {len(train)} images, fewer than one batch "
                          f"({batch}); lower train.global_batch_size or raise data.size")
    steps_per_epoch = len(train) // batch  # the incomplete last batch is dropped, as in `dimsum run`
    objective = build("objective", arm.objective)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = cfg.precision in ("tf32", "bf16")
    torch.manual_seed(seed)
    model = create_model(arm.model).to(device)
    if (model.in_channels, model.input_size) != (3, train.images.shape[-1]):
        raise DimsumError(f"arm {arm.name}: the model takes {model.in_channels}x{model.input_size}px inputs but the "
                          f"data is 3x{train.images.shape[-1]}px; set model.input_size and model.in_channels")
    num_classes = int(train.labels.max()) + 1
    if model.num_classes < num_classes:
        raise DimsumError(f"arm {arm.name}: model.num_classes={model.num_classes} but the data has {num_classes}")
    frozen = set(find_unused_parameters(model, device))
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    ema = create_ema(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=1e-8,
                                  weight_decay=cfg.weight_decay)
    net = torch.compile(model) if cfg.compile else model
    run = ArmRun(arm.name, seed, sum(p.numel() for p in model.parameters()),
                 count_macs(model).macs / 1e9, total_steps, batch)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16"
                else contextlib.nullcontext())
    images_dev, labels_dev = train.images.to(device), train.labels.to(device)
    order_gen = torch.Generator(device)
    noise_gen = torch.Generator(device)
    checkpoints = eval_steps(total_steps, batch, eval_every_images)
    train_seconds, interval_loss, interval_steps = 0.0, 0.0, 0
    model.train()
    _synchronize(device)
    started = time.perf_counter()
    for step in range(total_steps):
        epoch, k = divmod(step, steps_per_epoch)
        if k == 0:  # a fresh permutation per epoch, from (seed, epoch)
            order_gen.manual_seed(seed * 1_000_003 + epoch)
            order = torch.randperm(len(train), generator=order_gen, device=device)
        lr = cfg.lr_for(step, total_steps)
        for group in optimizer.param_groups:  # as `dimsum run`: the lr is a function of the step
            group["lr"] = lr
        idx = order[k * batch:(k + 1) * batch]
        x1, y = decode(images_dev[idx]), labels_dev[idx]
        noise_gen.manual_seed(slot_seeds(seed, 0, 1, step)[0])
        x0 = torch.randn(x1.shape, generator=noise_gen, device=device)
        t = objective.sample_t(len(idx), generator=noise_gen, device=device)
        if cfg.label_dropout > 0:
            drop = torch.rand(len(idx), generator=noise_gen, device=device) < cfg.label_dropout
            y = torch.where(drop, torch.full_like(y, model.num_classes), y)
        x_t, u_t = objective.path(x0, x1, t)
        with autocast:
            prediction = net(x_t, t, y)
        loss = objective.loss(prediction, u_t).mean()
        loss.backward()
        if cfg.grad_clip is not None and cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        update_ema(ema, model, cfg.ema_decay)
        interval_loss += loss.detach()
        interval_steps += 1
        if step + 1 in checkpoints:
            _synchronize(device)
            train_seconds += time.perf_counter() - started
            mean_loss = float(interval_loss) / interval_steps
            if not math.isfinite(mean_loss):
                raise DimsumError(f"arm {arm.name} seed {seed}: the training loss is {mean_loss} at step {step + 1}; "
                                  f"lower train.lr in recipes/study/base.yaml")
            metrics, grid = evaluator(ema, objective)
            point = {"step": step + 1, "images": (step + 1) * batch, "train_seconds": train_seconds,
                     "train_loss": mean_loss, **metrics}
            run.curve.append(point)
            on_eval(run, point, grid)
            interval_loss, interval_steps = 0.0, 0
            _synchronize(device)
            started = time.perf_counter()
    return run
