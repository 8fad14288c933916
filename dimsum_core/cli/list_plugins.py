"""``dimsum list-plugins``."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dimsum_core.plugin.manager import get_manager
from dimsum_core.registry import KINDS


@click.command("list-plugins")
@click.option("--kind", type=click.Choice(list(KINDS)), help="Only components of this kind.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def list_plugins(kind: str | None, as_json: bool) -> None:
    """List every registered component and every plugin that failed to load.

    Each row gives the kind, the name recipes use, the plugin (entry point) and the distribution
    and version that provide it. Blocked plugins (DIMSUM_DISABLE_PLUGINS=a,b) are listed too.

    \b
    Examples:
      dimsum list-plugins
      dimsum list-plugins --kind scan
      dimsum list-plugins --json | jq '.[] | select(.status=="failed")'
    """
    manager = get_manager()
    rows: list[dict[str, str]] = []
    for k in KINDS if kind is None else [kind]:
        for entry in manager.registry(k):
            p = entry.provenance
            rows.append({"kind": k, "name": entry.name, "plugin": p.plugin, "distribution": p.distribution,
                         "version": p.version, "status": "ok", "description": entry.description})
    for f in manager.failed:
        rows.append({"kind": "", "name": "", "plugin": f.plugin, "distribution": f.distribution,
                     "version": f.version, "status": "failed", "error": f.error})
    for name in manager.blocked:
        rows.append({"kind": "", "name": "", "plugin": name, "distribution": "", "version": "",
                     "status": "blocked"})
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    table = Table("kind", "name", "distribution", "plugin", "description", box=None, pad_edge=False)
    for r in rows:
        if r["status"] == "ok":
            table.add_row(r["kind"], r["name"], f"{r['distribution']} {r['version']}", r["plugin"],
                          escape(r["description"]))
    console = Console()
    if not console.is_terminal:  # piped: one row per line for grep and less, whatever $COLUMNS says
        console = Console(width=100_000, soft_wrap=True)
    console.print(table)
    for r in rows:
        if r["status"] == "failed":
            console.print(f"[red]FAILED[/red] plugin '{r['plugin']}' ({r['distribution']} {r['version']}): "
                          f"{escape(r['error'])}", highlight=False)
        elif r["status"] == "blocked":
            console.print(f"[yellow]blocked[/yellow] plugin '{r['plugin']}' (DIMSUM_DISABLE_PLUGINS)")
