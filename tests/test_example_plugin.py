"""The worked third-party plugin (examples/dimsum-spiral-scan): install it, then use it like a user would.

It is installed into a temporary folder, not into the test environment, and everything after the install
runs in fresh interpreters with that folder on their path: the environment running the tests never
sees the plugin, so later tests (and later runs) collect the same registry.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "dimsum-spiral-scan"

#: validates recipes that use the spiral scan, through a job that takes one scan node
VALIDATE_SCRIPT = textwrap.dedent("""
    import json, sys
    from omegaconf import OmegaConf
    from dimsum_core.config.load import Recipe
    from dimsum_core.config.spec import Spec
    from dimsum_core.config.validate import validate_recipe
    from dimsum_core.plugin import hookimpl
    from dimsum_core.plugin.manager import get_manager
    from dimsum_core.registry import Provenance

    def probe(ctx, /, scan: Spec["scan"] = "sweep4") -> None:
        "Takes one scan node."

    class Probe:
        @hookimpl
        def dimsum_add_jobs(self, registry):
            registry.add("probe-scan", probe)

    get_manager().register(Probe(), Provenance("probe", "tests", "0"))
    results = {}
    for label, scan in json.loads(sys.argv[1]).items():
        recipe = Recipe(label + ".yaml", OmegaConf.create({"job": "probe-scan", "scan": scan}))
        results[label] = validate_recipe(recipe)
    print(json.dumps(results))
""")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def dimsum(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run("-m", "dimsum_core.cli.main", *args, env=env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of an interpreter that has the example installed."""
    if importlib.util.find_spec("pip") is None:
        pytest.skip(f"pip is not available in {sys.executable}, so the example plugin cannot be installed")
    source, site = tmp_path_factory.mktemp("spiral-src"), tmp_path_factory.mktemp("spiral-site")
    shutil.copytree(EXAMPLE, source, dirs_exist_ok=True)  # pip builds in the source tree: keep ours clean
    result = run("-m", "pip", "install", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
                 "--quiet", "--target", str(site), str(source))
    assert result.returncode == 0, result.stderr
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}


@pytest.fixture(scope="module")
def plugin_rows(installed: dict[str, str]) -> list[dict[str, str]]:
    result = dimsum("list-plugins", "--json", env=installed)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_list_plugins_shows_the_spiral_scan(plugin_rows):
    [row] = [r for r in plugin_rows if r["name"] == "spiral"]
    assert row == {**row, "kind": "scan", "plugin": "spiral-scan", "distribution": "dimsum-spiral-scan",
                   "status": "ok"}
    assert row["description"].startswith("Clockwise spiral")


def test_the_plugin_can_be_blocked(installed):
    result = dimsum("list-plugins", "--json", env={**installed, "DIMSUM_DISABLE_PLUGINS": "spiral-scan"})
    rows = json.loads(result.stdout)
    assert not [r for r in rows if r["name"] == "spiral"]
    assert {"plugin": "spiral-scan", "status": "blocked"}.items() <= \
        next(r for r in rows if r["plugin"] == "spiral-scan").items()


def test_recipes_using_the_spiral_scan_validate(installed):
    nodes = {"bare": "spiral", "mapping": {"name": "spiral"}, "typo": "spirl",
             "bad-key": {"name": "spiral", "window": 4}}
    result = run("-c", VALIDATE_SCRIPT, json.dumps(nodes), env=installed)
    assert result.returncode == 0, result.stderr
    problems = json.loads(result.stdout)
    assert problems["bare"] == [] and problems["mapping"] == []
    assert len(problems["typo"]) == 1 and "did you mean 'spiral'?" in problems["typo"][0]
    assert len(problems["bad-key"]) == 1 and "scan.window: unknown key" in problems["bad-key"][0]


def test_dimsum_validate_accepts_a_training_recipe_with_the_spiral_scan(installed, plugin_rows, tmp_path):
    if not any(r["kind"] == "job" and r["name"] == "train" for r in plugin_rows):
        pytest.skip("no `train` job is registered; test_recipes_using_the_spiral_scan_validate covers scan nodes")
    recipe = tmp_path / "spiral.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        job: train
        out_dir: {tmp_path / "run"}
        model: {{name: dimsum-S/2, spatial_scan: spiral, in_channels: 3, num_classes: 4}}
        data: procedural
    """))
    result = dimsum("validate", str(recipe), env=installed)
    assert result.returncode == 0, result.stderr
    assert "valid (job: train)" in result.stdout
    result = dimsum("validate", str(recipe), "model.wavelet_scan=spirl", env=installed)
    assert result.returncode == 2
    assert "model.wavelet_scan: unknown scan 'spirl'; did you mean 'spiral'?" in result.stderr


def test_show_scan_draws_the_spiral(installed, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "spiral.png"
    result = dimsum("show-scan", "spiral", "--grid", "6", "--period", "--size", "100", "-o", str(out),
                    env=installed)
    assert result.returncode == 0, result.stderr
    assert "2 panels, 6x6 grid" in result.stdout
    from PIL import Image

    with Image.open(out) as image:
        assert image.size == (200, 100)


def test_the_readme_recipe_validates(installed, plugin_rows, tmp_path):
    """The example's README shows the real recipe keys (model.spatial_scan), and they validate."""
    if not any(r["kind"] == "job" and r["name"] == "train" for r in plugin_rows):
        pytest.skip("no `train` job is registered")
    import re

    import yaml

    [block] = re.findall(r"```yaml\n(.*?)```", (EXAMPLE / "README.md").read_text(), re.S)
    model = yaml.safe_load(block)["model"]
    assert model["spatial_scan"] == "spiral"
    recipe = tmp_path / "readme.yaml"
    recipe.write_text(yaml.safe_dump({"job": "train", "out_dir": str(tmp_path / "run"), "data": "procedural",
                                      "model": {**model, "in_channels": 3, "num_classes": 4}}))
    result = dimsum("validate", str(recipe), env=installed)
    assert result.returncode == 0, result.stderr


def test_the_example_declares_its_license_as_an_spdx_string():
    """The table form (``license = {text = ...}``) is deprecated by setuptools and warns on every build."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
