"""Contract tests of the spine (cli.md): the real executable, its stdout, stderr and exit status."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
import yaml

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def test_version_help_and_commands(inv):
    assert inv.ok("--version").startswith("vmctl ")
    assert "vm-create" in inv.ok("--help")
    lines = [json.loads(x) for x in inv.ok("--commands").splitlines()]
    by = {c["name"]: c for c in lines}
    assert by["vm-create"]["style"] == "xe" and "name-label" in by["vm-create"]["required"]
    assert by["add-br"]["style"] == "ovs" and "--may-exist" in by["add-br"]["flags"]
    h = inv.ok("help", "host-add")
    assert "cpu-count=" in h and "(required" in h
    assert inv.ok("host-add", "--help") == h


def test_create_prints_uuid_and_list_formats(small):
    out = small.ok("vm-list", "-f", "json")
    rows = json.loads(out)
    assert [r["name-label"] for r in rows] == ["db1", "web1"]
    assert list(rows[0]) == ["uuid", "name-label", "power-state", "resident-on", "vcpus", "memory-static-max"]
    assert rows[0]["memory-static-max"] == 8 * 1024**3 and rows[0]["power-state"] == "halted"
    assert all(UUID.match(r["uuid"]) for r in rows)
    table = small.ok("vm-list")
    assert table.splitlines()[0].split() == [
        "uuid",
        "name-label",
        "power-state",
        "resident-on",
        "vcpus",
        "memory-static-max",
    ]
    assert "8 GiB" in table  # sizes humanised only in tables
    c = list(csv.reader(io.StringIO(small.ok("vm-list", "-f", "csv"))))
    assert c[0][1] == "name-label" and c[1][5] == str(8 * 1024**3)
    assert small.ok("vm-list", "-f", "tsv", "--no-headings").splitlines()[0].split("\t")[1] == "db1"
    assert yaml.safe_load(small.ok("-f", "yaml", "vm-list"))[1]["name-label"] == "web1"
    assert (
        small.ok("vm-list", "params=name-label,vcpus", "vcpus=4", "-f", "csv") == "name-label,vcpus\ndb1,4\n"
    )
    assert small.ok("vm-list", "memory-static-max=2GiB", "--minimal") == json.loads(out)[1]["uuid"] + "\n"
    r = small.fail("vm-list", "colour=red", code="UNKNOWN_FIELD")
    assert "field: colour" in r.err


def test_minimal_escaping(inv):
    inv.ok("pool-create", "name-label=p")
    inv.ok("vm-create", "name-label=a,b\\c")
    inv.ok("vm-create", "name-label=zz")
    assert inv.ok("vm-list", "params=name-label", "--minimal") == "a\\,b\\\\c,zz\n"


@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_param_commands(small):
    vm = small.ok("vm-list", "name-label=web1", "--minimal").strip()
    small.ok("vm-param-set", f"uuid={vm}", "name-description=front end", "other-config:owner=ops", "vcpus=3")
    assert small.ok("vm-param-get", f"uuid={vm}", "param-name=vcpus") == "3\n"
    assert small.ok("vm-param-get", f"uuid={vm}", "param-name=other-config", "param-key=owner") == "ops\n"
    small.fail(
        "vm-param-get", f"uuid={vm}", "param-name=other-config", "param-key=nope", code="MAP_KEY_NOT_FOUND"
    )
    small.fail("vm-param-set", f"uuid={vm}", "power-state=running", code="FIELD_READ_ONLY")
    small.fail("vm-param-set", f"uuid={vm}", "vcpus=lots", code="FIELD_TYPE_ERROR")
    small.fail("vm-param-set", f"uuid={vm}", "vcpus=0", code="INVALID_VALUE")
    small.fail("vm-param-set", f"uuid={vm}", "vcpus=257", code="VM_TOO_MANY_VCPUS")
    small.fail(
        "vm-param-set", f"uuid={vm}", "memory-static-max=1GiB", code="MEMORY_CONSTRAINT_VIOLATION_ORDER"
    )
    small.fail("vm-param-set", f"uuid={vm}", "tags=a", code="FIELD_TYPE_ERROR")
    small.ok("vm-param-add", f"uuid={vm}", "param-name=tags", "param-key=web")
    small.ok("vm-param-add", f"uuid={vm}", "param-name=tags", "param-key=web")  # present: no-op
    small.ok("vm-param-add", f"uuid={vm}", "param-name=other-config", "team=a")
    small.fail("vm-param-add", f"uuid={vm}", "param-name=other-config", "team=b", code="MAP_DUPLICATE_KEY")
    assert small.ok("vm-list", "tags:contains=web", "--minimal") == vm + "\n"
    assert small.ok("vm-list", "other-config:team=a", "--minimal") == vm + "\n"
    small.ok("vm-param-remove", f"uuid={vm}", "param-name=tags", "param-key=web")
    small.fail("vm-param-remove", f"uuid={vm}", "param-name=tags", "param-key=web", code="MAP_KEY_NOT_FOUND")
    small.ok("vm-param-clear", f"uuid={vm}", "param-name=other-config")
    assert small.ok("vm-param-get", f"uuid={vm}", "param-name=other-config") == "\n"
    small.fail("vm-param-clear", f"uuid={vm}", "param-name=vcpus", code="FIELD_TYPE_ERROR")
    pl = json.loads(small.ok("vm-param-list", f"uuid={vm}", "-f", "json"))
    assert pl["vcpus"] == 3 and pl["name-description"] == "front end" and "memory-overhead" in pl
    assert "vcpus ( RW): 3" in small.ok("vm-param-list", f"uuid={vm}")


def test_name_resolution(small):
    small.ok("vm-create", "name-label=twin")
    small.ok("vm-create", "name-label=twin")
    r = small.fail("vm-param-get", "uuid=twin", "param-name=vcpus", code="MULTIPLE_MATCHES")
    assert "class: vm" in r.err and "value: twin" in r.err
    r = small.fail("vm-destroy", "uuid=ghost", code="UUID_INVALID")
    assert "value: ghost" in r.err
    small.ok("vm-destroy", "uuid=ghost", "--if-exists")
    uuids = small.ok("vm-list", "name-label=twin", "--minimal").strip().split(",")
    small.ok("vm-destroy", f"uuid={uuids[0]}")
    assert small.ok("vm-list", "name-label=twin", "--minimal").strip() == uuids[1]


def test_may_exist(small):
    a = small.ok("vm-create", "name-label=web1", "--may-exist")
    assert a == small.ok("vm-list", "name-label=web1", "--minimal")
    assert small.ok("pool-create", "name-label=p1", "--may-exist") == small.ok("pool-list", "--minimal")
    assert small.ok(
        "--may-exist", "host-add", "name-label=x", "address=10.0.0.1", "cpu-count=1", "memory-total=1GiB"
    ) == small.ok("host-list", "name-label=h1", "--minimal")


def test_chain_sees_earlier_effects_and_id_refs(inv):
    out = inv.ok(
        "pool-create",
        "name-label=p",
        "--",
        "--id=@w",
        "vm-create",
        "name-label=w",
        "--",
        "vm-param-set",
        "uuid=@w",
        "vcpus=4",
        "--",
        "vm-param-get",
        "uuid=@w",
        "param-name=vcpus",
    )
    lines = out.splitlines()
    assert len(lines) == 3 and UUID.match(lines[0]) and UUID.match(lines[1]) and lines[2] == "4"
    data = json.loads(inv.ok("-f", "json", "vm-list", "--", "vm-param-get", "uuid=w", "param-name=vcpus"))
    assert data[0][0]["name-label"] == "w" and data[1] == 4


def test_failure_aborts_whole_chain(small):
    before = small.snapshot()
    r = small.fail(
        "vm-create", "name-label=new", "--", "vm-param-set", "uuid=new", "vcpus=999", code="VM_TOO_MANY_VCPUS"
    )
    assert r.out == ""
    assert small.snapshot() == before
    small.fail("pool-create", "name-label=q", "--", "nosuch-command", rc=1)
    assert small.snapshot() == before


def test_dry_run_changes_nothing_and_never_creates_the_file(inv, tmp_path):
    out = inv.ok("--dry-run", "pool-create", "name-label=p")
    assert UUID.match(out.strip())
    assert not inv.db.exists()
    inv.ok("pool-create", "name-label=p")
    before = inv.snapshot()
    out = inv.ok("vm-create", "name-label=v", "--dry-run", "--", "vm-list", "--minimal")
    assert out.splitlines()[0] == out.splitlines()[1]  # later commands see the dry effects
    assert inv.snapshot() == before


@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_batch_all_or_nothing_and_continue(inv, tmp_path):
    f = tmp_path / "b.yaml"
    f.write_text(
        yaml.safe_dump(
            [
                "pool-create name-label=p",
                {"command": "vm-create", "id": "@a", "name-label": "alpha", "vcpus": 2},
                "vm-param-set uuid=@a other-config:k=v",
                {"command": "vm-param-get", "uuid": "@a", "param-name": "vcpus"},
            ]
        )
    )
    out = inv.ok("batch", str(f))
    assert out.splitlines()[-1] == "2"
    assert inv.ok("vm-list", "name-label=alpha", "params=other-config", "--minimal") == "k: v\n"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(["vm-create name-label=beta", "vm-create name-label=gamma vcpus=0"]))
    before = inv.snapshot()
    inv.fail("batch", str(bad), code="INVALID_VALUE")
    assert inv.snapshot() == before
    r = inv.run("-f", "json", "batch", str(bad), "--continue-on-error")
    assert r.rc == 1
    data = json.loads(r.out)
    assert UUID.match(data[0]) and data[1]["error"]["code"] == "INVALID_VALUE"
    assert inv.ok("vm-list", "name-label=beta", "--minimal").strip()
    mixed = "- vm-create name-label=eps\n- vm-create name-label=zeta bogus=1\n- frobnicate\n- vm-create name-label=eta\n"
    r = inv.run("-f", "json", "batch", "-", "--continue-on-error", input=mixed)
    assert r.rc == 1
    data = json.loads(r.out)
    assert UUID.match(data[0]) and data[1]["error"]["code"] == "UNKNOWN_PARAMETER" and "error" in data[2]
    assert UUID.match(data[3])  # a bad item fails alone in continue mode
    assert inv.ok("vm-list", "name-label=eta", "--minimal").strip()
    before = inv.snapshot()
    r = inv.run("batch", "-", "--continue-on-error", input="- vm-create name-label=theta --dry-run\n")
    assert r.rc == 0 and UUID.match(r.out.strip())
    assert inv.snapshot() == before  # the item's own --dry-run committed nothing
    out = inv.ok("batch", "-", input="- vm-create name-label=delta\n")
    assert UUID.match(out.strip())
    inv.fail("batch", "-", input="{not: a list}\n", code="INVALID_VALUE")
    inv.fail("batch", "-", input="- [1, 2]\n", code="INVALID_VALUE")
    inv.fail("batch", "-", input="- 'vm-create name-label=\"unterminated'\n", code="INVALID_VALUE")


def test_errors_and_exit_codes(small):
    r = small.fail("frobnicate")
    assert r.err == (
        "vmctl: UNKNOWN_COMMAND: There is no command 'frobnicate'; vmctl --help lists every command\n"
        "  name: frobnicate\n"
    )
    r = small.fail("vm-create", code="MISSING_PARAMETER")
    assert "name: name-label" in r.err
    small.fail("vm-create", "name-label=x", "colour=red", code="UNKNOWN_PARAMETER")
    small.fail("vm-create", "name-label=x", "memory=12XB", code="INVALID_VALUE")
    small.fail("vm-create", "name-label=x", "memory=-1", code="INVALID_VALUE")
    small.fail("vm-create", "name-label=x", "memory=99999999999999999999999", code="INVALID_VALUE")
    small.fail("vm-create", "name-label=x", "vcpus=1.5", code="INVALID_VALUE")
    small.fail("vm-create", "name-label=x", "memory=1.5", code="INVALID_VALUE")  # a decimal needs a suffix
    small.fail("vm-create", "name-label=x", "memory=8MiB", code="VM_MEMORY_SIZE_TOO_LOW")
    r = small.fail("-f", "json", "vm-create", "name-label=x", "vcpus=0")
    err = json.loads(r.err)
    assert err["error"]["code"] == "INVALID_VALUE" and "message" in err["error"]
    r = small.fail("--dry-run=1")
    assert r.err == "vmctl: option '--dry-run' doesn't allow an argument\n"
    assert small.fail("--frob").err == "vmctl: unrecognized option '--frob'\n"
    small.fail("-t", "0", "vm-list", code="USAGE")  # ovs-vsctl's form only for ovs-style commands
    assert small.fail("-t", "0", "list-br").err == "vmctl: value 0 on -t or --timeout is invalid\n"
    small.fail(
        "host-add",
        "name-label=h3",
        "address=10.0.0.1",
        "cpu-count=1",
        "memory-total=1GiB",
        code="HOST_ADDRESS_IN_USE",
    )
    small.fail(
        "host-add",
        "name-label=h3",
        "address=not an address",
        "cpu-count=1",
        "memory-total=1GiB",
        code="INVALID_VALUE",
    )
    small.fail(
        "host-add",
        "name-label=h3",
        "address=10.0.0.9",
        "cpu-count=1",
        "memory-total=1GiB",
        "pifs=eth0,eth0",
        code="DUPLICATE_PIF_DEVICE_NAME",
    )


def test_unicode_and_empty_names(inv):
    inv.ok("pool-create", "name-label=")
    u = inv.ok("vm-create", "name-label=wëb-☃").strip()
    assert inv.ok("vm-param-get", f"uuid={u}", "param-name=name-label") == "wëb-☃\n"
    assert inv.ok("vm-list", "name-label=wëb-☃", "--minimal").strip() == u


def test_vm_create_needs_a_pool(inv):
    inv.fail("vm-create", "name-label=x", code="POOL_REQUIRED")
    inv.ok("pool-create", "name-label=a", "--", "pool-create", "name-label=b")
    inv.fail("vm-create", "name-label=x", code="POOL_REQUIRED")
    inv.ok("vm-create", "name-label=x", "pool=b")


@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_journal(small):
    rows = json.loads(small.ok("journal-list", "-f", "json"))
    assert [r["seq"] for r in rows] == [1]
    assert rows[0]["command"].startswith("vmctl pool-create name-label=p1 -- host-add")
    vm = small.ok("vm-list", "name-label=web1", "--minimal").strip()
    small.ok("vm-param-set", f"uuid={vm}", "vcpus=3")
    small.fail("vm-param-set", f"uuid={vm}", "vcpus=0")
    small.ok("--dry-run", "vm-param-set", f"uuid={vm}", "vcpus=5")
    small.ok("vm-list")  # reads leave no entry
    rows = json.loads(small.ok("journal-list", "params=all", "-f", "json"))
    assert [r["seq"] for r in rows] == [1, 2]
    assert rows[1]["changed"] == [f"vm:{vm}"] and rows[1]["changes"][f"vm:{vm}"]["vcpus"] == [2, 3]
    assert rows[1]["prev-hash"] == rows[0]["hash"]
    assert small.ok("journal-list", "object=web1", "--minimal") == "1,2\n"
    assert small.ok("journal-list", "--limit", "1", "--minimal") == "2\n"
    assert small.ok("journal-list", "since=2", "--minimal") == "2\n"
    assert small.ok("journal-list", "limit=0", "--minimal") == "\n"


def test_db_check_clean(small):
    assert small.ok("db-check") == "db-check: all 16 invariants hold\n"


def test_bad_database_files(inv, tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    r = inv.fail("--db", str(junk), "vm-list", code="DATABASE_ERROR")
    assert "not a valid vmctl database" in r.err
    inv.fail("--db", str(tmp_path), "vm-list", code="DATABASE_ERROR")
    inv.fail("--db", "nosuchdriver://x/y", "vm-list", code="DATABASE_ERROR")


def test_read_only_inventory(small):
    small.ok("vm-list")
    ro = f"sqlite:///file:{small.db}?mode=ro&uri=true"
    assert "web1" in small.ok("--db", ro, "vm-list")
    before = small.snapshot()
    r = small.fail("--db", ro, "vm-create", "name-label=x", code="DATABASE_ERROR")
    assert "read-only" in r.err
    assert small.snapshot() == before
