"""The ``train`` job: ``dimsum run RECIPE`` calls it with the recipe's top-level keys."""

from __future__ import annotations

from typing import Any

import torch

from dimsum_core.config.nodes import build, split_node
from dimsum_core.config.spec import DatasetSpec, ModelSpec, ObjectiveSpec, Seed
from dimsum_core.context import RunContext
from dimsum_core.errors import DimsumError, RecipeError
from dimsum_core.models import create_model
from dimsum_core.plugin.manager import registry
from dimsum_core.train.config import CheckpointConfig, LogConfig, TrainConfig, as_config
from dimsum_core.train.loop import Trainer, TrainResult, check_fit
from dimsum_core.train.step import cuda_graph_problem


def check_train(recipe: dict[str, Any]) -> list[str]:
    """What `dimsum validate` checks beyond the keys and values: the model is built on the meta device (no
    memory, so every shape and grid constraint of every component is tried, scans included), the sampler
    of the sample grids is built, and datasets that open quickly are opened to check that the model fits."""
    model_node, data_node = recipe.get("model"), recipe.get("data")
    options = {key: as_config(cls, recipe.get(key), key) for key, cls in
               (("train", TrainConfig), ("checkpoint", CheckpointConfig), ("log", LogConfig))}
    cfg = options["train"]
    problems = []
    if cfg.global_batch_size % cfg.grad_accum:
        problems.append(f"train.global_batch_size={cfg.global_batch_size} does not split into "
                        f"train.grad_accum={cfg.grad_accum} micro-batches; use a multiple of it")
    device_type = "cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu"
    if problem := cuda_graph_problem(cfg, device_type, cfg.grad_accum):
        problems.append(problem)
    try:
        build("sampler", options["log"].sampler)
    except (DimsumError, ValueError) as exc:
        problems.append(f"log.sampler: {exc}")
    try:
        with torch.device("meta"):
            model = create_model(model_node)
    except DimsumError as exc:
        return problems + [str(exc) if str(exc).startswith("model") else f"model: {exc}"]
    except (ValueError, TypeError, RuntimeError, AssertionError) as exc:
        return problems + [f"model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"]
    data = None
    name, _ = split_node(data_node, "data")
    if name in registry("dataset") and getattr(registry("dataset").get(name).factory, "opens_quickly", False):
        try:
            data = build("dataset", data_node)
        except DimsumError as exc:
            return problems + [str(exc) if str(exc).startswith("data") else f"data: {exc}"]
        if len(data) < cfg.global_batch_size:
            problems.append(f"data: {len(data)} items are fewer than one global batch "
                            f"(train.global_batch_size={cfg.global_batch_size}); lower it or add data")
    has_vae = recipe.get("vae") is not None  # what the model sees of pixel data then needs the VAE loaded
    seen = (data.channels, data.resolution) if data is not None and not has_vae else None
    try:
        check_fit(model, data, cfg.label_dropout, seen, has_vae)
    except RecipeError as exc:
        problems.append(str(exc))
    return problems


def train(ctx: RunContext, /, *, out_dir: str, model: ModelSpec, data: DatasetSpec,
          objective: ObjectiveSpec = "gvp", seed: Seed = 0, vae: str | None = None,
          train: TrainConfig = TrainConfig(), checkpoint: CheckpointConfig = CheckpointConfig(),
          log: LogConfig = LogConfig()) -> TrainResult:
    """Train a flow model with velocity matching (AdamW, EMA, DDP under torchrun, resumable checkpoints).

    ``vae``: a local diffusers AutoencoderKL directory; pixel data is then encoded to latents on the
    fly (the official CelebA-HQ / LSUN recipe), and sample grids of latent data are decoded with it.
    """
    trainer = Trainer(out_dir=out_dir, model=model, data=data, objective=objective, seed=seed, vae=vae,
                      train=as_config(TrainConfig, train, "train"),
                      checkpoint=as_config(CheckpointConfig, checkpoint, "checkpoint"),
                      log=as_config(LogConfig, log, "log"), recipe_yaml=ctx.recipe.to_yaml(), console=ctx.console)
    result = trainer.run()
    if result.trained:  # a finished run said so in one line already
        ctx.console.print(f"done: step {result.step}, loss {result.loss:.4f} (mean of the last logged interval), "
                          f"checkpoint {result.checkpoint}", soft_wrap=True)
    return result


train.check = check_train  # type: ignore[attr-defined]
