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


# Two commands in the fast tier (a placement and a migration), every one in the slow tier.
FAST_EXPLAINED = ("vm-start", "vm-migrate")


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(x, id=x.split()[0], marks=() if x.split()[0] in FAST_EXPLAINED else pytest.mark.slow)
        for x in EXPLAINED
    ],
)
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
    lab.fail("vm-shutdown", "power-state=runing", code="INVALID_VALUE")
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


# --- selector keys: the class key and uuid= ------------------------------------------------------------
# {k} is the key naming the command's object; each line runs once as the class key, once as uuid=.
SPELLED = [
    ("vm", "vm-start {k}=web1 --dry-run"),
    ("vm", "vm-shutdown {k}=db1 --force --dry-run"),
    ("vm", "vm-migrate {k}=db1 host=h2 --dry-run"),
    ("vm", "vm-clone {k}=web1 new-name-label=c --dry-run"),
    ("vm", "vm-destroy {k}=web1 --dry-run"),
    ("vm", "vm-param-get {k}=web1 param-name=vcpus"),
    ("vm", "vm-param-set {k}=web1 vcpus=3 --dry-run"),
    ("vm", "vm-memory-set {k}=web1 memory=1GiB --dry-run"),
    ("host", "host-disable {k}=h2 --dry-run"),
    ("host", "host-evacuate {k}=h1 --dry-run"),
    ("host", "host-declare-dead {k}=h2 --dry-run"),
    ("host", "host-param-get {k}=h1 param-name=address"),
    ("pool", "pool-rebalance {k}=p1 --dry-run"),
    ("pool", "pool-param-get {k}=p1 param-name=default-sr"),
    ("sr", "sr-scan {k}=nfs --dry-run"),
    ("sr", "sr-param-list {k}=lvm2 params=name-label,type"),
    ("vdi", "vdi-resize {k}=d1 disk-size=2GiB --dry-run"),
    ("vdi", "vdi-copy {k}=d1 sr-uuid=lvm2 --dry-run"),
    ("vdi", "vdi-destroy {k}=d2 --dry-run"),
]


@pytest.mark.parametrize("cls,line", SPELLED, ids=[line.split()[0] for _, line in SPELLED])
def test_single_object_commands_take_the_class_key_and_uuid(lab: Inventory, cls: str, line: str) -> None:
    import re

    from cli_helpers import cli

    uuid_re = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    outs = []
    for key in (cls, "uuid"):
        r = cli(lab.db, *line.format(k=key).split())
        assert r.returncode == 0, f"{line.format(k=key)}: {r.stderr}"
        outs.append(uuid_re.sub("UUID", r.stdout))  # a dry-run clone's new uuid differs
    assert outs[0] == outs[1]


@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_the_real_executable_takes_both_spellings(lab: Inventory) -> None:
    lab.ok("vm-start", "uuid=web1")
    lab.ok("vdi-resize", "vdi=d1", "disk-size=2GiB")
    assert lab.ok("vm-param-get", "vm=web1", "param-name=power-state").strip() == "running"
    assert lab.ok("vdi-param-get", "vdi=d1", "param-name=virtual-size").strip() == str(2 * 1024**3)
    lab.ok("vm-shutdown", "uuid=web1", "--force", "--", "vm-destroy", "vm=web1")
    assert lab.ok("vm-list", "name-label=web1", "--minimal").strip() == ""


def test_both_spellings_at_once_fail(lab: Inventory) -> None:
    before = lab.snapshot()
    r = lab.fail("vm-start", "vm=web1", "uuid=web1", code="DUPLICATE_PARAMETER")
    assert r.err.splitlines()[0] == (
        "vmctl: DUPLICATE_PARAMETER: vm-start takes vm= or uuid=, not both: they name the same object"
    )
    lab.fail("vm-destroy", "uuid=web1", "vm=web1", code="DUPLICATE_PARAMETER")
    lab.fail("vdi-resize", "vdi=d1", "uuid=d2", "disk-size=2GiB", code="DUPLICATE_PARAMETER")
    assert lab.snapshot() == before


@pytest.mark.parametrize(
    "line,key",
    [
        ("vm-start host=h1", "host"),
        ("vm-start sr=nfs", "sr"),
        ("vm-shutdown vm=db1 bogus=1", "bogus"),
        ("vm-destroy sr=nfs", "sr"),
        ("vdi-resize vm=web1 disk-size=2GiB", "vm"),
        ("host-disable vm=web1", "vm"),
        ("vm-param-get host=h1 param-name=vcpus", "host"),
    ],
)
def test_a_wrong_key_is_an_unknown_parameter(lab: Inventory, line: str, key: str) -> None:
    r = lab.fail(*line.split(), code="UNKNOWN_PARAMETER")
    assert r.err.splitlines()[0] == f"vmctl: UNKNOWN_PARAMETER: {line.split()[0]} does not take {key}"


def test_help_lists_both_spellings(lab: Inventory) -> None:
    assert lab.ok("help", "vm-start").splitlines()[0].startswith("usage: vmctl vm-start [vm=VM|uuid=VM]")
    assert (
        lab.ok("help", "vm-destroy").splitlines()[0].startswith("usage: vmctl vm-destroy uuid=UUID|vm=UUID")
    )
    assert "  uuid=|vdi=" in lab.ok("vdi-resize", "--help")
