"""``dimsum info``: parameters and GFLOPs of a model preset or of a recipe's model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import torch
from rich.console import Console
from rich.table import Table

from dimsum_core.config.load import apply_overrides, load_recipe
from dimsum_core.config.nodes import split_node
from dimsum_core.errors import RecipeError
from dimsum_core.flops import count_macs
from dimsum_core.models import create_model


def model_node(name_or_recipe: str, overrides: list[str]) -> dict[str, Any]:
    """The model node of a recipe, or a preset name with ``key=value`` overrides applied."""
    from omegaconf import OmegaConf

    from dimsum_core.plugin.manager import registry

    if name_or_recipe in registry("model"):
        cfg = apply_overrides(OmegaConf.create({"name": name_or_recipe}), overrides, "model")
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    if not (Path(name_or_recipe).suffix in (".yaml", ".yml") or Path(name_or_recipe).is_file()):
        registry("model").get(name_or_recipe)  # raises with the closest known name
    recipe = load_recipe(name_or_recipe, [f"model.{o}" if not o.startswith("model.") else o for o in overrides])
    if "model" not in recipe.cfg:
        raise RecipeError(f"{recipe.path}: has no 'model' key")
    name, kwargs = split_node(recipe.to_dict()["model"], "model")
    return {"name": name, **kwargs}


def model_info(node: dict[str, Any], image_size: int | None) -> dict[str, Any]:
    node = dict(node)
    with torch.device("meta"):
        model = create_model(node.pop("name"), **node)
        if image_size is not None:
            # latent models see the image through an 8× VAE; pixel models see it directly
            side = image_size // 8 if model.in_channels == 4 else image_size
            node["input_size"] = side
            model = create_model(model.config()["name"], **node)
    params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model)
    return {
        "model": model.config(),
        "params": params,
        "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "input": [model.in_channels, model.input_size, model.input_size],
        "tokens": model.grid**2 if hasattr(model, "grid") else None,
        "gflops": macs.macs / 1e9,
        "gflops_paper": macs.paper_macs / 1e9,
        "gflops_by_part": {k: v / 1e9 for k, v in sorted(macs.by_part.items())},
    }


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("name_or_recipe")
@click.argument("overrides", nargs=-1)
@click.option("--image-size", type=int, help="Image side in pixels (latent models use image_size/8).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (keys: params, gflops, gflops_paper, ...).")
def info(name_or_recipe: str, overrides: tuple[str, ...], image_size: int | None, as_json: bool) -> None:
    """Parameter count and GFLOPs per forward of a model preset or a recipe's model.

    GFLOPs count multiply-adds, as the DiT and DiMSUM papers do, two ways: `gflops` counts every one
    (including the selective scan, the convolutions and the attention cores); `gflops_paper` counts what
    the paper's tool (calflops) saw, which missed the Mamba input projection, the scan and the attention
    core. OVERRIDES are model key=value pairs.

    \b
    Examples:
      dimsum info dimsum-L/2
      dimsum info dimsum-L/2 num_classes=1000 --image-size 512 --json
      dimsum info recipes/quickstart.yaml
    """
    result = model_info(model_node(name_or_recipe, list(overrides)), image_size)
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    table = Table(show_header=False, box=None)
    table.add_row("model", json.dumps(result["model"]))
    table.add_row("input", "×".join(map(str, result["input"])) + f" ({result['tokens']} tokens)")
    table.add_row("parameters", f"{result['params'] / 1e6:.1f} M")
    table.add_row("GFLOPs (all multiply-adds)", f"{result['gflops']:.2f}")
    table.add_row("GFLOPs (as the paper counted)", f"{result['gflops_paper']:.2f}")
    for part, g in result["gflops_by_part"].items():
        table.add_row(f"  {part}", f"{g:.2f}")
    Console().print(table)
