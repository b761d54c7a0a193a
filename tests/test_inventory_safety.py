"""Inventory safety: credentials in a database URL are never stored (journal) nor printed
(errors, text and JSON)."""

from __future__ import annotations

import json
import socket
import sqlite3

import pytest
from cli_helpers import Inventory
from pgserver import pg_db, pg_url  # noqa: F401  (fixtures)

SECRET = "s3cr3t-Pw"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: nothing listens there


def _no_secret(*texts: str) -> None:
    for t in texts:
        assert SECRET not in t, t


# --- credentials --------------------------------------------------------------------------------------
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
    assert inv.ok("db-check") == ""  # the hash chain covers the masked line


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
