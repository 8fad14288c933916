"""The option groups of the ``train`` job (recipe keys ``train:``, ``checkpoint:``, ``log:``).

Defaults are the official DiMSUM settings (its `train.py` and `scripts/train.sh`): AdamW lr 1e-4, no weight decay, betas
(0.9, 0.999), constant LR (``lr_schedule``), gradient clipping 2.0, EMA 0.9999, fp32 with TF32 matmuls.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from dimsum_core.config.spec import (
    Fraction,
    NonNegative,
    NonNegativeInt,
    PositiveInt,
    Range,
    SamplerSpec,
    UnitInterval,
)
from dimsum_core.errors import RecipeError
from dimsum_core.nn.precision import Precision
from dimsum_core.train.schedule import LrSchedule, lr_at

Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class TrainConfig:
    steps: PositiveInt = 400_000
    #: summed over ranks and accumulation micro-batches
    global_batch_size: PositiveInt = 256
    lr: NonNegative = 1e-4
    #: constant (official), or cosine / linear decay to lr * min_lr_ratio by the last step
    lr_schedule: LrSchedule = "constant"
    #: linear warm-up from ~0 to lr over the first steps (any schedule)
    warmup_steps: NonNegativeInt = 0
    #: the lr the decay ends at, as a fraction of train.lr
    min_lr_ratio: UnitInterval = 0.0
    weight_decay: NonNegative = 0.0
    betas: tuple[Fraction, Fraction] = (0.9, 0.999)
    #: max gradient norm; null (or 0) disables clipping (the norm is still logged)
    grad_clip: NonNegative | None = 2.0
    ema_decay: UnitInterval = 0.9999
    #: probability of replacing a label by the null class (classifier-free guidance); 0 = off
    label_dropout: Fraction = 0.0
    #: tf32: fp32 weights with TF32 matmuls (official); bf16: autocast; fp32: strict
    precision: Precision = "tf32"
    #: torch.compile the model, each repeated block once (FlowModel.compile_regions): auto = on a CUDA
    #: device with Triton, where it was faster than eager at every size measured (docs/benchmarks.md); off
    #: on the CPU
    compile: bool | Literal["auto"] = "auto"
    #: replay each step from CUDA graphs (forward + backward + clipping, then AdamW + EMA): removes the
    #: launch overhead that dominates small models; CUDA only, one process, grad_accum 1, fixed batch shape
    cuda_graph: bool = False
    grad_accum: PositiveInt = 1
    #: data loading processes per rank; more than a few dozen only costs memory
    num_workers: Annotated[int, Range(ge=0, le=64)] = 4
    device: Device = "auto"

    def compiles(self, device_type: str) -> bool:
        """Whether a run on ``device_type`` ("cuda", "cpu") compiles the model: auto = on a CUDA device
        where Triton, inductor's GPU code generator, is installed (CUDA builds of torch bring it)."""
        if self.compile == "auto":
            return device_type == "cuda" and importlib.util.find_spec("triton") is not None
        return self.compile

    def lr_for(self, step: int, total_steps: int) -> float:
        """The lr of optimizer step ``step`` under this config's schedule (a pure function of the step)."""
        return lr_at(step, lr=self.lr, total_steps=total_steps, schedule=self.lr_schedule,
                     warmup_steps=self.warmup_steps, min_lr_ratio=self.min_lr_ratio)


@dataclass(frozen=True)
class CheckpointConfig:
    #: save every this many steps (and at the end)
    every: PositiveInt = 10_000
    #: keep the newest N checkpoints; 0 keeps all
    keep_last: NonNegativeInt = 3
    #: auto: continue from the newest complete checkpoint in out_dir; never: refuse if one exists;
    #: or the path of a checkpoint directory
    resume: str = "auto"


@dataclass(frozen=True)
class LogConfig:
    #: metrics.jsonl / progress interval in steps
    every: PositiveInt = 100
    #: sample grid interval in steps (EMA weights); 0 = only at the end, -1 = never
    sample_every: Annotated[int, Range(ge=-1)] = 10_000
    sample_n: NonNegativeInt = 16
    sampler: SamplerSpec = field(default_factory=lambda: {"name": "euler", "steps": 50})
    cfg_scale: float = 1.0
    #: TensorBoard events: auto = when the tensorboard package is installed (silently skipped otherwise);
    #: true = also say when it is missing; false = never
    tensorboard: bool | Literal["auto"] = "auto"


T = TypeVar("T")


def as_config(cls: type[T], value: T | dict[str, Any] | None, key: str) -> T:
    """A recipe mapping (or None, or an instance) -> the dataclass, checked as `dimsum validate` checks it
    (keys, types, ranges), with a one-line error."""
    from dimsum_core.config.validate import check_settings

    if value is None:
        return cls()
    if isinstance(value, cls):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if not isinstance(value, dict):
        raise RecipeError(f"{key}: expected a mapping, got {value!r}")
    check_settings(cls, value, key)
    return cls(**value)
