"""xe scripts run as written: every parameter of xe's commands and every field of xe's records
(tests/data/xe_names.tsv, derived from xen-api's cli_frontend.ml, cli_operations.ml and
records.ml) is taken by vmctl under the name the file gives, or refused for the reason it gives.

The binding checks run in-process against the command table; the field checks also run the
list and param-get commands on a demo inventory, so that a name accepted is a name that works."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
from cli_helpers import cli

from vmctl.cli.bind import bind
from vmctl.cli.grammar import Segment
from vmctl.commands import load
from vmctl.errors import VmctlError
from vmctl.fields import lookup_field, named_ref
from vmctl.model import XE_FIELDS, XE_NAME_FIELDS

DATA = Path(__file__).resolve().parent / "data" / "xe_names.tsv"


def _rows() -> list[tuple[str, str, str, str, str]]:
    out = []
    for line in DATA.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        kind, scope, xe, ours, *note = line.split("\t")
        out.append((kind, scope, xe, ours, note[0] if note else ""))
    return out


ROWS = _rows()
PARAMS: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
FIELDS: dict[str, list[tuple[str, str]]] = defaultdict(list)
for _kind, _scope, _xe, _ours, _note in ROWS:
    if _kind == "param":
        PARAMS[_scope].append((_xe, _ours, _note))
    else:
        FIELDS[_scope].append((_xe, _ours))

U = "00000000-0000-4000-8000-000000000001"


def _dummy(arg) -> str:
    """A value of the argument's type (binding checks types, not objects)."""
    if arg.type == "bool":
        return "true"
    if arg.type == "int":
        return "1"
    if arg.type == "size":
        return "1GiB"
    if arg.type in ("float", "rate", "duration"):
        return "1"
    if arg.type == "enum":
        return arg.values[0]
    if arg.type == "list":
        return U
    return U


def _bind(name: str, *words: str, skip: str | None = None):
    """Bind `name` with the given words and every other required argument filled in."""
    cmd = load()[name]
    args = [
        f"{a.name}:k=v" if a.type == "map" else f"{a.name}={_dummy(a)}"
        for a in cmd.args
        if a.required and a.name != skip
    ]
    return bind(cmd, Segment(name=name, args=[*args, *words]))


def _word(cmd, xe: str, ours: str) -> str:
    if xe.endswith(":"):
        return f"{xe}{U}={U}"
    if xe.endswith("-"):  # a key prefix (driver-params-KEY)
        return f"{xe}key=v"
    arg = cmd.arg(ours)
    return f"{xe}={_dummy(arg) if arg is not None else 'true'}"


def test_the_table_names_commands_vmctl_has():
    cmds = load()
    assert set(PARAMS) <= set(cmds), sorted(set(PARAMS) - set(cmds))
    assert len(PARAMS) > 100 and len(FIELDS) == 15  # the file was read whole


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_xe_parameters_bind_to_vmctl_names(name):
    cmd = load()[name]
    for xe, ours, note in PARAMS[name]:
        word = _word(cmd, xe, ours)
        if ours == "-":
            with pytest.raises(VmctlError) as e:
                _bind(name, word)
            assert e.value.code == "UNKNOWN_PARAMETER", (name, xe)
            assert note in e.value.message, (name, xe, e.value.message)
            continue
        if ours.startswith("--"):
            flag = ours[2:]
            for form in (f"{xe}=true", f"--{xe}"):
                b = _bind(name, form)
                assert b.minimal if flag == "minimal" else flag in b.flags, (name, form)
            b = _bind(name, f"{xe}=false")
            assert not b.minimal if flag == "minimal" else flag not in b.flags, (name, xe)
            continue
        skip = ours if ours != "field" else None
        b = _bind(name, word, skip=skip)
        if ours == "field":
            cls = cmd.list_of or cmd.selector or cmd.fields_of
            target = lookup_field(cls, xe.rstrip(":")).name
            # a filter on that field, or (creating and param-set commands) a field given as written
            assert target in {f for f, _, _ in b.filters} or word.split("=")[0] in b.raw, (name, xe)
        elif cmd.arg(ours).type == "map":
            assert ours in b.maps, (name, xe)
        else:
            assert ours in b.raw, (name, xe, sorted(b.raw))


@pytest.mark.parametrize("cls", sorted(FIELDS))
def test_xe_fields_name_vmctl_fields(cls):
    for xe, ours in FIELDS[cls]:
        if ours == "-":
            with pytest.raises(VmctlError) as e:
                lookup_field(cls, xe)
            assert e.value.code == "UNKNOWN_FIELD", (cls, xe)
        elif ours.startswith("name-label:"):
            assert named_ref(cls, xe) == ours.split(":", 1)[1], (cls, xe)
        else:
            assert lookup_field(cls, xe).name == ours, (cls, xe)


def test_every_declared_xe_name_is_in_the_table():
    """The model's alias tables hold xe's names only: each appears in the file."""
    known = {(cls, xe) for cls, rows in FIELDS.items() for xe, _ in rows}
    for table in (XE_FIELDS, XE_NAME_FIELDS):
        for cls, names in table.items():
            for xe in names:
                assert (cls, xe) in known, (cls, xe)


# --- the names at work: lists, params=, param-get on a demo inventory ----------------------------------
@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("xe-demo") / "inv.db"
    r = cli(db, "demo", "--pools", "1", "--hosts", "2", "--vms", "3", "--seed", "7")
    assert r.returncode == 0, r.stderr
    vm = cli(db, "vm-list", "--minimal").stdout.split(",")[0].strip()
    r = cli(
        db,
        "--",
        "--id=@g",
        "vm-group-create",
        "name-label=g",
        "placement=anti-affinity",
        "--",
        "vm-param-add",
        f"uuid={vm}",
        "param-name=groups",
        "param-key=@g",
    )
    assert r.returncode == 0, r.stderr
    # a tunnel, which the demo does not make, over the first host's management PIF
    pif = cli(db, "pif-list", "management=true", "--minimal").stdout.split(",")[0].strip()
    net = cli(db, "network-create", "name-label=tn").stdout.strip()
    r = cli(db, "tunnel-create", f"pif-uuid={pif}", f"network-uuid={net}")
    assert r.returncode == 0, r.stderr
    return db


def _json(db, *args):
    r = cli(db, "-f", "json", *args)
    assert r.returncode == 0, (args, r.stderr)
    return json.loads(r.stdout)


@pytest.mark.parametrize("cls", sorted(FIELDS))
def test_xe_columns_show_their_fields(demo_db, cls):
    names = ["uuid"] + [xe for xe, ours in FIELDS[cls] if ours != "-" and xe != "uuid"]
    rows = _json(demo_db, f"{cls}-list", "params=" + ",".join(names))
    ours = _json(demo_db, f"{cls}-list", "params=all")
    by_uuid = {r["uuid"]: r for r in ours}
    for row in rows:
        assert list(row) == names  # each column under the name it was asked by
        mine = by_uuid[row["uuid"]]
        for xe, target in FIELDS[cls]:
            if target == "-":
                continue
            if target.startswith("name-label:"):
                ref = target.split(":", 1)[1]
                if mine[ref]:
                    refcls = lookup_field(cls, ref).ref_class
                    name = _json(demo_db, f"{refcls}-param-get", f"uuid={mine[ref]}", "param-name=name-label")
                    assert row[xe] == name, (cls, xe)
                else:
                    assert row[xe] == "", (cls, xe)
            else:
                assert row[xe] == mine[target], (cls, xe)


@pytest.mark.parametrize("cls", sorted(XE_FIELDS))
def test_xe_param_names_get_and_filter(demo_db, cls):
    first = _json(demo_db, f"{cls}-list", "params=all")
    assert first, f"the fixture makes no {cls}"
    row = first[0]
    for xe, target in XE_FIELDS[cls].items():
        got = cli(demo_db, f"{cls}-param-get", f"uuid={row['uuid']}", f"param-name={xe}")
        want = cli(demo_db, f"{cls}-param-get", f"uuid={row['uuid']}", f"param-name={target}")
        assert got.returncode == 0 and got.stdout == want.stdout, (cls, xe, got.stderr)
        value = want.stdout.strip()
        if ";" in value or "," in value or not value:
            continue  # sets and maps filter with :contains, not by their rendering
        hits = _json(
            demo_db, f"{cls}-list", f"{xe}={value}", "params=uuid", *(["--all"] if cls == "vm" else [])
        )
        assert row["uuid"] in {h["uuid"] for h in hits}, (cls, xe, value)


def test_fast_path_reads_xe_names_as_the_normal_path(demo_db, tmp_path):
    from vmctl.cli.app import run_argv
    from vmctl.store import fastpath

    db = tmp_path / "inv.db"
    shutil.copy(demo_db, db)
    for words in (
        ["vbd-list", "params=vm-uuid,type,userdevice", "-f", "csv"],
        ["vbd-list", "type=DISK", "params=type", "--minimal"],
        ["vm-list", "params=VCPUs-max,name-label", "-f", "json"],
        ["vm-list", "params=VCPUs-max", "--minimal"],
        ["vdi-list", "params=type", "-f", "tsv"],
    ):
        argv = [f"--db={db}", *words]
        out_fast, out_slow = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out_fast):
            assert fastpath.try_run(argv) == 0, words
        with contextlib.redirect_stdout(out_slow):
            assert run_argv(argv) == 0, words
        assert out_fast.getvalue() == out_slow.getvalue(), words
