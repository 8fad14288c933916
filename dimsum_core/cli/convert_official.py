"""``dimsum convert-official``: an official DiMSUM checkpoint -> a dimsum checkpoint directory."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from dimsum_core.errors import DimsumError
from dimsum_core.official import convert_official as convert


@click.command("convert-official")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Checkpoint directory to write.")
@click.option("--num-classes", type=int, default=None,
              help="Real classes, if the label table has no null row (default: rows - 1, or 1 for one row).")
def convert_official(src: Path, out: Path, num_classes: int | None) -> None:
    """Convert an official DiMSUM checkpoint SRC into a directory `load_model` opens.

    SRC may be a `.pt` pickle with `model`/`ema` entries (as the released checkpoints), a bare state
    dict (the Hub's `pytorch_model.bin`) or a safetensors file. It is loaded with weights_only=True.
    Depth, width, patch size, classes and input size are inferred from the tensors.

    \b
    Examples:
      dimsum convert-official imnet256_510ep.pt --out checkpoints/dimsum-L2-imagenet256
      dimsum sample checkpoints/dimsum-L2-imagenet256 --cfg 4.0 --class 207 --vae vae/ --out dog.png
    """
    if out.exists() and any(out.iterdir()):
        raise DimsumError(f"{out} exists and is not empty; choose another --out (nothing was written)")
    summary = convert(src, out, num_classes)
    cfg = summary["config"]
    Console().print(f"wrote {out}: {cfg['name']} depth {cfg['depth']}, width {cfg['hidden_size']}, "
                    f"patch {cfg['patch_size']}, input {cfg['in_channels']}×{cfg['input_size']}², "
                    f"{cfg['num_classes']} classes, {summary['params'] / 1e6:.1f} M parameters "
                    f"(entries: {', '.join(summary['entries'])})", highlight=False)
