"""Schema versions: upgrades run once under the writer's lock; a dry run never upgrades the file;
an inventory from a newer vmctl is refused."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from vmctl.errors import VmctlError
from vmctl.store import migrate, schema, schema_version
from vmctl.store.txn import Store


def _version(path) -> int:
    with sqlite3.connect(path) as c:
        return int(c.execute("SELECT value FROM meta WHERE key='schema-version'").fetchone()[0])


@pytest.fixture
def v1(tmp_path):
    path = tmp_path / "v1.db"
    s = Store(str(path))
    s.run(lambda t: t.insert("pool", {"name-label": "p"}), True, finish=lambda t: s.append_journal(t, "x"))
    s.dispose()
    return path


def test_schema_upgrade_runs_once_and_never_on_a_dry_run(v1, tmp_path, monkeypatch):
    def step2(conn):
        conn.exec_driver_sql("CREATE TABLE upgraded_marker (x INTEGER)")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(schema_version, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(migrate.STEPS, 2, step2)
    dry = tmp_path / "dry.db"
    shutil.copy(v1, dry)
    s = Store(str(dry), dry_run=True)
    pools, _ = s.run(lambda t: t.all("pool"), False)
    assert [p["name-label"] for p in pools] == ["p"]  # read through an upgraded in-memory copy
    s.dispose()
    assert _version(dry) == 1  # the file itself was not upgraded
    s = Store(str(v1))
    s.dispose()
    assert _version(v1) == 2
    with sqlite3.connect(v1) as c:
        assert c.execute("SELECT count(*) FROM upgraded_marker").fetchone()[0] == 0
    Store(str(v1)).dispose()  # already current: nothing runs twice


def test_newer_schema_is_refused(v1):
    with sqlite3.connect(v1) as c:
        c.execute("UPDATE meta SET value='99' WHERE key='schema-version'")
    with pytest.raises(VmctlError) as e:
        Store(str(v1))
    assert e.value.code == "SCHEMA_TOO_NEW"


def test_cli_reports_newer_schema_without_traceback(inv, v1):
    with sqlite3.connect(v1) as c:
        c.execute("UPDATE meta SET value='99' WHERE key='schema-version'")
    r = inv.fail("--db", str(v1), "vm-create", "name-label=x", code="SCHEMA_TOO_NEW")
    assert "schema-version: 99" in r.err
