"""The plain-sqlite3 fast path must print exactly what the normal (SQLAlchemy) path prints,
and must read the same schema the SQLAlchemy Core tables define."""

from __future__ import annotations

import contextlib
import io
import shutil
import sqlite3

import pytest
from cli_helpers import Inventory

from vmctl.model import CLASSES
from vmctl.store import fastpath
from vmctl.store.schema import TABLES


def _capture(fn, argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = fn(argv)
    return rc, out.getvalue()


@pytest.fixture
def rich_inv(inv, rich_template):
    """small, plus a name with a comma and a backslash, a non-ASCII name, a template and a tag
    (a copy of one built once per module: the tests only read it)."""
    shutil.copy(rich_template, inv.db)
    return inv


@pytest.fixture(scope="module")
def rich_template(small_template, tmp_path_factory):
    small = Inventory(tmp_path_factory.mktemp("rich") / "inv.db")
    shutil.copy(small_template, small.db)
    small.ok(
        "vm-create",
        "name-label=a,b\\c",
        "memory=3GiB",
        "--",
        "vm-create",
        "name-label=ü",
        "vcpus=3",
        "--",
        "vm-create",
        "name-label=tpl",
        "is-a-template=true",
        "--",
        "vm-param-add",
        "uuid=web1",
        "param-name=tags",
        "param-key=x",
    )
    return small.db


CASES = [
    ["vm-list"],
    ["vm-list", "--minimal"],
    ["vm-list", "-f", "json"],
    ["vm-list", "-f", "csv"],
    ["vm-list", "-f", "tsv", "--no-headings"],
    ["-f", "json", "vm-list", "vcpus=2"],
    ["vm-list", "params=name-label,memory-static-max,tags", "-f", "csv"],
    ["vm-list", "--all", "--minimal"],
    ["vm-list", "memory-static-max=3GiB", "--minimal"],
    ["vm-list", "is-a-template=true", "-f", "json"],
    ["template-list", "-f", "csv"],
    ["snapshot-list", "-f", "json"],
    ["host-list", "params=uuid,name-label,address"],
    ["--minimal", "host-list"],
    ["pif-list", "params=uuid,device,network,vlan", "-f", "json"],
    ["network-list", "--minimal", "params=bridge"],
    ["vdi-list", "--minimal"],
    ["pool-list", "params=name-label,placement-policy", "-f", "csv"],
]


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(c) for c in CASES])
def test_fast_path_equals_normal_path(rich_inv, argv):
    from vmctl.cli.app import run_argv

    full = ["--db", str(rich_inv.db), *argv]
    rc_fast, fast = _capture(fastpath.try_run, full)
    assert rc_fast == 0, "the fast path should serve this request"
    rc, normal = _capture(run_argv, full)
    assert rc == 0
    assert fast == normal


def test_param_get_fast_path(rich_inv):
    from vmctl.cli.app import run_argv

    vm = rich_inv.ok("vm-list", "name-label=web1", "--minimal").strip()
    for words in (["param-name=memory-static-max"], ["param-name=tags"], ["param-name=name-label"]):
        full = ["--db", str(rich_inv.db), "vm-param-get", f"uuid={vm}", *words]
        rc_fast, fast = _capture(fastpath.try_run, full)
        assert rc_fast == 0
        assert fast == _capture(run_argv, full)[1]


def test_fast_path_declines_what_it_cannot_do(rich_inv):
    db = ["--db", str(rich_inv.db)]
    for argv in (
        ["host-list"],  # memory-free is derived
        ["vm-list", "params=all"],
        ["vm-list", "colour=red"],
        ["vm-list", "-f", "yaml"],
        ["vm-list", "--", "host-list"],
        ["vm-param-get", "uuid=nope", "param-name=vcpus"],
        ["--db=/nonexistent/x.db", "vm-list"],
    ):
        assert _capture(fastpath.try_run, [*db, *argv])[0] is None, argv


def test_fast_path_reads_the_core_schema(rich_inv):
    conn = sqlite3.connect(rich_inv.db)
    for name, c in CLASSES.items():
        cols = {r[1] for r in conn.execute(f'PRAGMA table_info("{c.table}")')}
        assert cols == {f.column for f in c.stored_fields}, name
        assert set(TABLES[name].c.keys()) == cols


OVS_CASES = [
    ["show"],
    ["list-br"],
    ["list-ports", "br-x"],
    ["--oneline", "list-ports", "br-x", "--", "br-to-vlan", "vl5"],
    ["list", "port", "p9"],
    ["get", "port", "p9", "tag"],
    ["--columns=name,tag", "list", "port"],
    ["br-to-parent", "vl5"],
    ["iface-to-br", "p9"],
]


def test_ovs_read_only_fast_path(small):
    from vmctl.cli.app import run_argv

    small.ok(
        "--host=h1",
        "add-br",
        "br-x",
        "--",
        "add-br",
        "vl5",
        "br-x",
        "5",
        "--",
        "add-port",
        "br-x",
        "p9",
        "tag=5",
    )
    for argv in OVS_CASES:
        full = ["--db", str(small.db), "--host=h1", *argv]
        rc_fast, fast = _capture(fastpath.try_run, full)
        assert rc_fast == 0, argv
        assert fast == _capture(run_argv, full)[1], argv
    for argv in (
        ["list-ports", "nope"],
        ["br-exists", "nope"],
        ["add-br", "x"],
        ["list", "nosuch"],
        ["-t", "0", "list-br"],
        ["-fake", "list-br"],
    ):
        assert _capture(fastpath.try_run, ["--db", str(small.db), "--host=h1", *argv])[0] is None, argv
