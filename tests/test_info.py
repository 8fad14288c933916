"""`dimsum info`: the official parameter counts and the paper's GFLOPs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dimsum_core.cli.main import cli


def info(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["info", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_dimsum_l2_matches_the_official_count_and_the_paper_gflops() -> None:
    base = info("dimsum-L/2")
    assert base["params"] == 458_892_304  # official DiM-L/2, unconditional (fixture key listing)
    assert base["gflops_paper"] == pytest.approx(84.5, rel=0.01)
    assert base["gflops"] == pytest.approx(96.4, rel=0.01)  # every multiply-add, which calflops partly misses
    assert info("dimsum-L/2", "num_classes=1000")["params"] == 459_916_304
    big = info("dimsum-L/2", "--image-size", "512")
    assert big["input"] == [4, 64, 64] and big["gflops_paper"] == pytest.approx(337.5, rel=0.01)


def test_dit_xl2_gflops_match_the_dit_paper() -> None:
    assert info("dit-XL/2")["gflops"] == pytest.approx(118.6, rel=0.01)


def test_unknown_model_is_a_one_line_error() -> None:
    result = CliRunner().invoke(cli, ["info", "dimsum-L2"])
    assert result.exit_code == 2 and "did you mean 'dimsum-L/2'" in result.output
