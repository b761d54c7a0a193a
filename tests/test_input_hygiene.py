"""Input hygiene: names and descriptions without control characters, control characters escaped in
every text output, ASCII-only numbers, no ambiguous `GB`, no empty names, objects named `@...`
reachable, and a journal whose newest entry cannot vanish unnoticed."""

from __future__ import annotations

import json
import sqlite3

import pytest
from cli_helpers import Inventory, cli, with_txn

import vmctl
from vmctl.errors import VmctlError

ESC = "\x1b[31mred"
CONTROLS = ["\x1b", "\n", "\r", "\t", "\x01", "\x7f", "\x9b", "\x85"]  # NUL: argv cannot hold it


@pytest.fixture
def inv(tmp_path) -> Inventory:
    i = Inventory(tmp_path / "inv.db")
    assert cli(i.db, "pool-create", "name-label=p").returncode == 0
    return i


def _vm(inv: Inventory, name: str = "web") -> str:
    r = cli(inv.db, "vm-create", f"name-label={name}")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _one_line_error(r, code: str) -> None:
    assert r.err.startswith(f"vmctl: {code}:"), r.err
    assert not any(c in r.err for c in ("\x1b", "\r", "\x9b")), r.err
    assert "control characters" in r.err.splitlines()[0]


# --- 1. control characters: refused on input ------------------------------------------------------
@pytest.mark.parametrize("c", CONTROLS, ids=[f"{ord(c):02x}" for c in CONTROLS])
def test_control_characters_refused_in_create_names(inv, c):
    _one_line_error(inv.fail("vm-create", f"name-label=a{c}b", code="INVALID_VALUE"), "INVALID_VALUE")
    _one_line_error(
        inv.fail("vm-create", "name-label=ok", f"name-description=a{c}b", code="INVALID_VALUE"),
        "INVALID_VALUE",
    )
    assert json.loads(inv.ok("vm-list", "-f", "json")) == []


@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
def test_control_characters_refused_on_every_path(inv):
    u = _vm(inv)
    for cmd in (
        ["pool-create", f"name-label={ESC}"],
        ["pool-create", "name-label=q", "name-description=a\nb"],
        ["sr-create", f"name-label={ESC}", "type=nfs", "physical-size=1GiB"],
        ["network-create", f"name-label={ESC}"],
        ["vm-group-create", f"name-label={ESC}", "placement=anti-affinity"],
        ["vm-clone", f"vm={u}", f"new-name-label={ESC}"],
        ["vm-snapshot", f"vm={u}", "new-name-label=s\n"],
    ):
        inv.fail(*cmd, code="INVALID_VALUE")
    for field in ("name-label", "name-description"):
        r = inv.fail("vm-param-set", f"uuid={u}", f"{field}=x{ESC}", code="FIELD_TYPE_ERROR")
        assert "control characters" in r.err.splitlines()[0]
    # a batch item, as a command line and as a mapping (YAML's "\e" is ESC)
    inv.fail("batch", "-", input='- "vm-create name-label=\\"a\\x1bb\\""\n', code="INVALID_VALUE")
    inv.fail("batch", "-", input='- {command: vm-create, name-label: "a\\eb"}\n', code="INVALID_VALUE")
    # the Python API
    api = vmctl.open(str(inv.db))
    for kw in (
        {"name_label": ESC},
        {"name_label": "a\x00b"},
        {"name_label": "ok", "name_description": "a\nb"},
    ):
        with pytest.raises(VmctlError) as e:
            api.run("vm-create", **kw)
        assert e.value.code == "INVALID_VALUE"
    with pytest.raises(VmctlError) as e:
        api.run("vm-param-set", uuid=u, name_label="a\x9bb")
    assert e.value.code == "FIELD_TYPE_ERROR"
    assert json.loads(inv.ok("vm-list", "params=name-label,name-description", "-f", "json")) == [
        {"name-label": "web", "name-description": ""}
    ]
    # other fields keep their text (escaped on output, below)
    inv.ok("vm-param-set", f"uuid={u}", "other-config:k=a\tb")


# --- 1. control characters: escaped on output -----------------------------------------------------
def _plant(inv: Inventory) -> str:
    """A VM whose name and other-config hold control characters, written past the checks (as an
    older vmctl or another client would have)."""
    u = _vm(inv)

    def put(txn):
        txn.update(
            "vm",
            u,
            {
                "name-label": f"a{ESC}\nb\x9b",
                "name-description": "x\ry",
                "other-config": {"k": "\x1b]0;title\x07"},
            },
        )

    with_txn(inv.db, put)
    return u


def _clean(text: str) -> None:
    for c in ("\x1b", "\r", "\x07", "\x9b"):
        assert c not in text, repr(text)


@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
def test_stored_control_characters_escaped_in_text_outputs(inv):
    u = _plant(inv)
    for tail in ([], ["--", "pool-list"]):  # the fast path, then the normal one
        table = inv.ok("vm-list", "params=name-label,other-config", *tail)
        _clean(table)
        assert "a\\x1b[31mred\\nb\\x9b" in table and "\\x1b]0;title\\x07" in table
        assert table.splitlines()[1].startswith("a\\x1b")  # one line per VM
        mini = inv.ok("vm-list", "params=name-label", "--minimal", *tail)
        _clean(mini)
        assert mini.splitlines()[0] == "a\\x1b[31mred\\nb\\x9b"
        for fmt in ("csv", "tsv"):
            out = inv.ok("vm-list", "params=name-label,name-description,other-config", "-f", fmt, *tail)
            _clean(out)
            assert len(out.splitlines()) == 2 + (len(tail) and 2), out
            assert "x\\ry" in out
        js = inv.ok("vm-list", "params=name-label,other-config", "-f", "json", *tail)
        _clean(js)
        assert "\\u009b" in js
    assert json.loads(js.split("\n]\n")[0] + "\n]\n")[0]["name-label"] == f"a{ESC}\nb\x9b"
    for cmd in (
        ["vm-param-list", f"uuid={u}"],
        ["vm-param-get", f"uuid={u}", "param-name=name-label"],
        ["vm-param-get", f"uuid={u}", "param-name=other-config", "param-key=k"],
        ["vm-param-get", f"uuid={u}", "param-name=name-label", "--", "pool-list"],
        ["vm-param-get", f"uuid={u}", "param-name=name-label", "--minimal"],
        ["vm-param-list", f"uuid={u}", "-f", "json"],
        ["vm-list", "-f", "yaml"],
        ["journal-list"],
    ):
        _clean(inv.ok(*cmd))
    assert len(inv.ok("vm-param-get", f"uuid={u}", "param-name=name-label").splitlines()) == 1
    # an error naming the object (its name in `uuid (name)`) and a failed lookup echoing its input
    r = inv.fail("vm-start", f"vm={u}", "host=nowhere")
    _clean(r.err)
    r = inv.fail("vm-param-get", "uuid=\x1b[2J", "param-name=uuid", code="UUID_INVALID")
    _clean(r.err)
    assert "\\x1b[2J" in r.err
    _clean(inv.fail("vm-param-get", "uuid=\x1b[2J", "param-name=uuid", "-f", "json").err)


def test_terminal_table_escapes_and_takes_no_markup():
    from vmctl.cli.output import render_records

    out = render_records("vm", [{"name-label": f"[red]x{ESC}"}], ["name-label"], "table", tty=True)
    assert "[red]x\\x1b[31mred" in out
    assert "\x1b[31mred" not in out


# --- 2. numbers and sizes ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["٣", "३", "³", "1_0", "𝟑"])
def test_integers_take_ascii_digits_only(inv, value):
    r = inv.fail("vm-create", "name-label=w", f"vcpus={value}", code="INVALID_VALUE")
    assert "digits 0-9" in r.err.splitlines()[0]
    inv.fail("vm-create", "name-label=w", f"memory={value}GiB", code="INVALID_VALUE")
    u = _vm(inv)
    inv.fail("vm-param-set", f"uuid={u}", f"vcpus={value}", code="FIELD_TYPE_ERROR")
    inv.fail("-t", value, "vm-list", rc=1)


def test_floats_take_ascii_digits_only():
    from vmctl.units import parse_float

    assert parse_float("1.5e3") == 1500.0
    for bad in ("٣", "1_0", "inf", "nan", "١.٥"):
        with pytest.raises(VmctlError):
            parse_float(bad)


@pytest.mark.parametrize("suffix", ["KB", "MB", "GB", "TB", "gb"])
def test_decimal_looking_size_suffixes_refused(inv, suffix):
    r = inv.fail("vm-create", "name-label=w", f"memory=4{suffix}", code="INVALID_VALUE")
    line = r.err.splitlines()[0]
    assert "ambiguous" in line and f"4{suffix.upper()[0]}iB" in line
    u = _vm(inv)
    r = inv.fail("vm-param-set", f"uuid={u}", f"memory-static-max=4{suffix}", code="FIELD_TYPE_ERROR")
    assert "ambiguous" in r.err.splitlines()[0]


def test_binary_size_suffixes_unchanged(inv):
    for text in ("4G", "4GiB", "4gib", str(4 * 2**30)):
        u = inv.ok("vm-create", "name-label=w", f"memory={text}").strip()
        assert inv.ok("vm-param-get", f"uuid={u}", "param-name=memory-static-max") == f"{4 * 2**30}\n"


# --- 2. empty names -----------------------------------------------------------------------------------
@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
def test_empty_name_label_refused_except_on_pools(inv):
    u = _vm(inv)
    for cmd in (
        ["vm-create", "name-label="],
        ["network-create", "name-label="],
        ["vm-clone", f"vm={u}", "new-name-label="],
        ["vm-group-create", "name-label=", "placement=affinity"],
    ):
        r = inv.fail(*cmd, code="INVALID_VALUE")
        assert "must not be empty" in r.err.splitlines()[0]
    inv.fail("vm-param-set", f"uuid={u}", "name-label=", code="FIELD_TYPE_ERROR")
    inv.fail("vm-param-clear", f"uuid={u}", "param-name=name-label", code="INVALID_VALUE")
    with pytest.raises(VmctlError) as e:
        vmctl.open(str(inv.db)).run("vm-create", name_label="")
    assert e.value.code == "INVALID_VALUE"
    # an empty description is the default; a pool may be unnamed, as XAPI's pools are
    inv.ok("vm-param-set", f"uuid={u}", "name-description=")
    pool = inv.ok("pool-create", "name-label=").strip()
    inv.ok("pool-param-set", f"uuid={pool}", "name-label=named")
    inv.ok("pool-param-set", f"uuid={pool}", "name-label=")
    inv.ok("pool-param-clear", f"uuid={pool}", "param-name=name-label")


# --- 2. names beginning with @ ------------------------------------------------------------------------
@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
def test_object_named_at_reachable_by_name(inv):
    u = inv.ok("vm-create", "name-label=@w").strip()
    assert inv.ok("vm-param-get", "uuid=@w", "param-name=uuid") == f"{u}\n"
    assert inv.ok("vm-param-get", "uuid=@w", "param-name=uuid", "--", "pool-list", "--minimal").startswith(u)
    inv.ok("vm-param-set", "uuid=@w", "vcpus=2")
    # an @name the chain defines wins over a name-label
    out = inv.ok(
        "--",
        "--id=@w",
        "vm-create",
        "name-label=other",
        "--",
        "vm-param-get",
        "uuid=@w",
        "param-name=name-label",
    )
    assert out.splitlines()[-1] == "other"
    # a reference of another class is still an error, and an unknown one a failed lookup
    inv.fail(
        "--",
        "--id=@w",
        "network-create",
        "name-label=n",
        "--",
        "vm-param-get",
        "uuid=@w",
        "param-name=uuid",
        code="UUID_INVALID",
    )
    inv.fail("vm-param-get", "uuid=@nope", "param-name=uuid", code="UUID_INVALID")


# --- 3. the journal's newest entry --------------------------------------------------------------------
def test_db_check_detects_deleted_newest_journal_entry(inv):
    _vm(inv)
    inv.ok("db-check")
    con = sqlite3.connect(inv.db)
    con.execute("DELETE FROM journal WHERE seq = (SELECT MAX(seq) FROM journal)")
    con.commit()
    con.close()
    r = inv.run("db-check")
    assert r.rc == 1 and "I16 journal 2: entries missing after 1" in r.out, r.out


def test_db_check_detects_replaced_newest_journal_entry(inv):
    _vm(inv)
    con = sqlite3.connect(inv.db)
    con.execute("DELETE FROM journal WHERE seq = 2")
    con.execute("DELETE FROM journal WHERE seq = 1")
    con.commit()
    con.close()
    r = inv.run("db-check")
    assert r.rc == 1 and "I16 journal 2: entries missing after 0" in r.out, r.out


@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
def test_db_check_clean_on_fresh_and_older_inventories(tmp_path):
    fresh = Inventory(tmp_path / "fresh.db")
    assert fresh.ok("db-check") == "db-check: all 16 invariants hold\n"
    old = Inventory(tmp_path / "old.db")
    old.ok("pool-create", "name-label=p")
    con = sqlite3.connect(old.db)
    con.execute("DELETE FROM meta WHERE key = 'journal-head'")  # as an older vmctl left it
    con.commit()
    con.close()
    assert old.ok("db-check") == "db-check: all 16 invariants hold\n"
    old.ok("vm-create", "name-label=w")  # the next append records the head
    assert old.ok("db-check") == "db-check: all 16 invariants hold\n"
    con = sqlite3.connect(old.db)
    assert con.execute("SELECT value FROM meta WHERE key = 'journal-head'").fetchone()[0].startswith("2 ")
    con.execute("DELETE FROM journal WHERE seq = 2")
    con.commit()
    con.close()
    assert old.run("db-check").rc == 1
