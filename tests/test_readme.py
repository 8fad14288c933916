"""The README runs as written: its Python blocks execute as pasted after the quickstart, and the
checkpoints its commands name are the ones the quickstart writes."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from click.testing import CliRunner

from dimsum_core.cli.main import cli
from dimsum_core.config import load_recipe

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_python_blocks_run_as_pasted_after_the_quickstart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the quickstart itself, cut to one small step: the snippet only needs its checkpoint to exist
    quick = CliRunner().invoke(cli, ["run", "quickstart", "train.steps=1", "train.global_batch_size=8",
                                     "data.size=64", "log.sample_every=-1"])
    assert quick.exit_code == 0, quick.output
    assert (tmp_path / "runs" / "quickstart" / "checkpoints" / "0000001").is_dir()
    code = blocks("python")
    assert code, "the README has no python block"
    for block in code:
        namespace: dict = {}
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    assert namespace["v"].shape == namespace["x"].shape and torch.isfinite(namespace["v"]).all()


def test_commands_name_the_checkpoint_the_quickstart_writes():
    recipe = load_recipe("quickstart").to_dict()
    final = f"{recipe['out_dir']}/checkpoints/{recipe['train']['steps']:07d}"
    named = set(re.findall(r"runs/quickstart/checkpoints/\w+", " ".join(blocks("bash"))))
    assert named == {final}
