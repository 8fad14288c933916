"""One training step of flow matching, written once: `dimsum run` (:mod:`dimsum_core.train.loop`), the
convergence study (``benchmarks/convergence/runner.py``) and `dimsum bench` (:mod:`dimsum_core.gpu_benchmark`)
all train through :class:`TrainStep`, so what they compare and time is the same step.

    per micro-batch  noise x0, time t and label dropout from one generator -> (x_t, u_t) on the
                     objective's path -> forward (bf16 autocast for precision bf16) -> mean loss -> backward
    per step         gradient norm, clipped to train.grad_clip -> AdamW -> EMA of every parameter

Seeding is the caller's (which generator state a micro-batch starts from), and so are the TF32 flags
(:func:`dimsum_core.nn.precision.precision_scope` around the run).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from dimsum_core.interfaces.model import FlowModel
from dimsum_core.interfaces.objective import Objective
from dimsum_core.nn.precision import autocast
from dimsum_core.train.config import TrainConfig
from dimsum_core.train.ema import create_ema, update_ema


def find_unused_parameters(model: FlowModel, device: torch.device) -> list[str]:
    """Names of trainable parameters that get no gradient from a forward/backward pass.

    The official DiMSUM has such parameters (each Mamba mixer's ``cond_proj``, whose output
    the official kernel overwrites):
    they would make DDP with ``find_unused_parameters=False`` fail, and AdamW skips them anyway.
    """
    g = torch.Generator().manual_seed(0)
    n = 2
    x = torch.randn(n, model.in_channels, model.input_size, model.input_size, generator=g).to(device)
    t = torch.rand(n, generator=g).to(device)
    y = torch.zeros(n, dtype=torch.long, device=device) if model.num_classes > 0 else None
    was_training = model.training
    model.train()
    model(x, t, y).square().mean().backward()
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return unused


class TrainStep:
    """The optimizer state of one model and the step that updates it.

    Building it freezes the parameters that get no gradient (:attr:`frozen`), copies the EMA (the
    initial weights, before any step) and sets AdamW on the parameters that train; parameters the
    model froze itself (DiT's fixed sin-cos ``pos_embed``) stay frozen. ``ema=False`` leaves the EMA
    out (the GPU benchmark times the optimizer step alone). ``micro_batches``: how many micro-batches
    one step accumulates (their losses are averaged).
    """

    def __init__(self, model: FlowModel, objective: Objective, cfg: TrainConfig, device: torch.device, *,
                 ema: bool = True, micro_batches: int = 1):
        self.model, self.objective, self.cfg, self.micro_batches = model, objective, cfg, micro_batches
        self.frozen = find_unused_parameters(model, device)
        for name, p in model.named_parameters():
            if name in self.frozen:
                p.requires_grad_(False)
        self.ema: nn.Module | None = create_ema(model) if ema else None
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, betas=tuple(cfg.betas), eps=1e-8,
                                           weight_decay=cfg.weight_decay)
        #: what runs the forward pass: the model or its DDP wrapper (train.compile compiles the model in place)
        self.net: nn.Module = model
        self.autocast = autocast(cfg.precision, device.type)
        #: (x_t, t, y, u_t) of the last micro-batch, for a loss probe of the weights without new noise
        self.last_batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor] | None = None

    def set_lr(self, step: int, total_steps: int) -> float:
        """Set and return the lr of optimizer step ``step`` (a pure function of the step, for resumes)."""
        lr = self.cfg.lr_for(step, total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def micro_batch(self, x1: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                    sync: bool = True) -> torch.Tensor:
        """Forward and backward of one micro-batch of data ``x1`` with labels ``y``; every random number
        (noise, t, label dropout) comes from ``generator``, in that order. ``sync=False`` keeps DDP from
        all-reducing the gradients (a micro-batch before the step's last). Returns the detached loss
        (already divided by ``micro_batches``)."""
        model, objective, device, n = self.model, self.objective, x1.device, x1.shape[0]
        x0 = torch.randn(x1.shape, generator=generator, device=device)
        t = objective.sample_t(n, generator=generator, device=device)
        if self.cfg.label_dropout > 0:
            drop = torch.rand(n, generator=generator, device=device) < self.cfg.label_dropout
            y = torch.where(drop, torch.full_like(y, model.num_classes), y)
        x_t, u_t = objective.path(x0, x1, t)
        labels = y if model.num_classes > 0 else None
        self.last_batch = (x_t, t, labels, u_t)
        with contextlib.nullcontext() if sync else self.net.no_sync():  # type: ignore[operator]
            with self.autocast:
                prediction = self.net(x_t, t, labels)
            loss = objective.loss(prediction, u_t).mean() / self.micro_batches
            loss.backward()
        return loss.detach()

    def clip(self) -> torch.Tensor:
        """The gradient norm, after clipping it to ``grad_clip`` (null or 0: measured only)."""
        if self.cfg.grad_clip is not None and self.cfg.grad_clip > 0:
            return torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in self.params]))

    def apply(self) -> None:
        """The AdamW step on the accumulated gradients, then the EMA update."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            update_ema(self.ema, self.model, self.cfg.ema_decay)

    def __call__(self, x1: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole step on one micro-batch: (detached loss, gradient norm)."""
        loss = self.micro_batch(x1, y, generator)
        grad_norm = self.clip()
        self.apply()
        return loss, grad_norm
