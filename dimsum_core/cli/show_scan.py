"""``dimsum show-scan``: draw a scan order's path over its token grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import torch

from dimsum_core.cli.outputs import check_new_output, overwrite_option
from dimsum_core.config.load import parse_assignments
from dimsum_core.errors import DimsumError, RecipeError, ScanError
from dimsum_core.interfaces.scan import ScanOrder, checked_order

#: panels drawn by --period at most (the longest built-in cycle)
MAX_PANELS = 8
#: above this many tokens the per-step arrows become unreadable: only the line is drawn
MAX_ARROWS = 1024


def make_scan(name: str, kwargs: dict[str, Any]) -> ScanOrder:
    """Build a registered scan after checking its arguments the way `dimsum validate` does."""
    from dimsum_core.config.validate import _Checker
    from dimsum_core.plugin.manager import registry

    entry = registry("scan").get(name)
    checker = _Checker("show-scan")
    checker.arguments(entry.factory, kwargs, "")
    if checker.problems:
        raise RecipeError("; ".join(checker.problems))
    scan = entry.factory(**kwargs)
    if not isinstance(scan, ScanOrder):
        raise ScanError(f"scan '{name}' built a {type(scan).__name__}, not a ScanOrder "
                        f"(plugin '{entry.provenance.plugin}' must return a ScanOrder)")
    return scan


def draw(perms: list[torch.Tensor], layers: list[int], height: int, width: int, title: str,
         path: Path, size: int) -> None:
    """One panel per layer: cells coloured by visiting step, arrows along the path, start and end marked."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import LineCollection
        from matplotlib.figure import Figure
    except ImportError:
        raise DimsumError('dimsum show-scan needs matplotlib: pip install -e ".[plot]"') from None

    dpi = 100
    fig = Figure(figsize=(len(perms) * size / dpi, size / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.1, top=0.88, wspace=0.06)
    axes = fig.subplots(1, len(perms), squeeze=False)[0]
    for ax, perm, layer in zip(axes, perms, layers, strict=True):
        step = torch.empty_like(perm)
        step[perm] = torch.arange(perm.numel())
        ax.imshow(step.view(height, width).numpy(), cmap="viridis", alpha=0.55,
                  extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation="nearest")
        rows, cols = (perm // width).float().numpy(), (perm % width).float().numpy()
        dr, dc = rows[1:] - rows[:-1], cols[1:] - cols[:-1]
        near = (abs(dr) <= 1) & (abs(dc) <= 1)
        segments = [((cols[i], rows[i]), (cols[i + 1], rows[i + 1])) for i in range(len(dr))]
        # jumps (new row, new window) are faint dashes so the continuous runs stand out
        jumps = [s for s, n in zip(segments, near, strict=True) if not n]
        ax.add_collection(LineCollection(jumps, colors="0.35", linewidths=0.6, linestyles="dashed", alpha=0.6))
        if perm.numel() <= MAX_ARROWS:
            ax.quiver(cols[:-1][near], rows[:-1][near], dc[near], dr[near], angles="xy", scale_units="xy",
                      scale=1, color="black", width=0.004, headwidth=4, headlength=4, headaxislength=3.5)
        else:
            runs = [s for s, n in zip(segments, near, strict=True) if n]
            ax.add_collection(LineCollection(runs, colors="black", linewidths=0.6))
        ax.plot(cols[0], rows[0], "o", color="limegreen", markeredgecolor="black", markersize=9)
        ax.plot(cols[-1], rows[-1], "s", color="red", markeredgecolor="black", markersize=8)
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"layer {layer}", fontsize=10)
    fig.suptitle(title, fontsize=11)
    items = ["green circle: first token", "red square: last token", "colour: visit order (dark first)",
             "dashes: jumps"]
    legend = fig.text(0.5, 0.02, "   ".join(items), ha="center", va="bottom", fontsize=8)
    if legend.get_window_extent(fig.canvas.get_renderer()).width > 0.96 * fig.bbox.width:
        legend.set_text("   ".join(items[:2]) + "\n" + "   ".join(items[2:]))  # one panel is too narrow
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)


#: a drawing of more than 256x256 tokens shows nothing more, and the order tables grow with the square
GRID_SIDE = click.IntRange(1, 256)


@click.command("show-scan")
@click.argument("name")
@click.option("--grid", type=GRID_SIDE, default=16, show_default=True, help="Side of a square token grid.")
@click.option("--height", type=GRID_SIDE, help="Grid rows (default: --grid).")
@click.option("--width", type=GRID_SIDE, help="Grid columns (default: --grid).")
@click.option("--layer", "layers", type=click.IntRange(min=0), multiple=True,
              help="Layer to draw; repeat for side-by-side panels. Default 0.")
@click.option("--period", "whole_period", is_flag=True,
              help=f"Draw every layer of one period of the scan (at most {MAX_PANELS}).")
@click.option("--window", type=int, help="Shortcut for --set window=K.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="A scan argument, value parsed as YAML; repeatable.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("scan.png"),
              show_default=True, help="PNG file to write.")
@overwrite_option("-o/--output")
@click.option("--size", type=click.IntRange(min=64), default=480, show_default=True,
              help="Side of one panel in pixels.")
def show_scan(name: str, grid: int, height: int | None, width: int | None, layers: tuple[int, ...],
              whole_period: bool, window: int | None, settings: tuple[str, ...], output: Path,
              overwrite: bool, size: int) -> None:
    """Draw the path scan order NAME takes over a token grid, one panel per layer.

    Arguments of the scan are given with --set key=value, exactly as a recipe would set them.

    \b
    Examples:
      dimsum show-scan sweep4 --period -o sweep4.png
      dimsum show-scan window --grid 16 --layer 0 --layer 1
      dimsum show-scan local-window --window 2 --height 8 --width 12
      dimsum show-scan hilbert --set variants=8 --period --grid 8
    """
    kwargs = parse_assignments(settings, "show-scan: --set")
    if window is not None:
        kwargs["window"] = window
    scan = make_scan(name, kwargs)
    h, w = height or grid, width or grid
    if whole_period:
        drawn = list(range(min(scan.period, MAX_PANELS)))
    else:
        drawn = list(layers) or [0]
    perms = [checked_order(scan, h, w, layer) for layer in drawn]
    check_new_output(output, overwrite, "-o/--output")
    args = "".join(f", {k}={v}" for k, v in kwargs.items())
    draw(perms, drawn, h, w, f"{name}{args} on a {h}x{w} grid (period {scan.period})", output, size)
    click.echo(f"wrote {output} ({len(perms)} panel{'s' if len(perms) > 1 else ''}, {h}x{w} grid)")
