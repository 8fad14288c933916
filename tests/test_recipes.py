"""Recipes: loading, overrides, bases, and the validation dry run (library and CLI)."""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path
from typing import Literal

import pytest
from click.testing import CliRunner

from dimsum_core.cli.main import cli
from dimsum_core.config import load_recipe, validate_recipe
from dimsum_core.config.load import bundled_recipes
from dimsum_core.config.spec import ModelSpec
from dimsum_core.errors import RecipeError
from dimsum_core.plugin import hookimpl
from dimsum_core.plugin.manager import get_manager, reset_manager
from dimsum_core.registry import Provenance


@dataclasses.dataclass
class Optim:
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)


def echo_job(ctx, /, *, out: str, steps: int = 10, mode: Literal["fast", "slow"] = "fast",  # noqa: ANN001
             model: ModelSpec = "dimsum-S/2", optim: Optim | None = None, note: str | None = None) -> None:
    """Write the arguments it got (a job used by these tests)."""
    Path(out).write_text(json.dumps({"steps": steps, "mode": mode, "model": model,
                                     "lr": (optim or {}).get("lr") if isinstance(optim, dict) else None}))


@pytest.fixture(autouse=True)
def echo_plugin():  # noqa: ANN201
    reset_manager()
    mod = types.ModuleType("echo_job_plugin")

    @hookimpl
    def dimsum_add_jobs(registry):  # noqa: ANN001, ANN202
        registry.add("echo", echo_job)

    mod.dimsum_add_jobs = dimsum_add_jobs
    get_manager().register(mod, Provenance("tests-echo", "tests", "0"))
    yield
    reset_manager()


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_overrides_delete_and_base(tmp_path: Path) -> None:
    write(tmp_path, "job: echo\nout: a.json\nsteps: 3\noptim: {lr: 0.1}\n", "base.yaml")
    path = write(tmp_path, "base: base.yaml\nsteps: 5\nnote: hi\n")
    recipe = load_recipe(str(path), ["optim.lr=0.5", "mode=slow", "~note", "model={name: dit-S/2, depth: 2}"])
    data = recipe.to_dict()
    assert data == {"job": "echo", "out": "a.json", "steps": 5, "optim": {"lr": 0.5}, "mode": "slow",
                    "model": {"name": "dit-S/2", "depth": 2}}
    assert validate_recipe(recipe) == []


def test_exponent_overrides_are_numbers(tmp_path: Path) -> None:
    """YAML 1.1 reads `1e-4` as a string; an override reads it as the number a user means, as a file does."""
    path = write(tmp_path, "job: echo\nout: a.json\noptim: {lr: 1e-4}\n")
    recipe = load_recipe(str(path), ["optim.lr=3e-4", "mode=1e5x", "note=2E+3"])
    data = recipe.to_dict()
    assert data["optim"]["lr"] == 3e-4 and data["note"] == 2000.0 and data["mode"] == "1e5x"
    assert load_recipe(str(path)).to_dict()["optim"]["lr"] == 1e-4


@pytest.mark.parametrize("text, overrides, expected", [
    ("job: echo\nout: o\nsetps: 3\n", [], "setps: unknown key; did you mean 'steps'?"),
    ("job: echo\nout: o\n", ["model=dimsum-S/3"], "model: unknown model 'dimsum-S/3'; did you mean 'dimsum-S/2'?"),
    ("job: echo\nout: o\nmodel: {name: dit-S/2, dpeth: 2}\n", [], "model.dpeth: unknown key; did you mean 'depth'?"),
    ("job: echo\nout: o\nsteps: many\n", [], "steps: expected an integer, got 'many'"),
    ("job: echo\nout: o\nmode: fsat\n", [], "mode: 'fsat' is not one of 'fast', 'slow'; did you mean 'fast'?"),
    ("job: echo\nsteps: 2\n", [], "out: missing value"),
    ("job: echo\nout: o\noptim: {lr: 1, beta: [0.9, 0.9]}\n", [], "optim.beta: unknown key; did you mean 'betas'?"),
    ("job: echo\nout: o\nmodel: {name: dimsum-S/2, spatial_scan: zigzag9}\n", [],
     "model.spatial_scan: unknown scan 'zigzag9'; did you mean 'zigzag8'?"),
    ("job: ecoh\nout: o\n", [], "job: unknown job 'ecoh'; did you mean 'echo'?"),
])
def test_validation_problems(tmp_path: Path, text: str, overrides: list[str], expected: str) -> None:
    path = write(tmp_path, text)
    problems = validate_recipe(load_recipe(str(path), overrides))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}: {expected}")


def test_validate_cli_exit_codes_and_one_line(tmp_path: Path) -> None:
    good = write(tmp_path, "job: echo\nout: o\n", "good.yaml")
    runner = CliRunner()
    ok = runner.invoke(cli, ["validate", str(good), "steps=4"])
    assert ok.exit_code == 0 and "valid" in ok.output
    bad = write(tmp_path, "job: echo\nout: o\nmodel: {name: dimsum-S/2, fuison: concat}\n", "bad.yaml")
    result = runner.invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [f"error: {bad}: model.fuison: unknown key; did you mean 'fusion'?"]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("text, overrides, expected", [
    ("job: [unclosed\n", [], ":2: not valid YAML"),
    ("- a\n- b\n", [], "a recipe is a mapping"),
    ("job: echo\n", ["steps"], "override 'steps' is not key=value"),
    ("job: echo\n", ["~nope"], "there is no key 'nope' to delete"),
    ("base: missing.yaml\n", [], "base: 'missing.yaml' does not exist"),
])
def test_unreadable_recipes_are_one_line_errors(tmp_path: Path, text: str, overrides: list[str],
                                                 expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RecipeError, match=expected):
        load_recipe(str(path), overrides)
    result = CliRunner().invoke(cli, ["validate", str(path), *overrides])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: ")


def test_missing_recipe_file_suggests_bundled() -> None:
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe("definitely-not-a-recipe")


def test_every_listed_bundled_recipe_validates_on_its_own() -> None:
    """Shared bases and settings files are not offered as recipes; everything offered validates."""
    names = bundled_recipes()
    assert {"quickstart", "image_folder", "study/dimsum", "study/dit"} <= set(names)
    assert "study/base" not in names and "study/classifier" not in names
    for name in names:
        assert validate_recipe(load_recipe(name)) == [], name
    with pytest.raises(RecipeError, match="bundled recipes: ") as error:
        load_recipe("zzzzzzzzzz")
    assert "study/base" not in str(error.value) and "study/dimsum" in str(error.value)


def test_run_logs_the_resolved_recipe_and_calls_the_job(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    path = write(tmp_path, f"job: echo\nout: {out}\nsteps: 2\n")
    result = CliRunner().invoke(cli, ["run", str(path), "steps=7", "optim={lr: 0.25}"])
    assert result.exit_code == 0, result.output
    assert "steps: 7" in result.output
    assert json.loads(out.read_text()) == {"steps": 7, "mode": "fast", "model": "dimsum-S/2", "lr": 0.25}
    bad = CliRunner().invoke(cli, ["run", str(path), "steps=x"])
    assert bad.exit_code == 2 and not bad.output.count("Traceback")
