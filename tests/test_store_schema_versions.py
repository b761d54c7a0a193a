"""Schema versions: upgrades run once under the writer's lock; a dry run never upgrades the file;
an inventory from a newer vmctl is refused."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

from vmctl.errors import VmctlError
from vmctl.store import migrate, schema, schema_version
from vmctl.store.txn import Store

CURRENT = schema_version.SCHEMA_VERSION
NEXT = CURRENT + 1  # a made-up next version, with a made-up step


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

    monkeypatch.setattr(schema, "SCHEMA_VERSION", NEXT)
    monkeypatch.setattr(schema_version, "SCHEMA_VERSION", NEXT)
    monkeypatch.setitem(migrate.STEPS, NEXT, step2)
    dry = tmp_path / "dry.db"
    shutil.copy(v1, dry)
    s = Store(str(dry), dry_run=True)
    pools, _ = s.run(lambda t: t.all("pool"), False)
    assert [p["name-label"] for p in pools] == ["p"]  # read through an upgraded in-memory copy
    s.dispose()
    assert _version(dry) == CURRENT  # the file itself was not upgraded
    s = Store(str(v1))
    s.dispose()
    assert _version(v1) == NEXT
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


def test_version_1_inventory_gains_the_driver_fields(tmp_path):
    """A version-1 inventory (before real hosts) upgrades in place: every pool is a sim pool,
    hosts have no driver URI, nothing is pending (migrate.STEPS[2])."""
    path = tmp_path / "old.db"
    s = Store(str(path))
    s.run(
        lambda t: t.insert("host", {"name-label": "h", "pool": t.insert("pool", {"name-label": "p"})}),
        True,
        finish=lambda t: s.append_journal(t, "x"),
    )
    s.dispose()
    with sqlite3.connect(path) as c:  # turn it back into what version 1 wrote
        for table, column in (
            ("pool", "driver"),
            ("host", "driver_uri"),
            ("host", "ovsdb"),
            ("vm", "current_operations"),
            ("vdi", "current_operations"),
            ("vdi", "location"),
        ):
            c.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        c.execute("UPDATE meta SET value='1' WHERE key='schema-version'")
    s = Store(str(path))
    pools, _ = s.run(lambda t: t.all("pool"), False)
    hosts, _ = s.run(lambda t: t.all("host"), False)
    s.dispose()
    assert _version(path) == CURRENT == 3
    assert [p["driver"] for p in pools] == ["sim"]
    assert [(h["driver-uri"], h["ovsdb"]) for h in hosts] == [("", "")]


def test_version_2_inventory_gains_the_volume_locations(tmp_path):
    """A version-2 inventory upgrades in place: its disks have no volume yet (migrate.STEPS[3])."""
    path = tmp_path / "old.db"
    s = Store(str(path))

    def body(t):
        pool = t.insert("pool", {"name-label": "p"})
        t.insert("vdi", {"name-label": "d", "pool": pool, "virtual-size": 2 * 1024**2})

    s.run(body, True, finish=lambda t: s.append_journal(t, "x"))
    s.dispose()
    with sqlite3.connect(path) as c:  # turn it back into what version 2 wrote
        c.execute("ALTER TABLE vdi DROP COLUMN location")
        c.execute("UPDATE meta SET value='2' WHERE key='schema-version'")
    s = Store(str(path))
    vdis, _ = s.run(lambda t: t.all("vdi"), False)
    s.dispose()
    assert _version(path) == CURRENT == 3
    assert [(d["name-label"], d["location"]) for d in vdis] == [("d", "")]
