"""Scan orders: the permutation contract for every registered scan, and exact values of the official ones."""

from __future__ import annotations

import pytest
import torch

from dimsum_core.config import build
from dimsum_core.config.load import Recipe
from dimsum_core.config.spec import Spec
from dimsum_core.config.validate import validate_recipe
from dimsum_core.errors import ScanError
from dimsum_core.interfaces.scan import ScanIndex, ScanOrder
from dimsum_core.plugin import hookimpl
from dimsum_core.plugin import manager as plugin_manager
from dimsum_core.plugin.manager import registry
from dimsum_core.registry import Provenance

BUILTIN = ["sweep4", "sweep8", "zigzag8", "jpeg8", "bidirectional", "local-window", "window", "hilbert", "raster"]

#: recipe arguments each built-in is exercised with; scans from other plugins run with their defaults
KWARGS = {
    "sweep8": [{}, {"paths": 4}],
    "zigzag8": [{}, {"paths": 2}],
    "local-window": [{}, {"window": 2, "alternate": False}],
    "window": [{}, {"window": 2}],
    "hilbert": [{}, {"variants": 8}],
}
GRIDS = [(1, 1), (4, 4), (8, 8), (16, 16), (4, 8), (8, 4), (6, 4), (3, 5)]

CASES = [pytest.param({"name": name, **kw}, id=f"{name}{'-' if kw else ''}{'-'.join(f'{k}={v}' for k, v in kw.items())}")
         for name in registry("scan").names() for kw in KWARGS.get(name, [{}])]


def make(node: dict | str) -> ScanOrder:
    return build("scan", node)


def as_list(scan: ScanOrder, h: int, w: int, layer: int) -> list[int]:
    return scan.order(h, w, layer).tolist()


def steps(perm: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column distance of every step along the visiting order."""
    rows, cols = perm // width, perm % width
    return rows.diff().abs(), cols.diff().abs()


def test_every_builtin_is_registered():
    names = registry("scan").names()
    assert set(BUILTIN) <= set(names)
    for name in BUILTIN:
        entry = registry("scan").get(name)
        assert entry.provenance.plugin == "builtin-scans"
        assert entry.description, f"{name} has no description"


@pytest.mark.parametrize("node", CASES)
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
def test_permutation_contract(node, grid):
    """Bijection, unscan(scan(x)) == x, the period, and refusals only ever as ScanError."""
    h, w = grid
    scan = make(node)
    assert isinstance(scan, ScanOrder) and scan.period >= 1
    try:
        scan.check(h, w)
    except ScanError as exc:
        assert "\n" not in str(exc) and str(exc)
        with pytest.raises(ScanError):
            scan.order(h, w, 0)
        with pytest.raises(ScanError):
            ScanIndex(scan, h, w, 0)
        return
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, h * w, 3, generator=gen)
    for layer in range(2 * scan.period + 1):
        perm = scan.order(h, w, layer)
        assert perm.dtype == torch.long and perm.shape == (h * w,)
        assert torch.equal(perm.sort().values, torch.arange(h * w))
        assert torch.equal(perm, scan.order(h, w, layer + scan.period))
        index = ScanIndex(scan, h, w, layer)
        scanned = index.scan(x)
        assert torch.equal(scanned, x[:, perm])
        assert torch.equal(index.unscan(scanned), x)


@pytest.mark.parametrize("node", CASES)
def test_empty_grid_is_refused(node):
    with pytest.raises(ScanError):
        make(node).check(0, 4)


@pytest.mark.parametrize("name", BUILTIN)
def test_builtins_cover_the_official_grids(name):
    """16x16 (256 px) and 32x32 (512 px) token grids are supported by every built-in default."""
    for side in (16, 32):
        ScanIndex(make(name), side, side, 1)


@pytest.mark.parametrize("node", [{"name": "sweep4"}, {"name": "sweep8"}, {"name": "zigzag8"},
                                  {"name": "jpeg8"}, {"name": "bidirectional"}, {"name": "window"},
                                  {"name": "local-window", "window": 2}, {"name": "hilbert", "variants": 8}],
                         ids=lambda n: n["name"])
def test_layers_within_one_period_differ(node):
    scan = make(node)
    orders = {tuple(as_list(scan, 8, 8, layer)) for layer in range(scan.period)}
    assert len(orders) == scan.period


# -- exact values ---------------------------------------------------------------------------------

def test_sweep4_exact_on_3x4():
    scan = make("sweep4")
    assert scan.period == 4
    assert as_list(scan, 3, 4, 0) == list(range(12))
    assert as_list(scan, 3, 4, 1) == list(range(11, -1, -1))
    assert as_list(scan, 3, 4, 2) == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    assert as_list(scan, 3, 4, 3) == [11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0]
    assert as_list(scan, 3, 4, 4) == list(range(12))


def test_sweep4_is_the_official_cycle_of_sweep8_paths():
    """Layer i of sweep4 = sweep8 path [TL rows, BR rows, TL columns, BR columns][i % 4]."""
    sweep4, sweep8 = make("sweep4"), make("sweep8")
    for layer, path in enumerate([0, 6, 1, 7]):
        assert as_list(sweep4, 5, 7, layer) == as_list(sweep8, 5, 7, path)


def test_sweep8_corners_and_directions_on_2x3():
    # [[0, 1, 2],
    #  [3, 4, 5]]
    expected = [
        [0, 1, 2, 3, 4, 5],  # top-left, rows
        [0, 3, 1, 4, 2, 5],  # top-left, columns
        [2, 1, 0, 5, 4, 3],  # top-right, rows
        [2, 5, 1, 4, 0, 3],  # top-right, columns
        [3, 4, 5, 0, 1, 2],  # bottom-left, rows
        [3, 0, 4, 1, 5, 2],  # bottom-left, columns
        [5, 4, 3, 2, 1, 0],  # bottom-right, rows
        [5, 2, 4, 1, 3, 0],  # bottom-right, columns
    ]
    scan = make("sweep8")
    assert scan.period == 8
    assert [as_list(scan, 2, 3, p) for p in range(8)] == expected


def test_sweep8_paths_keeps_the_first_k():
    """{name: sweep8, paths: 4} is the official `--bimamba-type sweep_4` cycle."""
    full, four = make("sweep8"), make({"name": "sweep8", "paths": 4})
    assert four.period == 4
    for layer in range(8):
        assert as_list(four, 4, 4, layer) == as_list(full, 4, 4, layer % 4)


def test_zigzag8_snakes_on_2x3():
    scan = make("zigzag8")
    assert as_list(scan, 2, 3, 0) == [0, 1, 2, 5, 4, 3]
    assert as_list(scan, 2, 3, 1) == [0, 3, 4, 1, 2, 5]
    assert as_list(scan, 2, 3, 3) == [2, 5, 4, 1, 0, 3]
    assert as_list(scan, 2, 3, 6) == [5, 4, 3, 0, 1, 2]


def test_jpeg8_is_the_jpeg_zigzag_on_4x4():
    scan = make("jpeg8")
    assert as_list(scan, 4, 4, 0) == [0, 1, 4, 8, 5, 2, 3, 6, 9, 12, 13, 10, 7, 11, 14, 15]
    assert as_list(scan, 4, 4, 1) == [0, 4, 1, 2, 5, 8, 12, 9, 6, 3, 7, 10, 13, 14, 11, 15]
    # bottom-right, rows: the top-left walk mirrored through the centre
    assert as_list(scan, 4, 4, 6) == [15 - i for i in as_list(scan, 4, 4, 0)]


def test_jpeg8_on_rectangles():
    scan = make("jpeg8")
    # [[0, 1, 2],
    #  [3, 4, 5]]: diagonals {0}, {1, 3} down, {4, 2} up, {5}
    assert as_list(scan, 2, 3, 0) == [0, 1, 3, 4, 2, 5]
    for h, w in [(3, 5), (5, 3), (2, 7), (6, 4)]:
        for path in range(8):
            dr, dc = steps(scan.order(h, w, path), w)
            assert int(torch.maximum(dr, dc).max()) == 1, (h, w, path)


def test_zigzag8_steps_to_a_side_neighbour():
    scan = make("zigzag8")
    for h, w in [(4, 4), (3, 5), (6, 4)]:
        for path in range(8):
            dr, dc = steps(scan.order(h, w, path), w)
            assert torch.all(dr + dc == 1), (h, w, path)


def test_hilbert_is_continuous():
    scan = make({"name": "hilbert", "variants": 8})
    for side in (4, 8, 16):
        for path in range(8):
            dr, dc = steps(scan.order(side, side, path), side)
            assert torch.all(dr + dc == 1), (side, path)
    # any rectangle: steps go to a neighbour (a diagonal step where the long side is odd)
    for h in range(1, 12):
        for w in range(1, 12):
            dr, dc = steps(scan.order(h, w, 0), w)
            assert h * w == 1 or int(torch.maximum(dr, dc).max()) == 1, (h, w)
    assert as_list(scan, 4, 4, 0) == [0, 1, 5, 4, 8, 12, 13, 9, 10, 14, 15, 11, 7, 6, 2, 3]


def test_hilbert_default_is_one_curve():
    scan = make("hilbert")
    assert scan.period == 1
    assert as_list(scan, 8, 8, 0) == as_list(scan, 8, 8, 5)


def test_bidirectional_and_raster():
    assert as_list(make("raster"), 3, 4, 7) == list(range(12))
    scan = make("bidirectional")
    assert scan.period == 2
    assert as_list(scan, 3, 4, 0) == list(range(12))
    assert as_list(scan, 3, 4, 1) == list(range(11, -1, -1))


WINDOW_8x8_LAYER0 = [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27,
                     4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31,
                     32, 33, 34, 35, 40, 41, 42, 43, 48, 49, 50, 51, 56, 57, 58, 59,
                     36, 37, 38, 39, 44, 45, 46, 47, 52, 53, 54, 55, 60, 61, 62, 63]
WINDOW_8x8_LAYER1 = [0, 8, 16, 24, 1, 9, 17, 25, 2, 10, 18, 26, 3, 11, 19, 27,
                     32, 40, 48, 56, 33, 41, 49, 57, 34, 42, 50, 58, 35, 43, 51, 59,
                     4, 12, 20, 28, 5, 13, 21, 29, 6, 14, 22, 30, 7, 15, 23, 31,
                     36, 44, 52, 60, 37, 45, 53, 61, 38, 46, 54, 62, 39, 47, 55, 63]


def test_window_exact_on_8x8():
    scan = make({"name": "window", "window": 4})
    assert scan.period == 2
    assert as_list(scan, 8, 8, 0) == WINDOW_8x8_LAYER0
    assert as_list(scan, 8, 8, 1) == WINDOW_8x8_LAYER1
    assert as_list(scan, 8, 8, 2) == WINDOW_8x8_LAYER0
    # local-window is the same walk with a fixed default window of 4
    assert as_list(make("local-window"), 8, 8, 1) == WINDOW_8x8_LAYER1


def test_window_default_is_a_quarter_of_the_grid():
    """Official layout at 256 px: a 16x16 grid is 16 windows x 16 tokens (one coarse location each)."""
    scan = make("window")
    perm = scan.order(16, 16, 0).view(16, 16)
    for k, window in enumerate(perm):
        wr, wc = divmod(k, 4)
        rows, cols = window // 16, window % 16
        assert torch.equal(rows, (4 * wr + torch.arange(4)).repeat_interleave(4))
        assert torch.equal(cols, (4 * wc + torch.arange(4)).repeat(4))
    assert as_list(scan, 8, 8, 0) == as_list(make({"name": "window", "window": 2}), 8, 8, 0)
    # a rectangle keeps 4x4 windows of (H/4)x(W/4) tokens
    assert as_list(scan, 4, 8, 0) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                      16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31]


def test_window_alternation_can_be_turned_off():
    scan = make({"name": "window", "window": 4, "alternate": False})
    assert scan.period == 1
    assert as_list(scan, 8, 8, 1) == WINDOW_8x8_LAYER0


def test_window_refusals_name_the_fix():
    with pytest.raises(ScanError, match=r"6x6 grid cannot be cut into 4x4 windows.*window: 3\)"):
        make("local-window").check(6, 6)
    with pytest.raises(ScanError, match=r"8x12 grid cannot be cut into 8x8 windows.*window: 4\)"):
        make({"name": "window", "window": 8}).check(8, 12)
    with pytest.raises(ScanError, match=r"divisible by 4, got 6x8"):
        make("window").order(6, 8, 0)


@pytest.mark.parametrize("node", [{"name": "sweep8", "paths": 0}, {"name": "jpeg8", "paths": 9},
                                  {"name": "hilbert", "variants": 9}, {"name": "window", "window": 0},
                                  {"name": "local-window", "window": -2}],
                         ids=lambda n: "-".join(map(str, n.values())))
def test_bad_arguments_are_scan_errors(node):
    with pytest.raises(ScanError):
        make(node)


# -- recipes --------------------------------------------------------------------------------------

def probe_scan(ctx, /, scan: Spec["scan"] = "sweep4") -> None:  # noqa: UP037, F821 - "scan" is a kind name
    """A job that takes one scan node, so recipe validation of scan nodes can be tested."""


class ProbeJob:
    @hookimpl
    def dimsum_add_jobs(self, registry):
        registry.add("probe-scan", probe_scan)


@pytest.fixture
def probe_manager(monkeypatch):
    manager = plugin_manager.PluginManager()
    manager.load_entry_points()
    manager.register(ProbeJob(), Provenance("probe", "tests", "0"))
    monkeypatch.setattr(plugin_manager, "_MANAGER", manager)
    return manager


def _problems(data: dict) -> list[str]:
    from omegaconf import OmegaConf

    return validate_recipe(Recipe("probe.yaml", OmegaConf.create({"job": "probe-scan", **data})))


def test_recipes_validate_scan_arguments(probe_manager):
    assert _problems({"scan": {"name": "window", "window": 4, "alternate": False}}) == []
    assert _problems({"scan": {"name": "hilbert", "variants": 4}}) == []
    assert _problems({"scan": "zigzag8"}) == []
    [problem] = _problems({"scan": {"name": "window", "window": "four"}})
    assert "scan.window" in problem and "expected int or null" in problem
    [problem] = _problems({"scan": {"name": "local-window", "windw": 2}})
    assert "did you mean 'window'" in problem
    [problem] = _problems({"scan": "swep4"})
    assert "did you mean 'sweep4'" in problem


# -- dimsum show-scan -----------------------------------------------------------------------------

def show_scan(*args: str):
    from click.testing import CliRunner

    from dimsum_core.cli.main import cli

    return CliRunner().invoke(cli, ["show-scan", *args])


def test_show_scan_writes_one_panel_per_layer(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    out = tmp_path / "plots" / "sweep4.png"
    result = show_scan("sweep4", "--period", "--grid", "6", "--size", "120", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "4 panels, 6x6 grid" in result.output
    with Image.open(out) as image:
        assert image.size == (4 * 120, 120)
        # not a blank canvas: the colour ramp and the path are drawn
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16)) > 20


def test_show_scan_keeps_an_existing_file_unless_told_to_replace_it(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "scan.png"
    out.write_bytes(b"mine")
    result = show_scan("sweep4", "--grid", "4", "-o", str(out))
    assert result.exit_code == 2 and "already exists; choose another -o/--output or pass --overwrite" in result.output
    assert out.read_bytes() == b"mine"
    assert show_scan("sweep4", "--grid", "4", "-o", str(out), "--overwrite").exit_code == 0
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("layers", [["--layer", "1"], ["--layer", "0", "--layer", "1"]])
def test_show_scan_legend_fits_the_figure(tmp_path, layers):
    """The legend under the panels is not clipped at the image edges, even under a single panel."""
    pytest.importorskip("matplotlib")
    import numpy as np
    from PIL import Image

    out = tmp_path / "scan.png"
    assert show_scan("window", "--grid", "8", *layers, "-o", str(out)).exit_code == 0
    pixels = np.asarray(Image.open(out).convert("L"))
    legend = pixels[-pixels.shape[0] // 10:]  # the strip under the panels
    assert legend.min() < 128  # the legend is drawn ...
    assert legend[:, :2].min() == 255 and legend[:, -2:].min() == 255  # ... and not cut by the edges


def test_show_scan_takes_scan_arguments_and_rectangles(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    out = tmp_path / "window.png"
    result = show_scan("local-window", "--window", "2", "--set", "alternate=false", "--height", "4",
                       "--width", "6", "--layer", "0", "--layer", "3", "--size", "100", "-o", str(out))
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.size == (200, 100)


@pytest.mark.parametrize("args, message", [
    (["swep4"], "did you mean 'sweep4'?"),
    (["window", "--grid", "6"], "divisible by 4, got 6x6"),
    (["window", "--set", "window=four"], "window: expected int or null, got 'four'"),
    (["window", "--set", "windw=2"], "did you mean 'window'?"),
    (["window", "--set", "window"], "is not key=value"),
])
def test_show_scan_user_errors_exit_2_with_one_line(tmp_path, args, message):
    result = show_scan(*args, "-o", str(tmp_path / "x.png"))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "x.png").exists()


def test_show_scan_without_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    import sys

    for module in ("matplotlib", "matplotlib.figure", "matplotlib.collections",
                   "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)
    result = show_scan("sweep4", "-o", str(tmp_path / "x.png"))
    assert result.exit_code == 2
    assert 'pip install -e ".[plot]"' in result.stderr


def _backward_ops(fn, x: torch.Tensor) -> list[str]:
    """The aten ops that the backward of a weighted sum of ``fn(x)`` runs (distinct weights, so every token's
    gradient differs and a wrong inverse shows)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            self.ops.append(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    out = fn(x)
    weights = torch.arange(out.numel(), dtype=out.dtype).reshape(out.shape)
    with Record() as rec:
        (out * weights).sum().backward()
    return rec.ops


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_scan_gradients_are_gathers_equal_to_index_selects(dtype):
    """A scan's and an unscan's gradient is the inverse gather, bitwise what index_select's scatter-add
    gives, with no index_add (atomics on a GPU, a fusion barrier when compiled) and no zero fill."""
    index = ScanIndex(make({"name": "zigzag8"}), 4, 6, 3)
    x = torch.randn(2, 24, 5, dtype=dtype, generator=torch.Generator().manual_seed(0))
    for ours, reference in ((index.scan, lambda t: t.index_select(1, index.perm)),
                            (index.unscan, lambda t: t.index_select(1, index.inv))):
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        ours_ops, reference_ops = _backward_ops(ours, a), _backward_ops(reference, b)
        assert torch.equal(a.grad, b.grad)
        assert "index_select" in ours_ops and "index_add" not in ours_ops and "zeros" not in ours_ops
        assert "index_add" in reference_ops  # index_select's own backward scatters: what this replaces
    # differentiable twice: the gradient's gradient is the forward gather again
    leaf = x.double().requires_grad_()
    (g,) = torch.autograd.grad((index.scan(leaf) ** 2).sum(), leaf, create_graph=True)
    assert torch.equal(g, 2 * leaf)
    assert torch.autograd.gradcheck(index.scan, (torch.randn(1, 24, 2, dtype=torch.float64, requires_grad=True),))


def test_compiled_scan_matches_eager_values_and_gradients():
    index = ScanIndex(make({"name": "sweep8"}), 4, 4, 1)
    x = torch.randn(2, 16, 3, generator=torch.Generator().manual_seed(1))

    def roundtrip(t: torch.Tensor) -> torch.Tensor:
        return index.unscan(index.scan(t) * torch.arange(16.0)[None, :, None])

    compiled = torch.compile(roundtrip, fullgraph=True, backend="aot_eager")
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, out_b = roundtrip(a), compiled(b)
    out_a.sum().backward()
    out_b.sum().backward()
    assert torch.equal(out_a, out_b) and torch.equal(a.grad, b.grad)
