"""The training loop around :class:`dimsum_core.train.step.TrainStep` (velocity matching with AdamW,
gradient clipping, EMA, label dropout): gradient accumulation, DDP (torchrun), checkpoints with bitwise
resume, metrics and sample grids.

One :class:`Trainer` per process; :meth:`Trainer.run` is set-up, resume, then the loop. Under torchrun every rank builds the same model (same seed),
handles its share of each global batch, and rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.markup import escape
from safetensors import SafetensorError
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from dimsum_core import checkpoint as ckpt
from dimsum_core.config.nodes import build, plain
from dimsum_core.cpu_threads import make_room
from dimsum_core.errors import CheckpointError, DataError, DimsumError, RecipeError, os_problem
from dimsum_core.interfaces.dataset import ImageDataset
from dimsum_core.interfaces.model import FlowModel
from dimsum_core.interfaces.objective import Objective
from dimsum_core.models import create_model
from dimsum_core.nn.precision import precision_scope
from dimsum_core.progress import TaskProgress
from dimsum_core.train import distributed as dist_utils
from dimsum_core.train.batches import GlobalBatchSampler, slot_seeds
from dimsum_core.train.config import CheckpointConfig, LogConfig, TrainConfig, as_config
from dimsum_core.train.metrics import MetricsLog
from dimsum_core.train.out_dir import check_out_dir, locked_out_dir
from dimsum_core.train.preview import SampleGrid
from dimsum_core.train.step import TrainStep
from dimsum_core.train.stop import StopRequest, ignore_stop_signals

STATE_FORMAT = 1
#: a loss this many times the first loss of the run means it diverged (finite or not)
DIVERGENCE_FACTOR = 1e3


class TrainingDiverged(DimsumError):
    """The loss or the gradient norm became NaN, infinite, or far larger than at the start."""


class TrainingInterrupted(DimsumError):
    """SIGINT or SIGTERM stopped the run; the message says where a re-run resumes."""

    exit_code = 130


@dataclass
class TrainResult:
    step: int
    #: mean loss of the last logged interval
    loss: float
    checkpoint: Path | None
    frozen: list[str]
    #: False when the run had already reached train.steps (nothing was trained or written)
    trained: bool = True


def _last_good(checkpoint: Path | None) -> str:
    return (f" (last good checkpoint: {checkpoint or 'none'}); lower train.lr or train.grad_clip, or use "
            f"train.precision=fp32, then resume")


def _loader_error(exc: Exception) -> DimsumError:
    """A DimsumError raised in a DataLoader worker arrives wrapped in a traceback; keep its one line."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    match = [re.sub(r"^[\w.]*Error: ", "", line) for line in lines if re.match(r"^[\w.]*Error: ", line)]
    return type(exc)(match[-1] if match else lines[-1]) if isinstance(exc, DimsumError) else DataError(lines[-1])


def check_fit(model: FlowModel, data: ImageDataset | None, label_dropout: float,
              seen_input: tuple[int, int] | None, has_vae: bool) -> None:
    """A RecipeError when the model does not fit the data or the options. ``seen_input``: (channels, side)
    the model gets from the data, None where only a loaded VAE could tell; ``data`` is None where
    `dimsum validate` does not open the dataset."""
    name = model.config().get("name")
    if data is not None and seen_input is not None and (model.in_channels, model.input_size) != seen_input:
        channels, side = seen_input
        raise RecipeError(
            f"model '{name}' takes {model.in_channels}x{model.input_size}x{model.input_size} inputs but the data "
            f"gives {channels}x{side}x{side}; set model.in_channels={channels} model.input_size={side}")
    if data is not None and data.num_classes > max(model.num_classes, 1):
        raise RecipeError(f"the data has {data.num_classes} classes but model '{name}' has "
                          f"num_classes={model.num_classes}; set model.num_classes={data.num_classes}")
    if label_dropout > 0 and not getattr(model, "has_null_class", False):
        raise RecipeError(f"train.label_dropout={label_dropout} needs a null class, but model "
                          f"'{name}' has none; set model.null_class=true or train.label_dropout=0")
    if data is not None and not data.is_latent and data.channels == 3 and not has_vae and model.in_channels == 4:
        raise RecipeError("the data is pixels but the model takes 4-channel latents; set vae: DIR")


class Trainer:
    def __init__(self, *, out_dir: str | Path, model: Any, data: Any, objective: Any = "gvp",
                 train: TrainConfig | None = None, checkpoint: CheckpointConfig | None = None,
                 log: LogConfig | None = None, seed: int = 0, vae: str | None = None,
                 recipe_yaml: str | None = None, console: Console | None = None):
        self.out_dir = Path(out_dir).expanduser()
        self.model_node, self.data_node, self.objective_node = plain(model), plain(data), plain(objective)
        self.cfg = as_config(TrainConfig, train, "train")
        self.ckpt_cfg = as_config(CheckpointConfig, checkpoint, "checkpoint")
        self.log_cfg = as_config(LogConfig, log, "log")
        self.seed = seed
        self.vae_path = vae
        self.recipe_yaml = recipe_yaml
        self.console = console or Console(stderr=True)

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        info = dist_utils.init_distributed(self.cfg.device)
        try:
            with dist_utils.leave_together(info), contextlib.ExitStack() as held:
                return self._run(info, held)
        except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
            newest = ckpt.newest_checkpoint(self.out_dir)
            raise TrainingInterrupted(
                "interrupted; nothing was saved since "
                + (f"{newest}: a re-run resumes from it" if newest else "the start: a re-run starts from step 0")
            ) from None

    def _run(self, info: dist_utils.DistInfo, held: contextlib.ExitStack) -> TrainResult:
        """``held`` keeps the out_dir lock, the TF32 flags and the signal handlers until the run ends."""
        check_out_dir(self.out_dir)
        held.enter_context(precision_scope(self.cfg.precision, training=True))
        data, train_step = self._set_up(info)
        resume_from, step = self._resume(info, held, train_step)
        if step >= self.cfg.steps:
            self._say(info)(f"nothing to do: {resume_from} is at step {step} and train.steps={self.cfg.steps} "
                            f"(raise train.steps to train longer)", highlight=False)
            return TrainResult(step, math.nan, resume_from, train_step.frozen, trained=False)
        return self._loop(info, held, data, train_step, resume_from, step)

    def _say(self, info: dist_utils.DistInfo) -> Callable[..., None]:
        """Print on rank 0; the other ranks would only repeat it."""
        return self.console.print if info.is_main else (lambda *a, **k: None)

    # -- set-up -----------------------------------------------------------------------------------
    def _set_up(self, info: dist_utils.DistInfo) -> tuple[ImageDataset, TrainStep]:
        """The VAE, the data, the objective, the model (the same initial weights on every rank) and its
        optimizer state, each checked against the others."""
        device, say = info.device, self._say(info)
        self.vae = None
        if self.vae_path is not None:
            from dimsum_core.vae import load_vae

            self.vae = load_vae(self.vae_path, device)
        data = self._build_data()
        # pixel data feeding a latent model: encode every batch, as the official CelebA/Church runs do
        self.encode_pixels = self.vae is not None and not data.is_latent
        objective = build("objective", self.objective_node)
        if not isinstance(objective, Objective):
            raise RecipeError(f"objective: '{self.objective_node}' did not build an Objective")

        torch.manual_seed(self.seed)  # identical initial weights on every rank
        model = create_model(self.model_node).to(device)
        check_fit(model, data, self.cfg.label_dropout, self._model_input(data), self.vae is not None)
        if model.num_classes > max(data.num_classes, 1):
            used = max(data.num_classes, 1)
            has = f"{data.num_classes} classes" if data.num_classes else "no class labels (every image is class 0)"
            fix = (f"model.num_classes={data.num_classes}" if data.num_classes
                   else "model.num_classes=0 train.label_dropout=0 (unconditional)")
            say(f"[yellow]warning: model.num_classes={model.num_classes} but the data has {has}: labels "
                f"{used}..{model.num_classes - 1} are never trained and sample as noise; set {fix}")
        return data, TrainStep(model, objective, self.cfg, device, micro_batches=self.cfg.grad_accum)

    def _build_data(self) -> ImageDataset:
        data = build("dataset", self.data_node)
        if not isinstance(data, ImageDataset):
            raise RecipeError(f"data: '{self.data_node}' did not build an ImageDataset")
        return data

    def _model_input(self, data: ImageDataset) -> tuple[int, int]:
        """(channels, side) that the model sees: the data's, or the VAE latent's for pixel data."""
        if self.vae is None or data.is_latent:
            return data.channels, data.resolution
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return int(self.vae.config.latent_channels), data.resolution // factor

    # -- resume -----------------------------------------------------------------------------------
    def _resume(self, info: dist_utils.DistInfo, held: contextlib.ExitStack,
                train_step: TrainStep) -> tuple[Path | None, int]:
        """Lock the out_dir (rank 0) and load the checkpoint to continue from: (it or None, its step)."""
        say = self._say(info)
        if info.is_main:
            held.enter_context(locked_out_dir(self.out_dir))
            for stale in ckpt.remove_temporaries(self.out_dir / ckpt.CHECKPOINTS):
                say(f"removed {stale.name}, a checkpoint an interrupted run did not finish writing", highlight=False)
        dist_utils.barrier(info)  # no rank reads checkpoints before the lock is held
        resume_from, state = self._choose_checkpoint(info, train_step)
        if state is None:
            return None, 0
        step = int(state["step"])
        if step < self.cfg.steps:
            saved = state.get("sampler", {})
            if saved.get("global_batch_size") not in (None, self.cfg.global_batch_size):
                say(f"[yellow]warning: global batch size changed ({saved['global_batch_size']} -> "
                    f"{self.cfg.global_batch_size}); the data order differs from the original run")
            say(f"resumed from {resume_from} at step {step}")
        return resume_from, step

    def _choose_checkpoint(self, info: dist_utils.DistInfo,
                           train_step: TrainStep) -> tuple[Path | None, dict[str, Any] | None]:
        """Load the checkpoint to continue from, or (None, None) for a fresh start.

        ``auto`` tries the run's checkpoints newest first. A damaged one (a file missing, truncated,
        unreadable, or weights that are not finite) is skipped with its reason and set aside as
        ``NNNNNNN.damaged`` once an older one loads, so no later save writes over it; when none loads,
        the run stops rather than start over beside them."""
        choice = self.ckpt_cfg.resume
        say = self._say(info)
        if choice == "never":
            existing = ckpt.training_checkpoints(self.out_dir)
            if existing:
                raise CheckpointError(
                    f"{self.out_dir} already holds checkpoints ({existing[-1].name} ...) and checkpoint.resume=never; "
                    f"use checkpoint.resume=auto to continue, or a new out_dir")
            return None, None
        if choice != "auto":
            path = Path(choice).expanduser()
            state = self._load_checkpoint(path, train_step)
            newer = [p for p in ckpt.training_checkpoints(self.out_dir) if int(p.name) > state["step"]]
            if newer:
                raise CheckpointError(
                    f"{self.out_dir} holds {newer[-1].name}, newer than {path} (step {state['step']}); training "
                    f"on would write over it; resume from it (checkpoint.resume=auto) or use a new out_dir")
            return path, state
        skipped: list[tuple[Path, str]] = []
        for directory in reversed(ckpt.training_checkpoints(self.out_dir)):
            try:
                state = self._load_checkpoint(directory, train_step)
            except CheckpointError as exc:
                skipped.append((directory, str(exc)))
                continue
            dist_utils.barrier(info)  # every rank has read the checkpoints before any is renamed
            for bad, reason in skipped:
                moved = ckpt.set_aside(bad, "damaged") if info.is_main else bad
                say(f"[yellow]skipped {escape(str(bad))} ({escape(reason)}); kept it as {moved.name}",
                    highlight=False)
            return directory, state
        if skipped:
            newest, reason = skipped[0]
            raise CheckpointError(f"cannot resume: {reason}; nothing was changed (to start over, move "
                                  f"{newest.parent} away or use a new out_dir)")
        return None, None

    def _load_checkpoint(self, directory: Path, train_step: TrainStep) -> dict[str, Any]:
        model, ema, optimizer = train_step.model, train_step.ema, train_step.optimizer
        saved_config = ckpt.read_model_config(directory)
        try:
            ckpt.load_state_checked(model, ckpt.read_weights(directory / ckpt.MODEL_WEIGHTS),
                                    str(directory / ckpt.MODEL_WEIGHTS))
            ckpt.load_state_checked(ema, ckpt.read_weights(directory / ckpt.EMA_WEIGHTS),
                                    str(directory / ckpt.EMA_WEIGHTS))
        except CheckpointError as exc:
            ours = model.config()
            differ = sorted(k for k in set(saved_config) | set(ours) if saved_config.get(k) != ours.get(k))
            def shown(config: dict[str, Any], key: str) -> str:
                return repr(config[key]) if key in config else "default"

            detail = ", ".join(f"{k}: {shown(saved_config, k)} in the checkpoint vs {shown(ours, k)} in the recipe"
                               for k in differ[:4])
            hint = f" (model settings differ: {detail})" if differ else ""
            raise CheckpointError(f"{exc}{hint}; resume with the recipe that made it, or use a new out_dir") from None
        state = ckpt.read_train_state(directory)
        where = directory / ckpt.TRAIN_STATE
        try:
            optimizer.load_state_dict(state["optimizer"])
        except Exception as exc:  # a crafted state fails in many ways; all mean "does not fit"
            raise CheckpointError(f"{where}: optimizer state does not fit ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        for p, slots in optimizer.state.items():  # load_state_dict checks counts, not shapes
            for name, value in slots.items():
                if not isinstance(value, torch.Tensor):
                    continue
                if value.ndim > 0 and value.shape != p.shape:
                    raise CheckpointError(f"{where}: optimizer state '{name}' has shape {tuple(value.shape)} "
                                          f"for a parameter of shape {tuple(p.shape)}")
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    raise CheckpointError(f"{where}: optimizer state '{name}' holds NaN or infinite values")
        return state

    # -- the loop ---------------------------------------------------------------------------------
    def _loop(self, info: dist_utils.DistInfo, held: contextlib.ExitStack, data: ImageDataset,
              train_step: TrainStep, resume_from: Path | None, step: int) -> TrainResult:
        """Train from ``step`` to train.steps: log, save, sample grids, stop together on a signal."""
        cfg, device, say = self.cfg, info.device, self._say(info)
        model, frozen = train_step.model, train_step.frozen
        sampler = GlobalBatchSampler(len(data), cfg.global_batch_size, rank=info.rank, world_size=info.world_size,
                                     grad_accum=cfg.grad_accum, seed=self.seed, start_step=step)
        loader = DataLoader(data, batch_sampler=sampler, num_workers=cfg.num_workers,
                            pin_memory=device.type == "cuda", persistent_workers=cfg.num_workers > 0,
                            worker_init_fn=ignore_stop_signals)
        slots = info.world_size * cfg.grad_accum

        if info.distributed:
            train_step.net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                     find_unused_parameters=False)
        if cfg.compiles(device.type):
            say("compiling each repeated block once (train.compile"
                + (": auto on CUDA, about 30 s for DiMSUM-L/2 on an H200; set train.compile=false to skip)"
                   if cfg.compile == "auto" else ")"))
            model.compile_regions()

        n_params = sum(p.numel() for p in model.parameters())
        say(f"model {model.config().get('name')}: {n_params / 1e6:.2f}M parameters"
            + (f", {len(frozen)} without gradient frozen ({', '.join(frozen[:2])}{' ...' if len(frozen) > 2 else ''})"
               if frozen else ""))
        say(f"data: {len(data)} items of {data.channels}x{data.resolution}x{data.resolution}, "
            f"{data.num_classes} classes; {info.world_size} rank(s) x {cfg.grad_accum} micro-batch(es) of "
            f"{cfg.global_batch_size // slots} on {device}")

        metrics = MetricsLog(self.out_dir, self.log_cfg.tensorboard,
                             resume_step=step if resume_from is not None else None) if info.is_main else None
        if metrics is not None and metrics.tensorboard_missing:
            say("[yellow]tensorboard is not installed: metrics go to metrics.jsonl only "
                "(pip install -e \".\\[tensorboard]\")")
        if metrics is not None and resume_from is not None:
            metrics.write(step, {"event": "resume", "from": str(resume_from)})
        grid = self._sample_grid(model, data) if info.is_main else None

        generator = torch.Generator(device)
        batches = iter(loader)
        last_saved: Path | None = resume_from
        self._reference_loss: float | None = None
        stop = held.enter_context(StopRequest())
        interval_loss, interval_steps, interval_time, last_loss = 0.0, 0, 0.0, math.nan
        # a log file gets a plain line every log.every steps instead of the terminal's bar
        progress = TaskProgress(self.console, "train", cfg.steps, completed=step, line_every_s=None,
                                enabled=info.is_main)
        speed = 0.0
        try:
            with progress:
                model.train()
                while step < cfg.steps:
                    if device.type == "cpu":
                        make_room()  # threads follow the cores other processes leave free
                    started = time.perf_counter()
                    lr = train_step.set_lr(step, cfg.steps)
                    loss, grad_norm = self._train_step(train_step, batches, generator, info, step, slots)
                    problem = self._divergence(loss, grad_norm)
                    if problem:
                        raise TrainingDiverged(f"training stopped: {problem} at step {step + 1}; nothing was "
                                               f"saved from it{_last_good(last_saved)}")
                    train_step.apply()
                    interval_time += time.perf_counter() - started  # img/s leaves out saving and sampling
                    step += 1
                    interval_loss += loss
                    interval_steps += 1
                    progress.update(step, f"step loss {loss:.4f}" + (f", {speed:.1f} img/s" if speed > 0 else ""))
                    if step % self.log_cfg.every == 0 or step == cfg.steps:
                        speed = interval_steps * cfg.global_batch_size / max(interval_time, 1e-9)
                        last_loss = interval_loss / interval_steps
                        progress.line(f"loss {last_loss:.4f} (mean of {interval_steps} steps), {speed:.1f} img/s")
                        if metrics is not None:
                            metrics.write(step, {"loss": last_loss, "grad_norm": grad_norm, "lr": lr,
                                                 "img_per_s": speed, "epoch": sampler.epoch_of(step - 1)})
                        interval_loss, interval_steps, interval_time = 0.0, 0, 0.0
                    if step % self.ckpt_cfg.every == 0 or step == cfg.steps:
                        last_saved = self._save(info, train_step, sampler, step, last_saved)
                        progress.print(f"saved {last_saved}")
                    every = self.log_cfg.sample_every
                    if grid is not None and (step == cfg.steps and every >= 0 or every > 0 and step % every == 0):
                        path = grid(train_step.ema, self.out_dir / "samples" / f"{ckpt.checkpoint_name(step)}.png")
                        if metrics is not None:
                            metrics.write(step, {"samples": str(path)})
                    if step < cfg.steps and not dist_utils.all_ok(stop.signal is None, info):
                        if last_saved is None or last_saved.name != ckpt.checkpoint_name(step):
                            last_saved = self._save(info, train_step, sampler, step, last_saved)
                        raise TrainingInterrupted(f"stopped by {stop.signal or 'a signal to another rank'} at "
                                                  f"step {step}; saved {last_saved}: a re-run resumes from it")
        finally:
            if metrics is not None:
                metrics.close()
        return TrainResult(step, last_loss, last_saved, frozen)

    def _train_step(self, train_step: TrainStep, batches: Any, generator: torch.Generator,
                    info: dist_utils.DistInfo, step: int, slots: int) -> tuple[float, float]:
        """Forward/backward over this rank's micro-batches; returns (mean loss over ranks, grad norm)."""
        cfg, device = self.cfg, info.device
        total = torch.zeros((), device=device)
        for j in range(cfg.grad_accum):
            try:
                x1, y = next(batches)
            except DimsumError as exc:
                raise _loader_error(exc) from None
            data_seed, torch_seed = slot_seeds(self.seed, info.rank * cfg.grad_accum + j, slots, step)
            generator.manual_seed(data_seed)
            torch.manual_seed(torch_seed)  # drop-path and any other global randomness of this slot
            x1 = x1.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if self.encode_pixels:
                from dimsum_core.vae import encode

                x1 = encode(self.vae, x1, generator)
            # DDP all-reduces the gradients once, after the step's last micro-batch
            total += train_step.micro_batch(x1, y, generator, sync=j == cfg.grad_accum - 1 or not info.distributed)
        grad_norm = train_step.clip()
        loss_mean = dist_utils.mean_over_ranks(total, info)
        return float(loss_mean.item()), float(grad_norm.item())

    def _sample_grid(self, model: FlowModel, data: ImageDataset) -> SampleGrid | None:
        if self.log_cfg.sample_every < 0 or self.log_cfg.sample_n < 1:
            return None
        decode = None
        if data.is_latent or self.vae is not None:
            if self.vae is None:
                self.console.print("[yellow]no sample grids: the data is latents and no `vae:` directory "
                                   "is set to decode them")
                return None
            from dimsum_core.vae import decode as vae_decode

            vae = self.vae

            def decode(z: torch.Tensor) -> torch.Tensor:
                return vae_decode(vae, z)
        shape = (model.in_channels, model.input_size, model.input_size)
        return SampleGrid(self.log_cfg.sampler, self.log_cfg.sample_n, self.log_cfg.cfg_scale, self.seed,
                          shape, model.num_classes if data.num_classes > 0 else 0, decode)

    def _divergence(self, loss: float, grad_norm: float) -> str | None:
        """Why a step's loss and gradient norm mean the run diverged, or None. The first loss of this
        process is the yardstick: a healthy run never ends up three orders of magnitude above it."""
        if not math.isfinite(loss):
            return f"loss is {loss}"
        if not math.isfinite(grad_norm):
            return f"gradient norm is {grad_norm}"
        if self._reference_loss is None:
            self._reference_loss = loss
        if loss > DIVERGENCE_FACTOR * max(self._reference_loss, 1e-6):
            return f"loss is {loss:.3g}, over {DIVERGENCE_FACTOR:g}x the first loss of this run ({self._reference_loss:.3g})"
        return None

    @torch.no_grad()
    def _probe_loss(self, train_step: TrainStep, info: dist_utils.DistInfo) -> float:
        """The loss of the current weights on the last micro-batch (dropout off): what a checkpoint of them
        would resume from. Touches no random state, so resumed runs stay bitwise identical."""
        model = train_step.model
        x_t, t, y, u_t = train_step.last_batch
        model.eval()
        with train_step.autocast:
            prediction = model(x_t, t, y)
        model.train()
        loss = train_step.objective.loss(prediction, u_t).mean()
        return float(dist_utils.mean_over_ranks(loss, info).item())

    def _save(self, info: dist_utils.DistInfo, train_step: TrainStep, sampler: GlobalBatchSampler, step: int,
              last_saved: Path | None) -> Path:
        """Rank 0 writes the checkpoint atomically, if its weights still give a sane loss; every rank
        learns whether it worked."""
        problem = self._divergence(self._probe_loss(train_step, info), 0.0)
        if problem:
            raise TrainingDiverged(f"training stopped: with the weights of step {step} the {problem}; they were "
                                   f"not saved{_last_good(last_saved)}")
        final = self.out_dir / ckpt.CHECKPOINTS / ckpt.checkpoint_name(step)
        error = ""
        if info.is_main:
            state = {
                "format": STATE_FORMAT, "step": step, "epoch": sampler.epoch_of(step),
                "optimizer": train_step.optimizer.state_dict(),
                "sampler": {"seed": self.seed, "global_batch_size": self.cfg.global_batch_size,
                            "steps_per_epoch": sampler.steps_per_epoch,
                            "position": step % sampler.steps_per_epoch},
                # every random number of a step derives from (seed, slot, step): nothing else to restore
                "rng": {"scheme": "per-step", "seed": self.seed, "slots": info.world_size * self.cfg.grad_accum},
                "frozen": list(train_step.frozen),
            }

            def write(tmp: Path) -> None:
                ckpt.write_weights(tmp, train_step.model, train_step.ema)
                if self.recipe_yaml is not None:
                    (tmp / ckpt.RECIPE).write_text(self.recipe_yaml)
                ckpt.write_train_state(tmp, state)

            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                ckpt.atomic_directory_write(final, write)
                ckpt.prune_checkpoints(self.out_dir, self.ckpt_cfg.keep_last)
            except CheckpointError as exc:
                error = str(exc)
            except (OSError, SafetensorError) as exc:
                why = os_problem(exc) if isinstance(exc, OSError) else str(exc)
                kept = f"the previous checkpoint {last_saved} is intact" if last_saved else "no earlier checkpoint exists"
                error = f"cannot write checkpoint {final} ({why}); {kept}; then resume"
        error = dist_utils.broadcast_text(error, info)
        if error:
            raise CheckpointError(error)
        return final
