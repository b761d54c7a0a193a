"""The VM power-state machine (model.md §2), exhaustively, plus contract tests of the lifecycle
commands through the real `vmctl` executable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import cli, run_cli, with_txn

import vmctl
from vmctl.errors import VmctlError

GiB = 1024**3
STATES = ("halted", "running", "paused", "suspended")


# --- helpers ------------------------------------------------------------------------------------------------------
def dump(db: Path) -> dict:
    from vmctl.model import CLASSES

    return with_txn(
        db,
        lambda txn: {c: sorted((r for r in txn.all(c)), key=lambda r: r["uuid"]) for c in CLASSES},
        write=False,
    )


def db_problems(db: Path) -> list:
    from vmctl.invariants import check

    return with_txn(db, check, write=False)


def add_shared_sr(db: Path, pool_name: str = "p1", size: int = 100 * GiB, default: bool = True) -> str:
    """A shared NFS SR with an attached PBD on every host, inserted directly (the storage commands
    are another family's)."""

    def fn(txn):
        pool = txn.resolve_one("pool", pool_name)
        sr = txn.insert(
            "sr",
            {"name-label": "nfs", "type": "nfs", "shared": True, "physical-size": size, "pool": pool["uuid"]},
        )
        for h in txn.select("host", pool=pool["uuid"]):
            txn.insert("pbd", {"host": h["uuid"], "sr": sr, "pool": pool["uuid"], "currently-attached": True})
        if default:
            txn.update("pool", pool["uuid"], {"default-sr": sr})
        return sr

    return with_txn(db, fn)


def vm_row(db: Path, name: str) -> dict | None:
    def fn(txn):
        rows = txn.select("vm", name_label=name)
        return rows[0] if rows else None

    return with_txn(db, fn, write=False)


# --- the base inventory: one VM in each power state -----------------------------------------------------------------
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("lifecycle") / "base.db"
    inv = vmctl.open(str(db))
    inv.run("pool-create", **{"name-label": "p1"})
    for i in (1, 2):
        inv.run(
            "host-add",
            **{
                "name-label": f"h{i}",
                "address": f"10.0.0.{i}",
                "cpu-count": 8,
                "memory-total": "32GiB",
                "pool": "p1",
                "cpu-flags": "sse4_2,avx",
            },
        )
    add_shared_sr(db)
    for s in STATES:
        inv.run("vm-create", **{"name-label": f"vm-{s}", "memory": "1GiB"})
    inv.run("vm-start", vm="vm-running")
    inv.run("vm-start", vm="vm-paused", **{"--paused": True})
    inv.run("vm-start", vm="vm-suspended")
    inv.run("vm-suspend", vm="vm-suspended")
    for s in STATES:
        assert vm_row(db, f"vm-{s}")["power-state"] == s
    assert db_problems(db) == []
    return db


# operation -> (command, extra args, allowed states in XAPI's order (xapi_vm_lifecycle
# .allowed_power_states, which VM_BAD_POWER_STATE's `expected` follows), end state; None = removed)
OPS = {
    "start": ("vm-start", {}, ("halted",), "running"),
    "start-paused": ("vm-start", {"--paused": True}, ("halted",), "paused"),
    "start-on": ("vm-start", {"on": "h2"}, ("halted",), "running"),
    "shutdown": ("vm-shutdown", {}, ("running",), "halted"),
    "hard-shutdown": ("vm-shutdown", {"--force": True}, ("paused", "suspended", "running"), "halted"),
    "reboot": ("vm-reboot", {}, ("running",), "running"),
    "hard-reboot": ("vm-reboot", {"--force": True}, ("paused", "running"), "running"),
    "suspend": ("vm-suspend", {}, ("running",), "suspended"),
    "resume": ("vm-resume", {}, ("suspended",), "running"),
    "resume-paused": ("vm-resume", {"--paused": True}, ("suspended",), "paused"),
    "resume-on": ("vm-resume", {"on": "h1"}, ("suspended",), "running"),
    "pause": ("vm-pause", {}, ("running",), "paused"),
    "unpause": ("vm-unpause", {}, ("paused",), "running"),
    "destroy": ("vm-destroy", {}, ("halted", "suspended"), None),
    # VM.power_state_reset is valid in every state (a halted VM stays halted)
    "reset-powerstate": ("vm-reset-powerstate", {"--force": True}, STATES, "halted"),
    "uninstall": ("vm-uninstall", {"--force": True}, STATES, None),
    "uninstall-halted-only": ("vm-uninstall", {}, ("halted",), None),
}


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("op", sorted(OPS))
def test_power_state_machine(base: Path, tmp_path: Path, state: str, op: str) -> None:
    db = tmp_path / "case.db"
    shutil.copy(base, db)
    cmd, extra, allowed, end = OPS[op]
    name = f"vm-{state}"
    before = vm_row(db, name)
    inv = vmctl.open(str(db))
    inv.opts.yes = True  # vm-uninstall without --force still needs a confirmation
    args = {"uuid": before["uuid"]} if cmd == "vm-destroy" else {"vm": name}
    if state in allowed:
        inv.run(cmd, **args, **extra)
        after = vm_row(db, name)
        if end is None:
            assert after is None
        else:
            assert after["power-state"] == end
            if end in ("running", "paused"):
                assert after["resident-on"] and after["domid"] >= 1
            else:
                assert after["resident-on"] == "" and after["domid"] == -1
            if end == "suspended":
                assert after["suspend-vdi"]
            else:
                assert after["suspend-vdi"] == ""
            if op in ("reboot", "hard-reboot"):
                assert (after["resident-on"], after["domid"]) == (before["resident-on"], before["domid"])
            if op in ("start-on",):
                assert after["resident-on"] == with_txn(
                    db, lambda t: t.resolve_one("host", "h2")["uuid"], False
                )
        assert db_problems(db) == []
    else:
        snapshot = dump(db)
        with pytest.raises(VmctlError) as exc:
            inv.run(cmd, **args, **extra)
        assert exc.value.code == "VM_BAD_POWER_STATE"
        params = dict(exc.value.params)
        assert params["expected"] == ", ".join(allowed)
        assert params["actual"] == state
        assert params["vm"].uuid == before["uuid"]
        assert dump(db) == snapshot


def test_suspend_needs_a_suspend_sr(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    inv = vmctl.open(str(db))
    inv.run("pool-create", **{"name-label": "p1"})
    inv.run(
        "host-add",
        **{"name-label": "h1", "address": "10.0.0.1", "cpu-count": 4, "memory-total": "8GiB", "pool": "p1"},
    )
    inv.run("vm-create", **{"name-label": "a", "memory": "1GiB"})
    inv.run("vm-start", vm="a")
    with pytest.raises(VmctlError) as exc:
        inv.run("vm-suspend", vm="a")
    assert exc.value.code == "VM_NO_SUSPEND_SR"
    add_shared_sr(db, size=512 * 1024**2)  # too small for a 1 GiB image
    with pytest.raises(VmctlError) as exc:
        inv.run("vm-suspend", vm="a")
    assert exc.value.code == "SR_FULL"
    assert dict(exc.value.params) == {"requested": GiB, "maximum": 512 * 1024**2}
    assert vm_row(db, "a")["power-state"] == "running"


def test_suspend_image_and_resume(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    inv = vmctl.open(str(db))
    inv.run("pool-create", **{"name-label": "p1"})
    inv.run(
        "host-add",
        **{"name-label": "h1", "address": "10.0.0.1", "cpu-count": 4, "memory-total": "8GiB", "pool": "p1"},
    )
    sr = add_shared_sr(db)
    inv.run("vm-create", **{"name-label": "a", "memory": "1000MiB"})
    inv.run("vm-start", vm="a")
    inv.run("vm-suspend", vm="a")
    vm = vm_row(db, "a")
    vdi = with_txn(db, lambda t: t.get("vdi", vm["suspend-vdi"]), False)
    assert (vdi["type"], vdi["provisioning"], vdi["sr"]) == ("suspend", "thick-lazy", sr)
    assert vdi["virtual-size"] == 1000 * 1024**2 and vdi["physical-utilisation"] == vdi["virtual-size"]
    inv.run("vm-resume", vm="a")
    vm = vm_row(db, "a")
    assert vm["power-state"] == "running" and vm["suspend-vdi"] == ""
    assert with_txn(db, lambda t: t.get("vdi", vdi["uuid"]), False) is None
    assert db_problems(db) == []


def test_domid_smallest_unused_and_cpu_levelling(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    inv = vmctl.open(str(db))
    inv.run("pool-create", **{"name-label": "p1"})
    inv.run(
        "host-add",
        **{
            "name-label": "h1",
            "address": "10.0.0.1",
            "cpu-count": 8,
            "memory-total": "32GiB",
            "pool": "p1",
            "cpu-flags": "sse4_2,avx,avx2",
        },
    )
    inv.run(
        "host-add",
        **{
            "name-label": "h2",
            "address": "10.0.0.2",
            "cpu-count": 8,
            "memory-total": "32GiB",
            "pool": "p1",
            "cpu-flags": "sse4_2,avx",
        },
    )
    for n in ("a", "b", "c"):
        inv.run("vm-create", **{"name-label": n, "memory": "1GiB"})
        inv.run("vm-start", vm=n, on="h1")
    assert [vm_row(db, n)["domid"] for n in "abc"] == [1, 2, 3]
    inv.run("vm-shutdown", vm="b")
    inv.run("vm-start", vm="b", on="h1")
    assert vm_row(db, "b")["domid"] == 2
    inv.run("vm-shutdown", vm="a")
    inv.run("vm-create", **{"name-label": "d", "memory": "1GiB"})
    inv.run("vm-start", vm="d", on="h1")
    assert vm_row(db, "d")["domid"] == 1
    # levelled: pool flags (h1 ∩ h2) ∩ h1's own
    assert vm_row(db, "d")["last-boot-cpu-flags"] == ["avx", "sse4_2"]
    assert vm_row(db, "d")["last-boot-cpu-vendor"] == "GenuineIntel"
    inv.run(
        "pool-param-set",
        uuid=with_txn(db, lambda t: t.resolve_one("pool", "p1")["uuid"], False),
        **{"other-config:cpu-levelling": "false"},
    )
    inv.run("vm-reboot", vm="d")
    assert vm_row(db, "d")["last-boot-cpu-flags"] == ["avx", "avx2", "sse4_2"]


# --- contract tests through the executable -----------------------------------------------------------------------------
@pytest.fixture()
def small(tmp_path: Path) -> Path:
    db = tmp_path / "c.db"
    r = cli(
        db,
        "pool-create",
        "name-label=p1",
        "--",
        "host-add",
        "name-label=h1",
        "address=10.0.0.1",
        "cpu-count=4",
        "memory-total=8GiB",
        "pool=p1",
        "--",
        "host-add",
        "name-label=h2",
        "address=10.0.0.2",
        "cpu-count=4",
        "memory-total=8GiB",
        "pool=p1",
        "--",
        "vm-create",
        "name-label=web1",
        "memory=2GiB",
        "vcpus=1",
        "--",
        "vm-create",
        "name-label=web2",
        "memory=2GiB",
        "--",
        "vm-create",
        "name-label=big",
        "memory=20GiB",
    )
    assert r.returncode == 0, r.stderr
    return db


def test_bad_power_state_contract(small: Path) -> None:
    r = run_cli(small, "vm-shutdown", "vm=web1")
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0].startswith("vmctl: VM_BAD_POWER_STATE: ")
    assert lines[1].startswith("  vm: ") and lines[1].endswith(" (web1)")
    assert lines[2:] == ["  expected: running", "  actual: halted"]


def test_no_hosts_available_contract(small: Path) -> None:
    before = run_cli(small, "journal-list", "-f", "json").stdout
    r = run_cli(small, "vm-start", "vm=big")
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0] == "vmctl: NO_HOSTS_AVAILABLE: no host can run VM big (2 hosts examined)"
    assert lines[1].startswith("  vm: ") and lines[1].endswith("(big)")
    assert lines[2] == "  HOST_NOT_ENOUGH_FREE_MEMORY: 2 hosts (h1, h2)"
    r = run_cli(small, "-f", "json", "vm-start", "vm=big")
    err = json.loads(r.stderr)["error"]
    assert err["code"] == "NO_HOSTS_AVAILABLE"
    assert run_cli(small, "journal-list", "-f", "json").stdout == before


def test_selectors_multiple_and_dry_run_plan(small: Path) -> None:
    r = cli(small, "vm-start", "memory-static-max=2GiB")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: MULTIPLE_MATCHES: ")
    r = cli(small, "vm-start", "vm=nope")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: UUID_INVALID: ")
    r = cli(small, "vm-start", "name-label=zzz")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: UUID_INVALID: ")
    # a dry run prints the plan (vm host per line for several VMs) and changes nothing
    r = cli(small, "--dry-run", "vm-start", "memory-static-max=2GiB", "--multiple")
    assert r.returncode == 0, r.stderr
    plan = [line.split() for line in r.stdout.splitlines()]
    assert len(plan) == 2 and all(len(p) == 2 for p in plan)
    assert vm_row(small, "web1")["power-state"] == "halted"
    r = cli(small, "vm-start", "memory-static-max=2GiB", "--multiple")
    assert r.returncode == 0 and r.stdout == ""
    placed = {vm_row(small, n)["uuid"]: vm_row(small, n)["resident-on"] for n in ("web1", "web2")}
    assert {vm: host for vm, host in plan} == placed


def test_chain_of_starts_is_one_batch_and_matches_dry_run(small: Path) -> None:
    dry = cli(small, "--dry-run", "vm-start", "vm=web1", "--", "vm-start", "vm=web2")
    assert dry.returncode == 0, dry.stderr
    hosts = dry.stdout.split()
    assert len(hosts) == 2
    batch = "- vm-start vm=web1\n- vm-start vm=web2\n"
    r = cli(small, "batch", "-", input=batch)
    assert r.returncode == 0, r.stderr
    assert [vm_row(small, n)["resident-on"] for n in ("web1", "web2")] == hosts
    # the same VM twice in one run: the second sees it running
    r = cli(small, "vm-shutdown", "vm=web1", "--", "vm-start", "vm=web1", "--", "vm-start", "vm=web1")
    assert r.returncode == 1 and "VM_BAD_POWER_STATE" in r.stderr and "actual: running" in r.stderr


def test_vm_place_explain_and_limit(small: Path) -> None:
    r = cli(small, "vm-place", "vm=web1")
    assert r.returncode == 0
    host = r.stdout.strip()
    r = cli(small, "vm-place", "vm=web1", "--explain", "-f", "json")
    data = json.loads(r.stdout)
    assert data["chosen"] == host and len(data["hosts"]) == 2
    r = cli(small, "vm-place", "vm=web1", "--explain", "limit=1")
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["host", "verdict"]
    assert "chosen" in lines[1] and lines[2].startswith("… 1 more host")
    assert lines[-1].startswith("chosen ") and "policy balanced; seed 0; 2 of 2 hosts feasible" in lines[-1]
    r = cli(small, "vm-start", "vm=web1", "--explain")
    assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith("chosen ")
    assert vm_row(small, "web1")["resident-on"] == ""  # --explain only explains
    r = cli(small, "vm-start", "vm=web1")
    assert r.returncode == 0 and vm_row(small, "web1")["resident-on"] == host
    r = cli(small, "vm-place", "vm=big")
    assert r.returncode == 1 and "NO_HOSTS_AVAILABLE" in r.stderr


def _host_at_47_percent(tmp_path: Path) -> Path:
    """Four hosts of 32 GiB; h1 runs a 15 GiB VM (47% of its memory); a, b, c are halted 2 GiB VMs."""
    db = tmp_path / "p.db"
    args = ["pool-create", "name-label=p1"]
    for i in range(1, 5):
        args += ["--", "host-add", f"name-label=h{i}", f"address=10.0.0.{i}", "cpu-count=8"]
        args += ["memory-total=32GiB", "pool=p1"]
    args += ["--", "vm-create", "name-label=big", "memory=15GiB", "vcpus=2"]
    for name in ("a", "b", "c"):
        args += ["--", "vm-create", f"name-label={name}", "memory=2GiB", "vcpus=2"]
    args += ["--", "vm-start", "vm=big", "on=h1"]
    r = cli(db, *args)
    assert r.returncode == 0, r.stderr
    return db


def test_default_policy_balanced_spreads_starts(tmp_path: Path) -> None:
    db = _host_at_47_percent(tmp_path)
    h1 = vm_row(db, "big")["resident-on"]
    r = cli(db, "pool-list", "params=placement-policy", "--minimal")
    assert r.stdout.strip() == "balanced"
    # One start: an empty host, not the one at 47%.
    r = cli(db, "vm-start", "vm=a", "--explain")
    assert r.returncode == 0 and "policy balanced" in r.stdout.splitlines()[-1]
    r = cli(db, "vm-start", "vm=a")
    assert r.returncode == 0, r.stderr
    first = vm_row(db, "a")["resident-on"]
    assert first != h1
    # Consecutive starts are placed in one pass: each on a host of its own.
    r = cli(db, "vm-start", "vm=b", "--", "vm-start", "vm=c")
    assert r.returncode == 0, r.stderr
    hosts = {h1, first, vm_row(db, "b")["resident-on"], vm_row(db, "c")["resident-on"]}
    assert len(hosts) == 4


def test_pack_policy_consolidates_starts(tmp_path: Path) -> None:
    db = _host_at_47_percent(tmp_path)
    h1 = vm_row(db, "big")["resident-on"]
    r = cli(db, "pool-param-set", "pool=p1", "placement-policy=pack")
    assert r.returncode == 0, r.stderr
    r = cli(db, "vm-start", "vm=a", "--", "vm-start", "vm=b", "--", "vm-start", "vm=c")
    assert r.returncode == 0, r.stderr
    assert {vm_row(db, n)["resident-on"] for n in ("a", "b", "c")} == {h1}


def test_uninstall_confirmation(small: Path) -> None:
    r = cli(small, "vm-uninstall", "vm=web1")
    assert r.returncode == 1 and "CONFIRMATION_REQUIRED" in r.stderr
    assert vm_row(small, "web1") is not None
    r = cli(small, "--yes", "vm-uninstall", "vm=web1")
    assert r.returncode == 0, r.stderr
    assert vm_row(small, "web1") is None


def test_memory_commands(small: Path) -> None:
    r = cli(small, "vm-memory-dynamic-range-set", "vm=web1", "min=3GiB", "max=2GiB")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: MEMORY_CONSTRAINT_VIOLATION_ORDER:")
    r = cli(
        small,
        "vm-memory-set",
        "vm=web1",
        "memory=1GiB",
        "--",
        "vm-start",
        "vm=web1",
        "on=h1",
        "--",
        "vm-memory-set",
        "vm=web1",
        "memory=2GiB",
    )
    assert r.returncode == 1 and "VM_BAD_POWER_STATE" in r.stderr and "expected: halted" in r.stderr
    r = cli(
        small,
        "vm-memory-limits-set",
        "vm=web1",
        "static-min=512MiB",
        "dynamic-min=1GiB",
        "dynamic-max=2GiB",
        "static-max=4GiB",
        "--",
        "vm-vcpus-set",
        "vm=web1",
        "vcpus=2",
    )
    assert r.returncode == 0, r.stderr
    v = vm_row(small, "web1")
    assert (
        v["memory-static-min"],
        v["memory-dynamic-min"],
        v["memory-dynamic-max"],
        v["memory-static-max"],
        v["vcpus"],
    ) == (512 * 1024**2, GiB, 2 * GiB, 4 * GiB, 2)
    r = cli(small, "vm-vcpus-set", "vm=web1", "vcpus=257")
    assert r.returncode == 1 and "VM_TOO_MANY_VCPUS" in r.stderr
    # under dynamic, growing a running VM's floor must fit its host
    r = cli(
        small,
        "pool-param-set",
        f"uuid={with_txn(small, lambda t: t.resolve_one('pool', 'p1')['uuid'], False)}",
        "memory-overcommit-policy=dynamic",
        "--",
        "vm-start",
        "vm=web1",
        "on=h1",
    )
    assert r.returncode == 0, r.stderr
    r = cli(small, "vm-memory-dynamic-range-set", "vm=web1", "min=4GiB", "max=4GiB")
    assert r.returncode == 0, r.stderr
    r = cli(
        small,
        "vm-memory-dynamic-range-set",
        "vm=web1",
        "min=2GiB",
        "max=4GiB",
        "--",
        "vm-create",
        "name-label=filler",
        "memory=4GiB",
        "--",
        "vm-start",
        "vm=filler",
        "on=h1",
        "--",
        "vm-param-set",
        f"uuid={vm_row(small, 'web1')['uuid']}",
        "memory-reservation=4GiB",
    )
    assert r.returncode == 1 and "HOST_NOT_ENOUGH_FREE_MEMORY" in r.stderr


def test_vm_install_diskless_template(small: Path) -> None:
    r = cli(small, "vm-create", "name-label=tpl", "memory=1GiB", "vcpus=2", "is-a-template=true")
    assert r.returncode == 0, r.stderr
    r = cli(small, "vm-install", "template=tpl", "new-name-label=fromtpl")
    assert r.returncode == 0, r.stderr
    v = vm_row(small, "fromtpl")
    assert v["uuid"] == r.stdout.strip() and not v["is-a-template"] and v["vcpus"] == 2
    r = cli(small, "vm-install", "template=web1", "new-name-label=x")
    assert r.returncode == 1 and "UUID_INVALID" in r.stderr and "class: template" in r.stderr
    r = cli(small, "vm-start", "vm=tpl")
    assert r.returncode == 1 and "VM_IS_TEMPLATE" in r.stderr
    r = cli(small, "template-list", "--minimal")
    assert r.stdout.strip() == vm_row(small, "tpl")["uuid"]
