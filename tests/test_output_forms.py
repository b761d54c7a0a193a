"""The forms of vmctl's output (README "Output"): whole byte counts, one JSON layout for every
document, ovs-vsctl's JSON for `list -f json`, terminal tables that never cut a uuid, a readable
`journal-list params=all`, the copy report of vm-clone --explain, and the Python API's journal
entries with their arguments."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from cli_helpers import Inventory, cli

GiB = 1024**3
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
BYTE_KEYS = ("memory", "bytes", "storage-bytes", "dirty-rate", "rate", "bytes-to-copy")


def _ok(db, *args: str, input: str | None = None) -> str:
    p = cli(db, *args, input=input)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _batch(db, lines: list[str]) -> None:
    _ok(db, "batch", "-", input="".join(f"- {json.dumps(x)}\n" for x in lines))


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """Three hosts; db1 (16 GiB, a disk on the shared SR) runs on h1, web1 on h3; db2 halted."""
    db = tmp_path_factory.mktemp("forms") / "inv.db"
    _batch(
        db,
        [
            "pool-create name-label=lab",
            *(
                f"host-add name-label=h{i} address=10.0.0.{i} cpu-count=32 memory-total=256GiB pool=lab pifs=eth0"
                for i in (1, 2, 3)
            ),
            "sr-create name-label=nfs type=nfs physical-size=4TiB pool=lab",
            "vm-create name-label=web1 memory=4GiB vcpus=2",
            "-- --id=@d vm-create name-label=db1 memory=16GiB vcpus=4",
            "vm-disk-add vm=@d disk-size=40GiB sr-uuid=nfs",
            "-- --id=@h vm-create name-label=db2 memory=2GiB vcpus=1",
            "vm-disk-add vm=@h disk-size=8GiB sr-uuid=nfs",
        ],
    )
    _ok(db, "vm-start", "vm=web1", "on=h3", "--", "vm-start", "vm=db1", "on=h1")
    return db


# --- vm-clone --explain ----------------------------------------------------------------------------------------
def test_vm_clone_explain_shows_source_disk_then_clone(lab):
    inv = Inventory(lab)
    vm = _ok(lab, "vm-list", "name-label=db2", "--minimal").strip()
    src = _ok(lab, "vbd-list", f"vm={vm}", "type=disk", "params=vdi", "--minimal").strip()
    assert UUID.fullmatch(src)
    text = inv.ok("vm-clone", "vm=db2", "new-name-label=db2c", "--explain", "--dry-run")
    new_vm, line, total = text.splitlines()
    assert UUID.fullmatch(new_vm) and total == "# bytes to copy: 0"
    m = re.fullmatch(
        rf"# device 0: ({UUID.pattern}) -> ({UUID.pattern}) on SR .*: 0 bytes \(copy-on-write\)", line
    )
    assert m, line
    assert m.group(1) == src and m.group(2) != src
    data = json.loads(
        inv.ok("vm-clone", "vm=db2", "new-name-label=db2c", "--explain", "--dry-run", "-f", "json")
    )
    (c,) = data["copies"]
    assert c["source"] == src and c["target"] not in ("", src)


# --- byte counts -----------------------------------------------------------------------------------------------
def _walk_bytes(value, key=None):
    if isinstance(value, dict):
        for k, v in value.items():
            if not k.startswith("sigma"):  # a rebalancing plan's sigmas are ratios
                yield from _walk_bytes(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_bytes(v, key)
    elif key in BYTE_KEYS:
        yield key, value


@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
def test_plan_byte_counts_are_whole_numbers_in_every_format(lab):
    inv = Inventory(lab)
    plans = [
        ("vm-migrate", "vm=db1", "--dry-run"),
        ("vm-migrate", "vm=db1", "host=h2", "bandwidth=1190M", "--dry-run"),
        ("host-evacuate", "host=h1", "--dry-run"),
        ("pool-rebalance", "--dry-run"),
    ]
    for words in plans:
        for fmt, load in (("json", json.loads), ("yaml", yaml.safe_load)):
            found = list(_walk_bytes(load(inv.ok(*words, "-f", fmt))))
            assert found, words
            for key, v in found:
                assert v is None or type(v) is int, (words, fmt, key, v)
    sigma = json.loads(inv.ok("pool-rebalance", "--dry-run", "-f", "json"))["sigma-before"]
    assert 0 < sigma["memory"] < 1  # a ratio keyed memory is no byte count
    rows = list(csv.DictReader(io.StringIO(inv.ok("vm-migrate", "vm=db1", "--dry-run", "-f", "csv"))))
    for key in ("bytes", "storage-bytes", "memory", "rate", "dirty-rate"):
        assert rows[0][key].isdigit(), (key, rows[0][key])
    rows = list(csv.DictReader(io.StringIO(inv.ok("host-evacuate", "host=h1", "--dry-run", "-f", "csv"))))
    assert rows and all(r["bytes"].isdigit() and r["memory"].isdigit() for r in rows)


# --- one JSON layout -------------------------------------------------------------------------------------------
def _layout_ok(text: str) -> None:
    """README: an array one element a line, an object one key a line, an object inside an array
    whole on its line; empty containers as [] and {}."""
    doc = json.loads(text)
    from vmctl.cli.output import json_document

    assert text == json_document(doc)


@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
def test_plans_chains_and_batches_share_the_list_layout(lab):
    inv = Inventory(lab)
    plan = inv.ok("host-evacuate", "host=h1", "--dry-run", "-f", "json")
    _layout_ok(plan)
    lines = plan.splitlines()
    i = lines.index('  "moves": [')
    assert lines[i + 1].startswith('    {"wave": 1, "vm": ') and lines[i + 1].endswith("}")  # a move a line
    for words in (("vm-migrate", "vm=db1", "--dry-run"), ("pool-rebalance", "--dry-run")):
        _layout_ok(inv.ok(*words, "-f", "json"))
    chain = inv.ok(
        "-f", "json", "--dry-run", "--", "vm-migrate", "vm=db1", "--", "vm-list", "params=uuid,name-label"
    )
    _layout_ok(chain)
    lines = chain.splitlines()
    assert lines[0] == "[" and lines[1].startswith('  {"vm": ') and lines[2] == "  ["
    assert lines[3].startswith('    {"uuid": ') and lines[-1] == "]"
    batch = inv.ok(
        "-f", "json", "batch", "-", "--dry-run", input='- vm-migrate vm=db1\n- "vm-list params=name-label"\n'
    )
    _layout_ok(batch)
    assert batch.splitlines()[1].startswith('  {"vm": ')
    cont = inv.ok(
        "-f", "json", "batch", "-", "--dry-run", "--continue-on-error", input="- vm-migrate vm=db1\n"
    )
    _layout_ok(cont)
    assert len(cont.splitlines()) == 3
    # lists and param-list keep their forms
    _layout_ok(inv.ok("vm-list", "-f", "json"))
    _layout_ok(inv.ok("vm-param-list", "uuid=db1", "-f", "json"))


# --- ovs-style list -f json --------------------------------------------------------------------------------------
@pytest.fixture
def switch(tmp_path) -> Inventory:
    inv = Inventory(tmp_path / "inv.db")
    inv.ok("host-add", "name-label=h1", "address=10.0.0.1", "cpu-count=4", "memory-total=8GiB", "pifs=")
    inv.ok(
        "--",
        "add-br",
        "br0",
        "--",
        "add-port",
        "br0",
        "p1",
        "--",
        "set",
        "port",
        "p1",
        "tag=5",
        "other_config:a=b",
        "trunks=1,2",
    )
    return inv


def test_ovs_list_json_is_ovs_vsctl_json(switch):
    iface = switch.ok("get", "interface", "p1", "_uuid").strip()
    port = switch.ok("get", "port", "p1", "_uuid").strip()
    want = (
        '{"data":[["p1",5,["set",[1,2]],["map",[["a","b"]]],["uuid","IFACE"],["set",[]],["map",[]]]],'
        '"headings":["name","tag","trunks","other_config","interfaces","mac","external_ids"]}\n'
    ).replace("IFACE", iface)
    cols = "--columns=name,tag,trunks,other_config,interfaces,mac,external_ids"
    assert switch.ok("--format=json", cols, "list", "port", "p1") == want
    assert switch.ok("-f", "json", "--", cols, "list", "port", "p1") == want  # the read-only fast path
    # in a chain with a write (the normal path), each table one object a line, as ovs-vsctl
    out = switch.ok(
        "-f",
        "json",
        "--",
        "set",
        "port",
        "p1",
        "tag=6",
        "--",
        "--columns=_uuid,name",
        "list",
        "port",
        "p1",
        "--",
        "list-br",
    )
    assert out == '{"data":[[["uuid","PORT"],"p1"]],"headings":["_uuid","name"]}\nbr0\n'.replace("PORT", port)


@pytest.mark.ovs
def test_ovs_list_json_matches_the_real_ovs_vsctl():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.ovs.oracle import Canon, OvsOracle, VmctlState, _cli, missing_tools

    why = missing_tools()
    if why:
        pytest.skip(why)
    seq = [
        ["add-br", "br0", "--", "add-port", "br0", "p1", "--", "set", "port", "p1", "tag=5", "trunks=1,2"],
        ["set", "port", "p1", 'other_config:k="é\\u0001x"', "external_ids:z=y"],
        ["--format=json", "list", "port", "p1"],
        ["--format=json", "list", "bridge", "br0"],
        ["-f", "json", "list", "interface", "p1"],
        ["--format=json", "--columns=name,_uuid,name", "list", "bridge"],
        ["--format=json", "--no-headings", "--columns=name,tag", "list", "port", "p1"],
        ["--format=json", "--if-exists", "list", "port", "nope"],
        ["--format=json", "--", "list", "port", "p1", "--", "list-br"],
    ]
    o = OvsOracle()
    try:
        o.start()
        state = VmctlState()
        ca, cb = Canon(), Canon()
        for argv in seq:
            want = ca(argv, *o.run(argv))
            have = cb(argv, *_cli(state, argv))
            assert have == want, argv
    finally:
        o.close()


# --- terminal tables ---------------------------------------------------------------------------------------------
def _strip(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.parametrize("columns", [200, 100, 80, 60, 40])
def test_terminal_table_never_cuts_a_uuid(monkeypatch, columns):
    from vmctl.cli import output
    from vmctl.commands.table import Records

    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("LINES", "24")
    a, b = "f00000e9-0e64-4125-b464-222674df824b", "0b7d6a2c-95f1-4f55-9d54-6a3c8c1e1f42"
    rows = [
        {
            "uuid": a,
            "name-label": "a rather long name label " * 3,
            "power-state": "halted",
            "resident-on": b,
            "other-config": {"owner": "ops" * 20},
        }
    ]
    fields = ["uuid", "name-label", "power-state", "resident-on", "other-config"]
    text = _strip(output.render_result(Records("vm", rows, fields), "table", tty=True))
    assert a in text and b in text, text
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= columns or not text.startswith("┏"), text


# --- journal-list params=all ------------------------------------------------------------------------------------
def test_journal_params_all_table_is_one_block_per_entry(lab):
    inv = Inventory(lab)
    text = inv.ok("journal-list", "params=all", "limit=2")
    blocks = text.split("\n\n")
    assert len(blocks) == 2
    for block in blocks:
        lines = block.splitlines()
        assert lines[0].strip().startswith("seq ( RO): ")
        assert any(line.strip().startswith("changes (MRO):") for line in lines)
    last = blocks[-1].splitlines()
    # each changed field on a line of its own: object, field, before -> after
    assert any(re.search(r"vm:\S+ power-state: halted -> running$", line) for line in last), blocks[-1]
    width = len(next(line for line in last if "changes (MRO): " in line).split(": ", 1)[0]) + 2
    cont = [line for line in last if line.startswith(" " * width) and line.strip()]
    assert cont and all(UUID.search(line) for line in cont)
    # the default columns stay a table
    assert inv.ok("journal-list", "limit=1").splitlines()[0].split() == ["seq", "time", "user", "command"]


# --- the Python API's journal entries -----------------------------------------------------------------------------
def test_api_journal_entry_records_the_arguments(tmp_path):
    import vmctl

    db = str(tmp_path / "api.db")
    inv = vmctl.open(db)
    inv.run("pool-create", name_label="lab")
    inv.run("vm-create", name_label="web 3", memory=2 * GiB, vcpus=2)
    inv.run("vm-param-set", uuid="web 3", other_config={"owner": "ops"})
    inv.run(
        "sr-create",
        name_label="s",
        type="nfs",
        physical_size="1TiB",
        device_config={"server": "x", "password": "hunter2"},
    )
    commands = [r["command"] for r in inv.run("journal-list", params="command")]
    assert commands == [
        "api pool-create name-label=lab",
        "api vm-create 'name-label=web 3' memory=2147483648 vcpus=2",
        "api vm-param-set 'uuid=web 3' other-config:owner=ops",
        "api sr-create name-label=s type=nfs physical-size=1TiB device-config:server=x 'device-config:password=***'",
    ]
    assert not any("hunter2" in c for c in commands)
