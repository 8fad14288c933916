"""The ``train`` job: ``dimsum run RECIPE`` calls it with the recipe's top-level keys."""

from __future__ import annotations

from dimsum_core.config.spec import Spec
from dimsum_core.context import RunContext
from dimsum_core.train.config import CheckpointConfig, LogConfig, TrainConfig, as_config
from dimsum_core.train.loop import Trainer, TrainResult

# aliases, so linters read the annotations as types rather than as forward-reference strings
ModelNode = Spec["model"]
DatasetNode = Spec["dataset"]
ObjectiveNode = Spec["objective"]


def train(ctx: RunContext, /, *, out_dir: str, model: ModelNode, data: DatasetNode,
          objective: ObjectiveNode = "gvp", seed: int = 0, vae: str | None = None,
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
        ctx.console.print(f"done: step {result.step}, loss {result.loss:.4f}, checkpoint {result.checkpoint}")
    return result
