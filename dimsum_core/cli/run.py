"""``dimsum run`` and ``dimsum validate``."""

from __future__ import annotations

import click
from rich.console import Console
from rich.syntax import Syntax

from dimsum_core.config import load_recipe, validate_recipe
from dimsum_core.config.nodes import split_node
from dimsum_core.context import RunContext
from dimsum_core.errors import RecipeError


def _checked(recipe_ref: str, overrides: tuple[str, ...]):  # noqa: ANN202
    recipe = load_recipe(recipe_ref, list(overrides))
    problems = validate_recipe(recipe)
    return recipe, problems


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("recipe")
@click.argument("overrides", nargs=-1)
def validate(recipe: str, overrides: tuple[str, ...]) -> None:
    """Check RECIPE (with key=value OVERRIDES) without building anything.

    Every component's arguments are bound to its signature; unknown keys, wrong types, missing values
    and unknown component names are reported one per line. Exit code 0 when valid, 2 otherwise.

    \b
    Examples:
      dimsum validate recipes/quickstart.yaml
      dimsum validate quickstart train.steps=50 model.name=dimsum-S/2
    """
    loaded, problems = _checked(recipe, overrides)
    if problems:
        for line in problems:
            click.echo(f"error: {line}", err=True)
        raise SystemExit(2)
    click.echo(f"{loaded.path}: valid (job: {loaded.cfg.job})")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("recipe")
@click.argument("overrides", nargs=-1)
def run(recipe: str, overrides: tuple[str, ...]) -> None:
    """Run the job RECIPE describes (train, sample, ...), after validating and logging it.

    RECIPE is a YAML file or the name of a bundled recipe. OVERRIDES are key=value pairs
    (values parsed as YAML) or ~key to delete a key.

    \b
    Examples:
      dimsum run quickstart
      dimsum run recipes/quickstart.yaml train.steps=200 out_dir=runs/try2
      torchrun --nproc_per_node 2 -m dimsum_core.cli.main run recipes/dimsum_L2_imagenet.yaml
    """
    loaded, problems = _checked(recipe, overrides)
    if problems:
        for line in problems:
            click.echo(f"error: {line}", err=True)
        raise SystemExit(2)
    ctx = RunContext(loaded, Console(stderr=True))
    ctx.console.rule(f"[bold]{loaded.path}")
    ctx.console.print(Syntax(loaded.to_yaml(), "yaml", theme="ansi_dark", background_color="default"))
    from dimsum_core.plugin.manager import registry

    data = loaded.to_dict()
    job_name, _ = split_node(data.pop("job"), "job")
    if not isinstance(job_name, str):
        raise RecipeError(f"{loaded.path}: job: expected a job name")
    registry("job").get(job_name).factory(ctx, **data)
