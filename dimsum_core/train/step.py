"""One training step of flow matching, written once: `dimsum run` (:mod:`dimsum_core.train.loop`), the
convergence study (``benchmarks/convergence/runner.py``) and `dimsum bench` (:mod:`dimsum_core.gpu_benchmark`)
all train through :class:`TrainStep`, so what they compare and time is the same step.

    per micro-batch  noise x0, time t and label dropout from one generator -> (x_t, u_t) on the
                     objective's path -> forward (bf16 autocast for precision bf16) -> mean loss -> backward
    per step         gradient norm, clipped to train.grad_clip -> AdamW -> EMA of every parameter

With ``train.cuda_graph`` the step replays two CUDA graphs, captured on its first call: forward, backward
and clipping, then AdamW and the EMA (two, so a caller can look at the loss before the update lands).
The random draws stay eager, so a graphed run sees the same noise, t and labels as an eager one.

Seeding is the caller's (which generator state a micro-batch starts from), and so are the TF32 flags
(:func:`dimsum_core.nn.precision.precision_scope` around the run).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from dimsum_core.errors import DataError, RecipeError
from dimsum_core.graph_capture import capture
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


def cuda_graph_problem(cfg: TrainConfig, device_type: str, micro_batches: int) -> str | None:
    """Why ``train.cuda_graph`` cannot capture this step, or None."""
    if not cfg.cuda_graph:
        return None
    if device_type != "cuda":
        return f"train.cuda_graph needs a CUDA device (the run would train on {device_type}); set train.cuda_graph=false"
    if micro_batches != 1:
        return (f"train.cuda_graph captures one micro-batch a step, not train.grad_accum={micro_batches}; "
                f"set train.grad_accum=1 or train.cuda_graph=false")
    return None


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
        if problem := cuda_graph_problem(cfg, device.type, micro_batches):
            raise RecipeError(problem)
        self.frozen = find_unused_parameters(model, device)
        for name, p in model.named_parameters():
            if name in self.frozen:
                p.requires_grad_(False)
        self.ema: nn.Module | None = create_ema(model) if ema else None
        self.params = [p for p in model.parameters() if p.requires_grad]
        # fused on CUDA: one pass over parameters, gradients and moments instead of the default's ~18
        # (per-tensor-list ops); the same update up to float32 rounding
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.lr, betas=tuple(cfg.betas), eps=1e-8,
                                           weight_decay=cfg.weight_decay, capturable=cfg.cuda_graph,
                                           fused=device.type == "cuda")
        #: what runs the forward pass: the model or its DDP wrapper (train.compile compiles the model in place)
        self.net: nn.Module = model
        self.autocast = autocast(cfg.precision, device.type)
        #: (x_t, t, y, u_t) of the last micro-batch, for a loss probe of the weights without new noise
        self.last_batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor] | None = None
        self.graphs: StepGraphs | None = None  # captured by the first step when cfg.cuda_graph

    def set_lr(self, step: int, total_steps: int) -> float:
        """Set and return the lr of optimizer step ``step`` (a pure function of the step, for resumes)."""
        lr = self.cfg.lr_for(step, total_steps)
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):  # a captured AdamW reads its lr from the device
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        return lr

    def draw(self, x1: torch.Tensor, y: torch.Tensor,
             generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The random numbers of one micro-batch, in this order: noise x0, time t, label dropout."""
        n, device = x1.shape[0], x1.device
        x0 = torch.randn(x1.shape, generator=generator, device=device)
        t = self.objective.sample_t(n, generator=generator, device=device)
        if self.cfg.label_dropout > 0:
            drop = torch.rand(n, generator=generator, device=device) < self.cfg.label_dropout
            y = torch.where(drop, torch.full_like(y, self.model.num_classes), y)
        return x0, t, y

    def micro_batch(self, x1: torch.Tensor, y: torch.Tensor, generator: torch.Generator,
                    sync: bool = True) -> torch.Tensor:
        """Forward and backward of one micro-batch of data ``x1`` with labels ``y``; every random number
        (noise, t, label dropout) comes from ``generator``, in that order. ``sync=False`` keeps DDP from
        all-reducing the gradients (a micro-batch before the step's last). Returns the detached loss
        (already divided by ``micro_batches``)."""
        x0, t, y = self.draw(x1, y, generator)
        if self.cfg.cuda_graph:
            if self.graphs is None:
                self.graphs = StepGraphs(self, (x1, x0, t, y))
            return self.graphs.gradients((x1, x0, t, y))
        return self.loss_backward(x1, x0, t, y, sync)

    def loss_backward(self, x1: torch.Tensor, x0: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                      sync: bool = True) -> torch.Tensor:
        """The micro-batch after its draws: path, forward, loss, backward; the detached loss."""
        x_t, u_t = self.objective.path(x0, x1, t)
        labels = y if self.model.num_classes > 0 else None
        self.last_batch = (x_t, t, labels, u_t)
        with contextlib.nullcontext() if sync else self.net.no_sync():  # type: ignore[operator]
            with self.autocast:
                prediction = self.net(x_t, t, labels)
            loss = self.objective.loss(prediction, u_t).mean() / self.micro_batches
            loss.backward()
        return loss.detach()

    def clip(self) -> torch.Tensor:
        """The gradient norm, after clipping it to ``grad_clip`` (null or 0: measured only)."""
        if self.graphs is not None:  # measured and clipped by the replay of micro_batch
            return self.graphs.grad_norm.clone()
        if self.cfg.grad_clip is not None and self.cfg.grad_clip > 0:
            return torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in self.params]))

    def apply(self) -> None:
        """The AdamW step on the accumulated gradients, then the EMA update."""
        if self.graphs is not None:
            self.graphs.update.replay()
            return
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


class StepGraphs:
    """The two CUDA graphs of a :class:`TrainStep`: ``grads`` (loss, backward, clipping) and ``update``
    (AdamW and EMA), replayed on static copies of each micro-batch's (x1, x0, t, y).

    Capturing needs a few eager steps first (they compile, autotune and create AdamW's state); they
    run on throwaway inputs, so the weights, the EMA, AdamW's state and the CUDA RNG are put back
    afterwards, in place, and the first replayed step is the run's first step.
    """

    WARMUP = 2

    def __init__(self, step: TrainStep, batch: tuple[torch.Tensor, ...]):
        if isinstance(step.net, torch.nn.parallel.DistributedDataParallel):
            raise RecipeError("train.cuda_graph captures one process's step, not DDP's; set train.cuda_graph=false "
                              "to train on several GPUs")
        # the step is not kept: it holds these graphs, and a cycle would leave freeing them (cudaGraphExecDestroy,
        # their memory pool) to the cycle collector, at any moment, even inside another capture
        self.static = tuple(x.clone() for x in batch)
        opt = step.optimizer
        for group in opt.param_groups:  # a captured AdamW must read a changing lr from the device
            group["lr"] = torch.tensor(float(group["lr"]), device=self.static[0].device)
        opt.register_state_dict_post_hook(_float_lr)
        kept = self._state(step)
        saved = [x.clone() for x in kept]
        rng = torch.cuda.get_rng_state()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP):
                opt.zero_grad(set_to_none=True)
                step.loss_backward(*self.static)
                step.clip()
                opt.step()
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for x, s in zip(kept, saved, strict=True):
                x.copy_(s)
            for state in opt.state.values():  # created by the warm-up: a fresh AdamW's state is all zeros
                if not any(v is x for v in state.values() for x in kept):
                    for v in state.values():
                        v.zero_()
        torch.cuda.set_rng_state(rng)
        opt.zero_grad(set_to_none=True)
        pool = torch.cuda.graph_pool_handle()
        self.grads, self.update = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        with capture(self.grads, pool=pool):
            self.loss = step.loss_backward(*self.static)
            self.grad_norm = step.clip()
        with capture(self.update, pool=pool):
            opt.step()
            if step.ema is not None:
                update_ema(step.ema, step.model, step.cfg.ema_decay)

    @staticmethod
    def _state(step: TrainStep) -> list[torch.Tensor]:
        """Every tensor a step changes that existed before the warm-up."""
        tensors = [p.data for p in step.model.parameters()] + list(step.model.buffers())
        if step.ema is not None:
            tensors += [p.data for p in step.ema.parameters()] + list(step.ema.buffers())
        return tensors + [v for state in step.optimizer.state.values() for v in state.values()
                          if isinstance(v, torch.Tensor)]

    def gradients(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Replays ``grads`` on ``batch``; the loss."""
        for static, x in zip(self.static, batch, strict=True):
            if x.shape != static.shape:
                raise DataError(f"train.cuda_graph replays a step captured for batches of shape {tuple(static.shape)}, "
                                f"got {tuple(x.shape)}; keep the batch size fixed or set train.cuda_graph=false")
            static.copy_(x)
        self.grads.replay()
        return self.loss.clone()


def _float_lr(optimizer: torch.optim.Optimizer, state: dict) -> dict:  # noqa: ARG001
    """Checkpoints keep a plain lr, so an eager (uncaptured) AdamW can resume from them."""
    for group in state["param_groups"]:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"] = float(group["lr"])
    return state
