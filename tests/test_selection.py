"""How commands select objects: list filters on reference and enum fields, the selector keys of
single-object commands (the class key and uuid=), and --explain, which only explains."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import Inventory

SETUP = [
    "pool-create name-label=p1",
    "host-add name-label=h1 address=10.0.0.1 cpu-count=8 memory-total=64GiB pool=p1",
    "host-add name-label=h2 address=10.0.0.2 cpu-count=16 memory-total=128GiB pool=p1",
    "sr-create name-label=lvm2 type=lvm physical-size=100GiB host=h1",
    "sr-create name-label=nfs type=nfs physical-size=100GiB",
    "pool-param-set uuid=p1 default-sr=nfs",
    "vdi-create sr-uuid=nfs name-label=d1 virtual-size=1GiB",
    "vdi-create sr-uuid=lvm2 name-label=d2 virtual-size=1GiB",
    "vm-create name-label=web1 memory=2GiB vcpus=2",
    "vm-create name-label=db1 memory=4GiB vcpus=2",
    "vm-create name-label=sus memory=1GiB",
    "vm-start vm=db1 on=h1",
    "vm-start vm=sus on=h2",
    "vm-suspend vm=sus",
]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    inv = Inventory(tmp_path_factory.mktemp("selection") / "inv.db")
    words: list[str] = []
    for line in SETUP:
        words += [*line.split(), "--"]
    inv.ok(*words[:-1])
    return inv.db


@pytest.fixture
def lab(template, tmp_path) -> Inventory:
    inv = Inventory(tmp_path / "inv.db")
    shutil.copy(template, inv.db)
    return inv


# --- --explain only explains -----------------------------------------------------------------------
EXPLAINED = [
    "vm-start vm=web1",
    "vm-resume vm=sus",
    "vm-migrate vm=db1 host=h2",
    "vm-clone vm=web1 new-name-label=c",
    "vm-copy vm=web1 new-name-label=c sr-uuid=nfs",
    "vdi-copy uuid=d1 sr-uuid=lvm2",
    "host-evacuate host=h1",
    "pool-rebalance",
    "host-fail host=h1",
    "host-declare-dead uuid=h1",
    "vm-place vm=web1",
]


@pytest.mark.parametrize("line", EXPLAINED, ids=[x.split()[0] for x in EXPLAINED])
def test_explain_changes_nothing(lab: Inventory, line: str) -> None:
    before = lab.snapshot()
    out = lab.ok(*line.split(), "--explain")
    assert out.strip(), "--explain printed no explanation"
    assert lab.snapshot() == before


def test_explain_as_a_global_option_changes_nothing(lab: Inventory) -> None:
    before = lab.snapshot()
    assert lab.ok("--explain", "vm-start", "vm=web1").strip()
    assert lab.snapshot() == before


def test_explain_in_a_chain_rolls_back_the_chain(lab: Inventory) -> None:
    before = lab.snapshot()
    lab.ok("vm-param-set", "uuid=web1", "vcpus=1", "--", "vm-start", "vm=web1", "--explain")
    assert lab.snapshot() == before


# --- list filters on reference and enum fields ---------------------------------------------------------
def _uuid(lab: Inventory, cls: str, name: str) -> str:
    return lab.ok(f"{cls}-list", f"name-label={name}", "--minimal", "--all").strip()


def test_reference_filters_take_names(lab: Inventory) -> None:
    d2, db1 = _uuid(lab, "vdi", "d2"), _uuid(lab, "vm", "db1")
    assert lab.ok("vdi-list", "sr=lvm2", "--minimal").strip() == d2
    assert lab.ok("vm-list", "resident-on=h1", "--minimal").strip() == db1
    h1 = _uuid(lab, "host", "h1")
    assert lab.ok("vm-list", f"resident-on={h1}", "--minimal").strip() == db1  # uuids as before
    assert lab.ok("vm-list", "resident-on=h2", "--minimal").strip() == ""  # a known host, no VM
    names = lab.ok("vm-list", "resident-on=", "params=name-label", "--minimal").strip()
    assert names == "sus,web1"  # empty still selects rows that refer to nothing
    assert lab.ok("vm-list", "pool=p1", "params=name-label", "--minimal").strip() == "db1,sus,web1"
    # a set of references: contains= takes a name too
    assert lab.ok("host-list", "resident-vms:contains=db1", "params=name-label", "--minimal").strip() == "h1"


def test_reference_filter_naming_several_objects_selects_all_of_them(lab: Inventory) -> None:
    lab.ok(
        *"sr-create name-label=dup type=nfs physical-size=10GiB -- sr-create name-label=dup type=nfs "
        "physical-size=10GiB host=h2".split()
    )
    for sr in lab.ok("sr-list", "name-label=dup", "--minimal").strip().split(","):
        lab.ok("vdi-create", f"sr-uuid={sr}", "name-label=on-dup", "virtual-size=1GiB")
    out = lab.ok("vdi-list", "sr=dup", "params=name-label", "--minimal").strip()
    assert out == "on-dup,on-dup"


def test_reference_filter_naming_nothing_fails(lab: Inventory) -> None:
    r = lab.fail("vm-list", "resident-on=nohost", code="UUID_INVALID")
    assert r.err.splitlines()[0] == "vmctl: UUID_INVALID: No host has the uuid or name-label nohost"
    lab.fail("vdi-list", "sr=nosr", "-f", "json", code="UUID_INVALID")
    lab.fail("vm-shutdown", "resident-on=nohost", code="UUID_INVALID")


def test_enum_filters_check_their_values(lab: Inventory) -> None:
    r = lab.fail("vm-list", "power-state=bogus", code="INVALID_VALUE")
    first = r.err.splitlines()[0]
    assert first == "vmctl: INVALID_VALUE: power-state must be one of halted, running, paused, suspended"
    lab.fail("vm-list", "power-state=bogus", "--minimal", code="INVALID_VALUE")
    lab.fail("vm-shutdown", "power-state=Running", code="INVALID_VALUE")
    lab.fail("sr-list", "type=bogus", code="INVALID_VALUE")
    assert lab.ok("vm-list", "power-state=suspended", "params=name-label", "--minimal").strip() == "sus"


def test_selectors_take_reference_names(lab: Inventory) -> None:
    lab.ok("vm-pause", "resident-on=h1")
    assert lab.ok("vm-list", "power-state=paused", "params=name-label", "--minimal").strip() == "db1"


FAST_CASES = [
    ["vdi-list", "sr=lvm2"],
    ["vdi-list", "sr=lvm2", "-f", "json"],
    ["vm-list", "resident-on=h1", "--minimal"],
    ["vm-list", "resident-on=", "-f", "csv"],
    ["vm-list", "pool=p1", "power-state=running", "-f", "tsv"],
    ["vdi-list", "sr=nfs", "--all", "-f", "json"],
]


@pytest.mark.parametrize("argv", FAST_CASES, ids=[" ".join(c) for c in FAST_CASES])
def test_fast_path_resolves_reference_filters_as_the_normal_path(lab: Inventory, argv) -> None:
    import contextlib
    import io

    from vmctl.cli.app import run_argv
    from vmctl.store import fastpath

    def capture(fn):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = fn(["--db", str(lab.db), *argv])
        return rc, out.getvalue()

    fast, normal = capture(fastpath.try_run), capture(run_argv)
    assert fast[0] == 0, "the fast path should serve this request"
    assert normal[0] == 0 and fast[1] == normal[1] and fast[1].strip()


def test_fast_path_leaves_bad_filter_values_to_the_normal_path(lab: Inventory) -> None:
    from vmctl.store import fastpath

    for argv in (["vm-list", "power-state=bogus"], ["vm-list", "resident-on=nohost"], ["vdi-list", "sr=@x"]):
        assert fastpath.try_run(["--db", str(lab.db), *argv]) is None, argv
