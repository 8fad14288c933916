"""``dimsum export-data``: write a recipe's training images as evaluation references."""

from __future__ import annotations

from pathlib import Path

import click
import torch
from rich.console import Console

from dimsum_core.cli.outputs import check_new_output, overwrite_option
from dimsum_core.config.load import load_recipe
from dimsum_core.config.nodes import build
from dimsum_core.errors import DimsumError, RecipeError
from dimsum_core.progress import TaskProgress
from dimsum_core.sampling.generate import to_uint8
from dimsum_core.sampling.outputs import check_output, write_grid, write_npz, write_pngs


@click.command("export-data", context_settings={"ignore_unknown_options": True})
@click.argument("recipe")
@click.argument("overrides", nargs=-1)
@click.option("-n", "--n", "n", type=int, default=1000, show_default=True, help="images to write (the first n)")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="an .npz (ADM style), a directory (one PNG each) or a .png grid")
@overwrite_option()
def export_data(recipe: str, overrides: tuple[str, ...], n: int, out: Path, overwrite: bool) -> None:
    """Write the first N images of RECIPE's dataset (its `data:` node, with key=value OVERRIDES) as
    uint8 images, e.g. as the reference set of `dimsum eval` for a procedural dataset.

    \b
    Examples:
      dimsum export-data quickstart -n 2000 --out runs/quickstart_ref.npz
      dimsum eval runs/quickstart/checkpoints/0001000 --ref runs/quickstart_ref.npz -n 500 --extractor random-conv
    """
    if n < 1:
        raise DimsumError(f"-n must be positive, got {n}")
    loaded = load_recipe(recipe, list(overrides))
    if "data" not in loaded.cfg:
        raise RecipeError(f"{loaded.path}: has no 'data' node to export")
    dataset = build("dataset", loaded.to_dict()["data"])
    if getattr(dataset, "is_latent", False):
        raise DimsumError(f"{loaded.path}: data are VAE latents; export the image folder they were made "
                          f"from instead (or use it directly as --ref)")
    check_new_output(out, overwrite)
    kind = check_output(out)
    count = min(n, len(dataset))
    items = []
    with TaskProgress(Console(stderr=True), "export", count) as progress:
        for i in range(count):
            items.append(dataset[i])
            progress.update(i + 1)
    images = to_uint8(torch.stack([x for x, _ in items]))  # (N, C, H, W) uint8
    labels = torch.tensor([y for _, y in items])
    if kind == "npz":
        write_npz(out, images, labels if dataset.num_classes else None)
    elif kind == "grid":
        write_grid(out, images)
    else:
        write_pngs(out, list(range(count)), images)
    click.echo(f"wrote {count} images of {tuple(images.shape[1:])} to {out}")
