"""The typer shell is generated from the command table and forwards to the runner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from vmctl.cli import typer_app
from vmctl.commands import load


def test_typer_app_has_every_command_and_forwards(tmp_path, monkeypatch):
    monkeypatch.setenv("VMCTL_DB", str(tmp_path / "t.db"))
    from vmctl.cli.app import run_argv

    app = typer_app.build(run_argv)
    runner = CliRunner()
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for name in ("vm-create", "add-br", "journal-list"):
        assert name in r.output
    import typer.main

    group = typer.main.get_command(app)
    assert set(group.commands) == set(load())  # type: ignore[attr-defined]
    r = runner.invoke(app, ["pool-create", "name-label=p"])
    assert r.exit_code == 0
    r = runner.invoke(app, ["pool-list", "-f", "json"])
    assert r.exit_code == 0 and json.loads(r.output)[0]["name-label"] == "p"
