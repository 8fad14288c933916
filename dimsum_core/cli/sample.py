"""``dimsum sample``: draw images from a checkpoint into a PNG grid, a folder of PNGs or an .npz."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from dimsum_core.cli.outputs import check_new_output, overwrite_option
from dimsum_core.config.load import parse_assignments
from dimsum_core.errors import DimsumError
from dimsum_core.nn.precision import PRECISIONS
from dimsum_core.progress import TaskProgress
from dimsum_core.sampling.generate import (
    GeneratedBatch,
    SamplingStats,
    gather_to_main,
    generate,
    merge_batches,
    rank_indices,
)
from dimsum_core.sampling.loading import LoadedCheckpoint, open_checkpoint
from dimsum_core.sampling.outputs import check_output, grid_columns, write_grid, write_npz, write_pngs
from dimsum_core.sampling.sampler_settings import resolve_sampler
from dimsum_core.train.distributed import DistInfo, barrier, init_distributed, leave_together


class FiniteFloat(click.ParamType):
    """A float option that refuses NaN and infinity (a NaN guidance scale samples black images)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


FINITE = FiniteFloat()


def sampling_options(command: Callable) -> Callable:
    """The options shared by ``dimsum sample`` and ``dimsum eval`` that decide what is drawn."""
    decorators = [
        click.option("--sampler", default="dopri5", show_default=True,
                     help="sampler plugin: dopri5 (official), ode, euler, heun, euler-maruyama"),
        click.option("--steps", type=click.IntRange(min=1), help="step count (steps, or num_steps for ode/dopri5)"),
        click.option("--sampler-opt", "sampler_opts", multiple=True, metavar="KEY=VALUE",
                     help="other sampler settings, e.g. atol=1e-5, method=rk4, diffusion=linear"),
        click.option("--cfg", "cfg_scale", type=FINITE, default=1.0, show_default=True,
                     help="classifier-free guidance scale (official FID: 1.4; visuals: 4.0)"),
        click.option("--guide-channels", type=click.IntRange(min=1),
                     help="guide only the first K channels as DiT does (default: all channels)"),
        click.option("--class", "classes", type=click.IntRange(min=0), multiple=True,
                     help="class label(s), cycled over the samples (default: random per sample)"),
        click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True),
        click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
                     help="samples per forward, per rank"),
        click.option("--no-ema", is_flag=True, help="use the raw weights instead of the EMA"),
        click.option("--vae", type=click.Path(), help="local diffusers AutoencoderKL directory (latent models)"),
        click.option("--precision", type=click.Choice(PRECISIONS), default="tf32",
                     show_default=True, help="tf32: fp32 with TF32 matmuls on CUDA (official)"),
        click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True),
        click.option("--cuda-graph", is_flag=True,
                     help="replay the forward from CUDA graphs (GPU; much faster at small batch, same results)"),
        click.option("--compile", "compile_", is_flag=True,
                     help="torch.compile the model's blocks first (as train.compile; ~30 s once for "
                          "DiMSUM-L/2 on an H200); with --cuda-graph the graphs replay the compiled kernels"),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


@dataclass
class SamplingRun:
    """What one ``dimsum sample`` / ``dimsum eval`` run draws, and how."""

    checkpoint: LoadedCheckpoint
    sampler_settings: dict[str, Any]
    cfg_scale: float
    guide_channels: int | None
    classes: list[int]
    seed: int
    precision: str

    def record(self) -> dict[str, Any]:
        """The settings that decide the samples (for result JSON files)."""
        return {"sampler": self.sampler_settings, "guidance_scale": self.cfg_scale,
                "guide_channels": self.guide_channels, "classes": self.classes or None, "seed": self.seed,
                "precision": self.precision, "ema": self.checkpoint.weights_file.name.startswith("ema")}


def start(checkpoint: Path, n: int, *, sampler: str, steps: int | None, sampler_opts: tuple[str, ...],
          cfg_scale: float, guide_channels: int | None, classes: tuple[int, ...], seed: int,
          batch_size: int, no_ema: bool, vae: str | None, precision: str, device: str,
          cuda_graph: bool = False, compile_: bool = False) -> tuple[DistInfo, SamplingRun, Any]:
    """Join torchrun's process group (if any), load, and return this rank's batch iterator."""
    if n < 1:
        raise DimsumError(f"--n must be positive, got {n}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise DimsumError("--device cuda, but no CUDA device is available; use --device auto or cpu")
    info = init_distributed(device)
    if cuda_graph and info.device.type != "cuda" and info.is_main:
        click.echo(f"note: --cuda-graph needs a CUDA device; sampling on the {info.device.type} runs the plain "
                   f"forward", err=True)
    loaded = open_checkpoint(checkpoint, ema=not no_ema, device=info.device, vae=vae)
    if loaded.path != Path(checkpoint).expanduser() and info.is_main:
        click.echo(f"checkpoint: {loaded.path}", err=True)
    node = {"name": sampler, **parse_assignments(sampler_opts, "--sampler-opt")}
    built, settings = resolve_sampler(node, steps)
    # TF32 is a CUDA matmul mode: elsewhere the run computes in plain float32, so results record fp32
    ran = "fp32" if precision == "tf32" and info.device.type != "cuda" else precision
    run = SamplingRun(loaded, settings, cfg_scale, guide_channels, list(classes), seed, ran)
    batches = generate(loaded.model, built, rank_indices(n, info.rank, info.world_size), seed=seed,
                       batch_size=batch_size, cfg_scale=cfg_scale, guide_channels=guide_channels,
                       classes=list(classes), decode=loaded.decode, precision=precision,
                       cuda_graph=cuda_graph, compile=compile_)
    return info, run, batches


def report_table(run: SamplingRun, stats: SamplingStats, extra: dict[str, str] | None = None) -> Table:
    table = Table(title="sampling", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    sampler = run.sampler_settings
    options = ", ".join(f"{k}={v}" for k, v in sampler.items() if k != "name")
    table.add_row("sampler", f"{sampler['name']} ({options})" if options else sampler["name"])
    table.add_row("guidance scale", f"{run.cfg_scale:g}")
    table.add_row("samples", str(stats.samples))
    table.add_row("mean NFE", f"{stats.mean_nfe:.1f}  (a guided cond+null pair counts once)")
    table.add_row("seconds / image", f"{stats.seconds_per_image:.4f}  (device time, summed over ranks)")
    for key, value in (extra or {}).items():
        table.add_row(key, value)
    return table


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="FILE.png (grid), FILE.npz (ADM arr_0 NHWC uint8 + arr_1 labels) or a DIRECTORY of PNGs")
@click.option("-n", "--n", "--num-samples", "n", type=int, default=16, show_default=True,
              help="number of samples (under torchrun write -n or --num-samples: torchrun takes --n as its own)")
@sampling_options
@click.option("--nrow", type=click.IntRange(min=1),
              help="images per grid row (default: one column per --class, else near-square without empty cells)")
@click.option("--upscale", type=click.IntRange(min=1),
              help="enlarge each tile of a .png grid this many times, nearest-neighbour (default: tiles under "
                   "64 px up to at least 64 px; 1 keeps pixels exact; .npz and folders are always exact)")
@overwrite_option()
@click.option("--report", is_flag=True, help="print mean NFE and seconds per image")
def sample(checkpoint: Path, out: Path, n: int, nrow: int | None, upscale: int | None, overwrite: bool,
           report: bool, **options: Any) -> None:
    """Sample N images from CHECKPOINT (EMA weights by default; official sampler dopri5).

    CHECKPOINT is a checkpoint directory, or a training run's out_dir for its newest checkpoint.

    Sample i depends only on --seed and i, so batch size and rank count do not change it.
    Under torchrun ranks split the indices; rank 0 gathers for a grid or .npz. Latent models
    are decoded with --vae, a local diffusers AutoencoderKL directory.

    \b
    Examples:
      dimsum sample runs/quickstart --n 32 --class 0 --class 1 --class 2 --class 3 --out grid.png
      dimsum sample runs/celeba/checkpoints/0100000 --n 64 --out grid.png
      dimsum sample ckpt --n 16 --class 207 --class 360 --cfg 4.0 --vae vae/ --out dogs.png
      dimsum sample ckpt --sampler euler --steps 50 --n 1000 --out samples/ --report
      torchrun --nproc_per_node 8 -m dimsum_core.cli.main sample ckpt -n 50000 --cfg 1.4 --out s.npz
    """
    check_new_output(out, overwrite)
    kind = check_output(out)
    console = Console(stderr=True)
    info, run, batches = start(checkpoint, n, **options)
    with leave_together(info):
        barrier(info)  # every rank checked --out before any writes
        stats = SamplingStats()
        kept: list[GeneratedBatch] = []
        share = len(rank_indices(n, info.rank, info.world_size))
        with TaskProgress(console, "sample", share, enabled=info.is_main) as progress:
            for batch in batches:
                stats.add(batch)
                if kind == "folder":
                    write_pngs(out, batch.indices, batch.images)
                else:
                    kept.append(batch)
                progress.update(stats.samples)
        all_stats = gather_to_main(stats, info.world_size)
        all_batches = gather_to_main(kept, info.world_size) if kind != "folder" else None
        if not info.is_main:
            return
        if all_batches is not None:
            _, images, labels = merge_batches([b for part in all_batches for b in part])
            if kind == "grid":
                write_grid(out, images, nrow or grid_columns(len(images), len(run.classes)), upscale)
            else:
                write_npz(out, images, labels)
        total = SamplingStats.combined(all_stats)
        if report:
            console.print(report_table(run, total, {"output": f"{out} ({kind})"}))
        console.print(f"wrote {total.samples} samples to {out}")
