"""Inventory safety: credentials in a database URL are never stored (journal) nor printed
(errors, text and JSON); a read never creates, upgrades or adopts an inventory, and a database
of another application is refused."""

from __future__ import annotations

import json
import socket
import sqlite3

import pytest
from cli_helpers import Inventory, cli, run_cli
from pgserver import pg_db, pg_url  # noqa: F401  (fixtures)

from vmctl.store.schema_version import SCHEMA_VERSION as CURRENT

NEXT = CURRENT + 1  # a made-up next version, with a made-up upgrade step

SECRET = "s3cr3t-Pw"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


def _no_secret(*texts: str) -> None:
    for t in texts:
        assert SECRET not in t, t


# --- credentials --------------------------------------------------------------------------------------
@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://bob:{s}@127.0.0.1:{p}/inv", "postgresql://bob:***@127.0.0.1:{p}/inv"),
        (
            "postgresql://bob@127.0.0.1:{p}/inv?password={s}",
            "postgresql://bob@127.0.0.1:{p}/inv?password=***",
        ),
        (
            "postgresql://bob@127.0.0.1:{p}/inv?sslmode=disable&PGPASSWORD={s}",
            "postgresql://bob@127.0.0.1:{p}/inv?sslmode=disable&PGPASSWORD=***",
        ),
    ],
)
@pytest.mark.parametrize("command", [["vm-list"], ["pool-create", "name-label=p"]])
def test_database_error_never_prints_the_password(tmp_path, url, shown, command):
    port = _closed_port()
    url, shown = url.format(s=SECRET, p=port), shown.format(p=port)
    inv = Inventory(tmp_path / "unused.db")
    r = inv.fail(f"--db={url}", *command, code="DATABASE_ERROR")
    _no_secret(r.err)
    assert f"  db: {shown}\n" in r.err
    r = inv.fail("-f", "json", "--db", url, *command)
    _no_secret(r.err)
    err = json.loads(r.err)["error"]
    assert err["code"] == "DATABASE_ERROR" and err["params"]["db"] == shown
    r = inv.fail(*command, env={"VMCTL_DB": url}, code="DATABASE_ERROR")
    _no_secret(r.err)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://bob:{SECRET}@127.0.0.1:notaport/inv",
        f"sqlite://bob:{SECRET}@//tmp/x.db",
        f"nosuchdriver://bob:{SECRET}@h/inv",
    ],
)
def test_unusable_database_url_never_prints_the_password(tmp_path, url):
    inv = Inventory(tmp_path / "unused.db")
    r = inv.fail(f"--db={url}", "vm-list", code="DATABASE_ERROR")
    _no_secret(r.err)
    assert "bob:***@" in r.err


def _journal_texts(inv: Inventory) -> list[str]:
    """The journal as vmctl shows it and as the file stores it (every column of every entry)."""
    shown = inv.ok("journal-list", "params=all", "-f", "json")
    with sqlite3.connect(inv.db) as c:
        raw = [json.dumps(row) for row in c.execute("SELECT * FROM journal")]
    return [shown, *raw]


@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
def test_journal_never_stores_a_password_given_on_the_command_line(tmp_path):
    inv = Inventory(tmp_path / "inv.db")
    db_url = f"sqlite:///{inv.db}?password={SECRET}"
    inv.ok(f"--db={db_url}", "pool-create", "name-label=p")
    # a chain with such a URL as an argument of a command (a filter here, never stored itself)
    inv.ok(
        "vm-create", "name-label=a", "--", "vm-list", f"name-label=postgresql://bob:{SECRET}@db.example/inv"
    )
    batch = tmp_path / "b.yaml"
    batch.write_text(f'- "vm-create name-label=b"\n- "vm-list name-label=postgresql://bob:{SECRET}@h/x"\n')
    inv.ok("batch", str(batch))
    chained = tmp_path / "c.yaml"  # continue mode: an item is its own transaction
    chained.write_text(f'- "vm-create name-label=c -- vm-list name-label=postgresql://bob:{SECRET}@h/x"\n')
    inv.ok("batch", str(chained), "--continue-on-error")
    texts = _journal_texts(inv)
    _no_secret(*texts)
    commands = [e["command"] for e in json.loads(texts[0])]
    assert commands[0] == f"vmctl '--db=sqlite:///{inv.db}?password=***' pool-create name-label=p"
    assert commands[1].endswith("vm-list 'name-label=postgresql://bob:***@db.example/inv'")
    assert "postgresql://bob:***@h/x" in commands[2] and "postgresql://bob:***@h/x" in commands[3]
    assert inv.ok("db-check") == "db-check: all 16 invariants hold\n"  # the hash chain covers the masked line


@pytest.mark.postgres
def test_postgresql_password_is_neither_journaled_nor_printed(pg_db):  # noqa: F811
    # the test server trusts local connections: any password connects
    url = pg_db.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@", 1)
    shown = pg_db.replace("postgresql://postgres@", "postgresql://postgres:***@", 1)
    inv = Inventory(pg_db)
    inv.ok(f"--db={url}", "pool-create", "name-label=p", env={"VMCTL_DB": url})
    inv.ok("--db", url, "vm-create", "name-label=a", env={"VMCTL_DB": url})
    out = inv.ok("journal-list", "params=all", "-f", "json", env={"VMCTL_DB": url})
    _no_secret(out)
    assert [e["command"] for e in json.loads(out)] == [
        f"vmctl '--db={shown}' pool-create name-label=p",
        f"vmctl --db '{shown}' vm-create name-label=a",
    ]
    import psycopg

    with psycopg.connect(pg_db) as c:
        _no_secret(*(json.dumps(r, default=str) for r in c.execute("SELECT * FROM journal")))
    bad = url.rsplit("/", 1)[0] + "/no_such_database"
    r = inv.fail("-f", "json", f"--db={bad}", "vm-list", env={"VMCTL_DB": bad})
    _no_secret(r.err)
    assert json.loads(r.err)["error"]["code"] == "DATABASE_ERROR"


# --- reads never create, upgrade or adopt ----------------------------------------------------------------
def _foreign(path) -> bytes:
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE foo (x)")
        c.execute("INSERT INTO foo VALUES (1)")
    c.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    "command",
    [
        ["vm-list"],
        ["vm-list", "--minimal"],  # served by the plain-sqlite3 fast path when it can
        ["vm-list", "-f", "json"],
        ["vm-param-get", "uuid=x", "param-name=vcpus"],
        ["journal-list"],
        ["list-br"],
        ["pool-create", "name-label=p"],
        ["--dry-run", "pool-create", "name-label=p"],
    ],
)
def test_another_applications_sqlite_file_is_refused_and_left_alone(tmp_path, command):
    other = tmp_path / "other.db"
    before = _foreign(other)
    inv = Inventory(other)
    r = inv.fail(*command, code="DATABASE_ERROR")
    assert r.err.splitlines()[0] == "vmctl: DATABASE_ERROR: The database is not a vmctl inventory"
    assert "reason: it holds other tables (foo) and no vmctl schema" in r.err
    assert other.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]


@pytest.mark.parametrize(
    "command, out",
    [
        (["vm-list"], "uuid  name-label  power-state  resident-on  vcpus  memory-static-max\n"),
        (["vm-list", "--minimal"], "\n"),
        (["vm-list", "-f", "json"], "[]\n"),
        (["host-list", "-f", "csv", "params=uuid"], "uuid\n"),
        (["journal-list", "--minimal"], "\n"),
        (["db-check"], "db-check: all 16 invariants hold\n"),
        (["--dry-run", "pool-create", "name-label=p", "--", "pool-list", "params=name-label"], None),
    ],
)
def test_a_read_of_a_missing_inventory_creates_neither_file_nor_directory(tmp_path, command, out):
    db = tmp_path / "new" / "dir" / "x.db"
    r = run_cli(db, f"--db={db}", *command)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    if out is not None:
        assert r.stdout == out
    assert not (tmp_path / "new").exists()
    r = run_cli(db, "vm-param-get", "uuid=x", "param-name=vcpus")  # VMCTL_DB
    assert r.returncode == 1 and r.stderr.startswith("vmctl: UUID_INVALID:")
    assert not (tmp_path / "new").exists()


def test_a_write_creates_the_inventory_and_its_directory(tmp_path):
    db = tmp_path / "new" / "dir" / "x.db"
    inv = Inventory(db)
    inv.ok("pool-create", "name-label=p")
    assert db.is_file()
    assert inv.ok("pool-list", "params=name-label", "--minimal") == "p\n"


def test_an_empty_file_reads_as_an_empty_inventory_until_a_write(tmp_path):
    db = tmp_path / "empty.db"
    db.write_bytes(b"")
    inv = Inventory(db)
    assert inv.ok("vm-list", "--minimal") == "\n"
    assert inv.ok("vm-list", "-f", "json") == "[]\n"
    assert db.read_bytes() == b""
    inv.ok("pool-create", "name-label=p")
    assert inv.ok("pool-list", "params=name-label", "--minimal") == "p\n"


@pytest.fixture
def older_schema(tmp_path, monkeypatch):
    """An inventory of the current schema while this vmctl's is the next (a made-up upgrade step)."""
    from vmctl.store import migrate, schema, schema_version

    db = tmp_path / "v1.db"
    assert cli(db, "pool-create", "name-label=p").returncode == 0

    def step2(conn):
        conn.exec_driver_sql("CREATE TABLE upgraded_marker (x INTEGER)")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", NEXT)
    monkeypatch.setattr(schema_version, "SCHEMA_VERSION", NEXT)
    monkeypatch.setitem(migrate.STEPS, NEXT, step2)
    return db


def _version(db) -> int:
    with sqlite3.connect(db) as c:
        return int(c.execute("SELECT value FROM meta WHERE key='schema-version'").fetchone()[0])


def test_a_read_of_an_older_schema_does_not_upgrade_it(older_schema):
    r = cli(older_schema, "pool-list", "params=name-label", "--minimal")
    assert (r.returncode, r.stdout, r.stderr) == (0, "p\n", "")
    assert _version(older_schema) == CURRENT
    r = cli(older_schema, "vm-create", "name-label=a")  # any write upgrades it
    assert r.returncode == 0, r.stderr
    assert _version(older_schema) == NEXT


def test_a_write_refuses_a_foreign_file_checked_under_the_lock(tmp_path):
    """The Python store, as the API and the runner open it, refuses the same way."""
    from vmctl.errors import VmctlError
    from vmctl.store.txn import Store

    other = tmp_path / "other.db"
    before = _foreign(other)
    for read_only in (True, False):
        with pytest.raises(VmctlError) as e:
            Store(str(other), read_only=read_only)
        assert e.value.code == "DATABASE_ERROR" and "not a vmctl inventory" in e.value.message
    assert other.read_bytes() == before


@pytest.mark.postgres
def test_postgresql_database_without_vmctl_tables(pg_db, monkeypatch):  # noqa: F811
    import psycopg

    inv = Inventory(pg_db)
    env = {"VMCTL_DB": pg_db}

    def tables() -> list[str]:
        with psycopg.connect(pg_db) as c:
            return sorted(
                r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            )

    r = inv.fail("vm-list", env=env, code="DATABASE_ERROR")
    assert "not a vmctl inventory" in r.err and "any write command creates them" in r.err
    assert inv.ok("--dry-run", "pool-create", "name-label=p", env=env).strip()
    assert tables() == []  # neither the read nor the dry run created anything
    with psycopg.connect(pg_db) as c:
        c.execute("CREATE TABLE foo (x int)")
    for command in (["vm-list"], ["pool-create", "name-label=p"]):
        r = inv.fail(*command, env=env, code="DATABASE_ERROR")
        assert "reason: it holds other tables (foo) and no vmctl schema" in r.err
    assert tables() == ["foo"]
    with psycopg.connect(pg_db) as c:
        c.execute("DROP TABLE foo")
    inv.ok("pool-create", "name-label=p", env=env)  # a write creates the schema
    assert inv.ok("pool-list", "params=name-label", "--minimal", env=env) == "p\n"

    # an older schema: a read cannot go through an in-memory copy here, it says what to do
    from vmctl.errors import VmctlError
    from vmctl.store import migrate, schema, schema_version
    from vmctl.store.txn import Store

    monkeypatch.setattr(schema, "SCHEMA_VERSION", NEXT)
    monkeypatch.setattr(schema_version, "SCHEMA_VERSION", NEXT)
    monkeypatch.setitem(migrate.STEPS, NEXT, lambda conn: None)
    for kw in ({"read_only": True}, {"dry_run": True}):
        with pytest.raises(VmctlError) as e:
            Store(pg_db, **kw)
        assert e.value.code == "SCHEMA_TOO_OLD"
    Store(pg_db).dispose()  # a writer upgrades it
    Store(pg_db, read_only=True).dispose()
