"""`dimsum export-data`: a recipe's images as an evaluation reference, usable by `dimsum eval`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from dimsum_core.cli.main import cli

RECIPE = "job: train\nout_dir: {out}\ndata: {{name: procedural, resolution: 16, num_classes: 4, size: 100}}\n"


def test_export_then_score_against_it(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(out=tmp_path / "run"))
    runner = CliRunner()
    ref = tmp_path / "ref.npz"
    result = runner.invoke(cli, ["export-data", str(recipe), "-n", "40", "--out", str(ref)])
    assert result.exit_code == 0, result.output
    assert "export 40/40 (100%)" in result.output  # progress, as a plain line when not on a terminal
    data = np.load(ref)
    assert data["arr_0"].shape == (40, 16, 16, 3) and data["arr_0"].dtype == np.uint8
    assert set(data["arr_1"].tolist()) <= {0, 1, 2, 3}
    # the same images again (a different data seed) score close to the reference, noise far from it
    other = tmp_path / "other.npz"
    assert runner.invoke(cli, ["export-data", str(recipe), "data.seed=1", "-n", "40", "--out", str(other)]).exit_code == 0
    noise = tmp_path / "noise.npz"
    np.savez(noise, arr_0=np.random.default_rng(0).integers(0, 256, (40, 16, 16, 3), dtype=np.uint8))
    scores = {}
    for name, samples in (("shapes", other), ("noise", noise)):
        out = tmp_path / f"{name}.json"
        r = runner.invoke(cli, ["eval", "--samples", str(samples), "--ref", str(ref), "--extractor", "random-conv",
                                "--metrics", "fid", "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
        assert r.exit_code == 0, r.output
        scores[name] = json.loads(out.read_text())["metrics"]["fid"]
    assert scores["shapes"] < scores["noise"]
    # refuses to overwrite, one line
    again = runner.invoke(cli, ["export-data", str(recipe), "--out", str(ref)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_help_examples_name_what_the_quickstart_writes() -> None:
    from dimsum_core.config import load_recipe

    recipe = load_recipe("quickstart").to_dict()
    final = f"{recipe['out_dir']}/checkpoints/{recipe['train']['steps']:07d}"
    result = CliRunner().invoke(cli, ["export-data", "--help"])
    assert final in result.output and "0000800" not in result.output
