"""The plugin manager: built-ins load through entry points, blocking, clashes, broken plugins."""

from __future__ import annotations

import json
import types
from importlib import metadata

import pytest
from click.testing import CliRunner

from dimsum_core.cli.main import cli
from dimsum_core.errors import UnknownComponentError
from dimsum_core.plugin import hookimpl, manager
from dimsum_core.registry import Provenance


class FakeDist:
    """A stand-in for an installed distribution with `dimsum` entry points."""

    def __init__(self, name: str, entry_points: dict[str, str]):
        self.metadata = {"Name": name}
        self.version = "9.9"
        self.entry_points = [metadata.EntryPoint(n, v, "dimsum") for n, v in entry_points.items()]


def plugin_module(name: str, scans: dict[str, type]) -> types.ModuleType:
    mod = types.ModuleType(name)

    @hookimpl
    def dimsum_add_scans(registry):  # noqa: ANN001, ANN202
        for scan_name, cls in scans.items():
            registry.add(scan_name, cls)

    mod.dimsum_add_scans = dimsum_add_scans
    return mod


class _Scan:
    """A scan used only by these tests."""


@pytest.fixture
def fake_installed(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Install extra fake distributions next to the real ones; returns a function to add them."""
    extra: list[FakeDist] = []
    real = metadata.distributions

    monkeypatch.setattr(manager.metadata, "distributions", lambda: [*real(), *extra])
    manager.reset_manager()
    yield extra.append
    manager.reset_manager()


def test_builtins_are_registered_through_entry_points() -> None:
    m = manager.PluginManager()
    m.load_entry_points()
    assert not [f for f in m.failed if f.distribution == "dimsum"], m.failed
    for kind, name in [("scan", "sweep4"), ("wavelet", "haar"), ("fusion", "cross-attention"),
                       ("model", "dimsum-L/2"), ("model", "dit-L/2")]:
        entry = m.registry(kind).get(name)
        assert entry.provenance.distribution == "dimsum"
        assert entry.provenance.plugin.startswith("builtin-")


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(UnknownComponentError, match="did you mean 'sweep4'"):
        manager.registry("scan").get("swep4")


def test_broken_plugin_is_reported_and_everything_else_works(fake_installed, monkeypatch) -> None:  # noqa: ANN001
    fake_installed(FakeDist("broken-dist", {"broken": "dimsum_no_such_module_xyz"}))
    m = manager.get_manager()
    failed = m.failed
    assert [(f.plugin, f.distribution) for f in failed] == [("broken", "broken-dist")]
    assert "ModuleNotFoundError" in failed[0].error
    assert "sweep4" in m.registry("scan")
    result = CliRunner().invoke(cli, ["list-plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    failed = [r for r in rows if r["status"] == "failed" and r["distribution"] == "broken-dist"]
    assert failed == [{"kind": "", "name": "", "plugin": "broken", "distribution": "broken-dist",
                       "version": "9.9", "status": "failed", "error": failed[0]["error"]}]
    assert {"kind", "name", "distribution", "status"} <= set(rows[0])
    assert any(r["name"] == "sweep4" and r["distribution"] == "dimsum" for r in rows)
    # the table view and other commands still work
    assert CliRunner().invoke(cli, ["list-plugins"]).exit_code == 0
    assert CliRunner().invoke(cli, ["doctor"]).exit_code == 0


def test_plugin_whose_hook_raises_is_failed_and_rolled_back() -> None:
    m = manager.PluginManager()
    mod = types.ModuleType("half_broken")

    @hookimpl
    def dimsum_add_scans(registry):  # noqa: ANN001, ANN202
        registry.add("half-registered", _Scan)
        raise RuntimeError("boom")

    mod.dimsum_add_scans = dimsum_add_scans
    m.register(mod, Provenance("half", "half-dist", "1"))
    assert "half-registered" not in m.registry("scan")
    assert m.failed[0].plugin == "half" and "RuntimeError: boom" in m.failed[0].error


def test_name_clash_fails_the_newcomer_whole_and_names_both_distributions() -> None:
    m = manager.PluginManager()
    m.register(plugin_module("a", {"spiral": _Scan}), Provenance("first", "dist-one", "1"))
    m.register(plugin_module("b", {"own": _Scan, "spiral": _Scan}), Provenance("second", "dist-two", "1"))
    assert m.registry("scan").get("spiral").provenance.plugin == "first"
    assert "own" not in m.registry("scan")  # the newcomer is left out whole
    [failed] = m.failed
    assert failed.plugin == "second" and failed.error == (
        "scan 'spiral' is registered twice: by plugin 'first' (distribution dist-one) and by plugin 'second' "
        "(distribution dist-two); uninstall one of them or block it with DIMSUM_DISABLE_PLUGINS=second")


SWEEP4_AGAIN = """
from dimsum_core.plugin import hookimpl


@hookimpl
def dimsum_add_scans(registry):
    registry.add("my-scan", object)
    registry.add("sweep4", object)
"""


@pytest.mark.parametrize("plugins, reason", [
    ({"shadow": SWEEP4_AGAIN}, "scan 'sweep4' is registered twice: by plugin 'builtin-scans' (distribution dimsum) "
                               "and by plugin 'shadow' (distribution third-party); uninstall one of them or block "
                               "it with DIMSUM_DISABLE_PLUGINS=shadow"),
    ({"builtin-scans": "x = 1"}, "entry point name 'builtin-scans' is already taken by dimsum; rename this "
                                 "plugin's entry point"),
    ({"quits": "import sys\nsys.exit(3)"}, "SystemExit: the plugin called sys.exit(3) while loading"),
    ({"interrupts": "raise KeyboardInterrupt"}, "KeyboardInterrupt: "),
])
def test_misbehaving_plugins_leave_every_command_and_every_builtin_working(
        fake_installed, plugins, reason, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    for name, source in plugins.items():
        (tmp_path / f"plugin_{name.replace('-', '_')}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_installed(FakeDist("third-party", {name: f"plugin_{name.replace('-', '_')}" for name in plugins}))
    m = manager.get_manager()
    [failed] = [f for f in m.failed if f.distribution == "third-party"]
    assert failed.error.startswith(reason), failed.error
    assert m.registry("scan").get("sweep4").provenance.plugin == "builtin-scans"
    assert "my-scan" not in m.registry("scan")  # a failed plugin leaves nothing behind
    listing = CliRunner().invoke(cli, ["list-plugins"])
    assert listing.exit_code == 0 and "FAILED plugin" in listing.output
    result = CliRunner().invoke(cli, ["validate", "quickstart", "train.steps=5"])
    assert result.exit_code == 0, result.output


def test_validate_sees_a_default_component_a_disabled_plugin_took_away(fake_installed, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("DIMSUM_DISABLE_PLUGINS", "builtin-scans")
    result = CliRunner().invoke(cli, ["validate", "quickstart"])
    assert result.exit_code == 2
    assert "model: unknown scan 'sweep4'" in result.output and "Traceback" not in result.output


def test_list_plugins_rows_stay_one_line_when_piped(fake_installed) -> None:  # noqa: ANN001
    fake_installed(FakeDist("broken-dist", {"broken": "dimsum_no_such_module_xyz_with_a_rather_long_name"}))
    output = CliRunner().invoke(cli, ["list-plugins"], env={"COLUMNS": "80"}).output
    failed = [line for line in output.splitlines() if "broken-dist" in line]
    assert len(failed) == 1 and "No module named 'dimsum_no_such_module_xyz_with_a_rather_long_name' (" in failed[0]
    sweep4 = [line for line in output.splitlines() if line.split()[:2] == ["scan", "sweep4"]]
    assert len(sweep4) == 1 and sweep4[0].rstrip().endswith("(layer % 4).")


def test_disable_env_blocks_plugins(fake_installed, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("DIMSUM_DISABLE_PLUGINS", "builtin-fusions, broken")
    fake_installed(FakeDist("broken-dist", {"broken": "dimsum_no_such_module_xyz"}))
    m = manager.get_manager()
    assert set(m.blocked) == {"builtin-fusions", "broken"}
    assert len(m.registry("fusion")) == 0 and not [f for f in m.failed if f.distribution == "dimsum"]
    rows = json.loads(CliRunner().invoke(cli, ["list-plugins", "--json"]).output)
    assert {r["plugin"] for r in rows if r["status"] == "blocked"} == {"builtin-fusions", "broken"}


def test_list_plugins_kind_filter() -> None:
    result = CliRunner().invoke(cli, ["list-plugins", "--kind", "wavelet", "--json"])
    rows = [r for r in json.loads(result.output) if r["status"] == "ok"]
    assert {r["name"] for r in rows} == {"haar", "pywavelets"}
    assert all(r["kind"] == "wavelet" for r in rows)


def test_plugin_guide_lists_the_builtin_names_of_every_kind() -> None:
    """docs/plugins.md tells plugin authors which names are taken; it must name exactly the built-ins."""
    import re
    from pathlib import Path

    from dimsum_core.registry import KINDS

    text = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    rows = dict(re.findall(r"^\| (\w+) \| (`[^|]*`) \|$", text, re.M))  # the two-column table
    assert set(rows) == set(KINDS)
    for kind, cell in rows.items():
        documented = set(re.findall(r"`([^`]+)`", cell))
        builtin = {e.name for e in manager.registry(kind) if e.provenance.distribution == "dimsum"}
        if "…" in cell:  # size presets elided between the first and the last
            assert documented <= builtin, kind
        else:
            assert documented == builtin, kind
