"""``dimsum bench``: the GPU benchmark of DiMSUM against DiT."""

from __future__ import annotations

from pathlib import Path

import click

from dimsum_core.cli.outputs import check_new_output, overwrite_option

AT_LEAST_ONE = click.IntRange(min=1)


@click.command()
@click.option("--models", multiple=True, default=("dimsum-L/2", "dit-L/2"), show_default=True,
              help="Model presets to measure (repeat the option).")
@click.option("--out", default="benchmarks/results/gpu.json", show_default=True, help="JSON result file.")
@overwrite_option()
@click.option("--repeats", type=AT_LEAST_ONE, default=5, show_default=True,
              help="Timed repeats per measurement (median).")
@click.option("--batch-256", type=AT_LEAST_ONE, default=64, show_default=True,
              help="Training batch at 256 px (32×32 latent).")
@click.option("--batch-512", type=AT_LEAST_ONE, default=16, show_default=True,
              help="Training batch at 512 px (64×64 latent).")
@click.option("--batch-32", type=AT_LEAST_ONE, default=128, show_default=True,
              help="Training batch at 32 px (pixel space, 3 channels: the study's small-model setting).")
@click.option("--sizes", multiple=True, type=click.Choice(["256", "512", "32"]), default=("256", "512"),
              show_default=True, help="Image sizes to measure (repeat the option): 256 and 512 px in the VAE's "
                                      "latent space, 32 px in pixel space.")
@click.option("--compile", "compile_", is_flag=True,
              help="Also time bf16 training of the compiled model, as train.compile does (compiling DiMSUM-L/2 takes ~30 s on an H200).")
@click.option("--cuda-graph", is_flag=True,
              help="Also time bf16 training replayed from CUDA graphs, as train.cuda_graph does (with --compile: "
                   "the compiled model replayed too).")
@click.option("--mixer-backend", type=click.Choice(["auto", "triton", "cuda", "torch"]), default="auto",
              show_default=True, help="Kernels of the Mamba mixers (cuda: mamba-ssm's, for comparison).")
def bench(models: tuple[str, ...], out: str, overwrite: bool, repeats: int, batch_256: int, batch_512: int,
          batch_32: int, sizes: tuple[str, ...], compile_: bool, cuda_graph: bool, mixer_backend: str) -> None:
    """Training throughput (TF32 and bf16), forward latency, peak memory, MFU and the forward time
    share of each part, for each model at 256 and 512 px (and 32 px in pixel space), in one process on one GPU.

    \b
    Examples:
      dimsum bench
      dimsum bench --models dimsum-L/2 --batch-256 32 --out my.json
      dimsum bench --sizes 256 --compile --cuda-graph
      dimsum bench --models dimsum-L/2 --sizes 256 --mixer-backend cuda
      dimsum bench --models dimsum-S/2 --models dit-S/2 --sizes 32 --compile --cuda-graph
    """
    from dimsum_core.gpu_benchmark import run
    from dimsum_core.plugin.manager import registry

    # before any timing: a run of minutes must not end in a name it cannot build or a file it must not replace
    for name in models:
        registry("model").get(name)
    check_new_output(Path(out), overwrite)
    run(list(models), out, repeats, batch_256, batch_512, tuple(int(s) for s in sizes), compile_, mixer_backend,
        cuda_graph, batch_32)
