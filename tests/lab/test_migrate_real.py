"""Live migration between the lab's real hosts (drivers.md §3, §6 tier 2): vm-migrate,
host-evacuate and the maintenance chain moving firmware-only guests for real, and the failure
paths (a destination whose libvirtd was stopped, Ctrl-C, a killed vmctl, an evacuation that fails
half-way). Every outcome is checked with virsh on both hosts, independently of vmctl, and
against the inventory."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid

import pytest
from cli_helpers import VMCTL

pytestmark = pytest.mark.lab

MiB = 1024**2


def running_on(lab, host: str) -> set[str]:
    """The domains `virsh list` shows running on a host (the paused ones apart)."""
    return set(lab.virsh(host, "list", "--state-running", "--name").stdout.split())


def on_hosts(lab, name: str) -> dict[str, str]:
    """Where a domain is, by virsh on every lab host: host name -> its state."""
    out = {}
    for h in ("lab1", "lab2"):
        r = lab.virsh(h, "domstate", name, check=False)
        if r.returncode == 0:
            out[h] = r.stdout.strip()
    return out


def vm_row(lab, vm: str) -> dict:
    return json.loads(lab.inv.ok("-f", "json", "vm-list", f"uuid={vm}", "params=all"))[0]


def host_uuid(lab, name: str) -> str:
    return lab.inv.ok("host-list", f"name-label={name}", "--minimal").strip()


@pytest.fixture
def guests(lab):
    """Makes running guests on lab1 (no disk, a NIC on lab-net) and removes them afterwards,
    whatever happened."""
    made: list[str] = []
    net = lab.inv.ok("network-list", "name-label=lab-net", "--minimal").strip()

    def make(memory: str = "128MiB", host: str = "lab1", tiny: bool = False, count: int = 1):
        """One guest's uuid, or with `count` a list of as many, made in one invocation."""
        words: list[str] = []
        for i in range(count):
            name, ref = f"m{uuid.uuid4().hex[:6]}", f"@g{i}"
            if tiny:  # the lab's template: 128 MiB, a 1 GiB disk on the shared SR, a NIC on lab-net
                words += ["--", f"--id={ref}", "vm-install", "template=tiny", f"new-name-label={name}"]
            else:  # no disk (faster to make and to remove), the memory asked for, a NIC on lab-net
                words += [
                    "--",
                    f"--id={ref}",
                    "vm-create",
                    f"name-label={name}",
                    f"memory={memory}",
                    "pool=lab",
                ]
                words += ["--", "vif-create", f"vm-uuid={ref}", f"network-uuid={net}", "device=0"]
            words += ["--", "vm-start", f"vm={ref}", f"on={host}"]
        out = lab.inv.ok("-f", "json", *words)
        new = [r for r in json.loads(out) if isinstance(r, str)][:: 1 if tiny else 2]
        assert len(new) == count, out
        made.extend(new)
        return new if count > 1 else new[0]

    yield make
    if made:  # one invocation for all (each costs a second on a busy machine)
        words = [w for vm in made for w in ("--", "vm-uninstall", f"vm={vm}", "--force")]
        if lab.inv.run(*words).rc != 0:
            for vm in made:
                lab.inv.run("vm-uninstall", f"vm={vm}", "--force")
    for h in ("lab1", "lab2"):  # whatever a failure left behind
        for vm in set(lab.virsh(h, "list", "--all", "--name").stdout.split()) & set(made):
            lab.virsh(h, "destroy", vm, check=False)
            lab.virsh(h, "undefine", vm, check=False)


def test_vm_migrate_moves_a_running_guest_from_lab1_to_lab2(lab, guests):
    """The lab's own example: a guest of the template tiny, its disk on the shared SR."""
    vm = guests(tiny=True)
    assert on_hosts(lab, vm) == {"lab1": "running"}
    data = json.loads(lab.inv.ok("-f", "json", "vm-migrate", f"vm={vm}", "host=lab2"))
    assert on_hosts(lab, vm) == {"lab2": "running"}
    assert vm in running_on(lab, "lab2") and vm not in running_on(lab, "lab1")
    row = vm_row(lab, vm)
    assert (row["resident-on"], row["scheduled-to-be-resident-on"], row["current-operations"]) == (
        host_uuid(lab, "lab2"),
        "",
        [],
    )
    # prediction and measurement side by side, as recorded
    assert (data["from-name"], data["to-name"]) == ("lab1", "lab2")
    measured = data["measured"]
    assert 0 < measured["downtime"] < measured["total-time"] <= measured["wall-time"]
    assert measured["memory"] >= 128 * MiB and 0 < measured["bytes"] and measured["rounds"] >= 1
    assert data["predicted"]["bytes"] >= 128 * MiB  # the engine counts every page; libvirt skips zeros
    assert json.loads(row["other-config"]["last-migration"])["measured"] == measured
    # the guest's port went with it: lab-net on lab2 has it, on lab1 nothing is left
    ports = {
        h: set(lab.in_host(h, "ovs-vsctl", "list-ports", "lab-net").stdout.split()) for h in ("lab1", "lab2")
    }
    assert len(ports["lab2"]) == 1 and ports["lab1"] == set()


def test_a_destination_whose_libvirtd_was_stopped_is_refused_and_nothing_moves(lab, guests):
    vm = guests()
    before = vm_row(lab, vm)
    lab.stop_libvirtd("lab2")
    try:
        r = lab.inv.fail("vm-migrate", f"vm={vm}", "host=lab2", code="HOST_OFFLINE")
        first = r.err.splitlines()[0]
        assert first.startswith(
            f"vmctl: HOST_OFFLINE: migrate VM {before['name-label']} from lab1 to lab2 failed on lab2: "
        )
        assert "10.201.0.12" in first
        assert on_hosts(lab, vm) == {"lab1": "running"}
        after = vm_row(lab, vm)
        assert (after["resident-on"], after["scheduled-to-be-resident-on"], after["current-operations"]) == (
            before["resident-on"],
            "",
            [],
        )
    finally:
        lab.restart_host("lab2")
    assert lab.virsh("lab2", "list", "--all").returncode == 0


UNITS = {"B": 1, "KiB": 1024, "MiB": MiB, "GiB": 1024**3}


def job_figure(info: str, name: str) -> float:
    """A byte figure of `virsh domjobinfo` ("Data processed:   1.500 MiB"), 0 when absent."""
    for line in info.splitlines():
        if line.startswith(f"{name}:"):
            value, unit = line.split(":", 1)[1].split()[:2]
            return float(value) * UNITS[unit]
    return 0.0


def start_slow_migration(lab, vm: str) -> subprocess.Popen:
    """vm-migrate of a 2 GiB guest (never written: zero pages cost ~9 bytes each) at 1 MiB/s,
    about six seconds of stream, returned once its job is moving data on lab1 with data still
    to send."""
    p = subprocess.Popen(
        [*VMCTL, "vm-migrate", f"vm={vm}", "host=lab2", "bandwidth=1MiB/s", "--force"],
        env=lab.inv.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120  # a loaded machine is slow to set the job up
    while True:
        info = lab.virsh("lab1", "domjobinfo", vm, check=False).stdout
        if job_figure(info, "Data processed") > 0 and job_figure(info, "Data remaining") > 0:
            return p
        assert p.poll() is None and time.monotonic() < deadline, (info, p.communicate())
        time.sleep(0.05)


def test_ctrl_c_aborts_the_migration_and_the_guest_runs_on_lab1(lab, guests):
    vm = guests("2GiB")
    before = vm_row(lab, vm)
    p = start_slow_migration(lab, vm)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert (p.returncode, out, err) == (130, "", "vmctl: interrupted; nothing was changed\n")
    assert on_hosts(lab, vm) == {"lab1": "running"}
    after = vm_row(lab, vm)
    for k in ("resident-on", "scheduled-to-be-resident-on", "current-operations", "domid", "other-config"):
        assert after[k] == before[k], k
    tasks = json.loads(lab.inv.ok("-f", "json", "task-list", "params=all"))
    assert [t["status"] for t in tasks if t["objects"] == [f"vm:{vm}"]][-1:] == ["cancelled"]
    # and it still migrates afterwards
    lab.inv.ok("vm-migrate", f"vm={vm}", "host=lab2")
    assert on_hosts(lab, vm) == {"lab2": "running"}


def test_kill_9_mid_migration_then_host_sync_fix_agrees_with_the_hosts(lab, guests):
    """vmctl killed mid-migration: libvirt finishes (or abandons) the migration alone; host-sync
    of the source with --fix then records the guest where it runs, exactly once, on one host."""
    vm = guests("2GiB")
    p = start_slow_migration(lab, vm)
    p.kill()
    p.communicate(timeout=60)
    row = vm_row(lab, vm)  # what the killed vmctl left: the VM migrating, held by a pending task
    assert row["scheduled-to-be-resident-on"] == host_uuid(lab, "lab2") and row["current-operations"] == [
        "pool_migrate"
    ]
    # libvirt goes on without vmctl: wait for the migration to end, one way or the other
    deadline = time.monotonic() + 120
    while not (len(where := on_hosts(lab, vm)) == 1 and "running" in where.values()):
        assert time.monotonic() < deadline, where
        time.sleep(0.1)
    (host,) = where
    out = lab.inv.ok("host-sync", "host=lab1", "--fix")
    assert "closed it as interrupted" in out and "marked it halted" not in out
    row = vm_row(lab, vm)
    assert (row["power-state"], row["resident-on"]) == ("running", host_uuid(lab, host))
    assert (row["scheduled-to-be-resident-on"], row["current-operations"]) == ("", [])
    assert on_hosts(lab, vm) == {host: "running"}  # exactly once, on one host
    for h in ("lab1", "lab2"):
        r = lab.inv.run("host-sync", f"host={h}")
        assert r.rc == 0, r.out + r.err


def test_the_maintenance_chain_evacuates_lab1_for_real(lab, guests):
    vms = guests(count=2)
    try:
        out = lab.inv.ok("host-disable", "host=lab1", "--", "host-evacuate", "host=lab1")
        for vm in vms:
            assert on_hosts(lab, vm) == {"lab2": "running"}
            assert vm_row(lab, vm)["resident-on"] == host_uuid(lab, "lab2")
            assert vm in out
        assert out.count("predicted  measured") == 2
        # one wave: the two migrations ran at once
        assert {json.loads(vm_row(lab, vm)["other-config"]["last-migration"])["wave"] for vm in vms} == {1}
        assert (
            json.loads(lab.inv.ok("-f", "json", "host-list", "name-label=lab1", "params=enabled"))[0][
                "enabled"
            ]
            is False
        )
    finally:
        lab.inv.ok("host-enable", "host=lab1")


def test_an_evacuation_that_fails_half_way_keeps_what_moved_and_stops(lab, guests):
    """Waves of two (batch-size=2): the second guest's domain goes away behind vmctl's back, so its
    migration fails; the other move of its wave ends and stays committed, the third guest (the
    second wave) is not moved."""
    vms = guests(count=3)
    args = ("host-evacuate", "host=lab1", "batch-size=2")
    evacuation = json.loads(lab.inv.ok("-f", "json", "--dry-run", *args))
    plan, lab1 = evacuation["moves"], evacuation["host"]
    order = [m["vm"] for m in plan]
    assert sorted(order) == sorted(vms) and [m["wave"] for m in plan] == [1, 1, 2]
    second = plan[1]["name-label"]
    lab.virsh("lab1", "destroy", order[1])
    r = lab.inv.fail(*args, code="DRIVER_ERROR")
    first = r.err.splitlines()[0]
    assert first.startswith(
        f"vmctl: DRIVER_ERROR: move 2 of 3 (VM {second} from lab1 to lab2) failed on lab1: "
    )
    assert first.endswith("; 1 other move is done and committed; the 1 move after it was not attempted")
    assert on_hosts(lab, order[0]) == {"lab2": "running"}
    assert on_hosts(lab, order[2]) == {"lab1": "running"}
    rows = {r["uuid"]: r for r in json.loads(lab.inv.ok("-f", "json", "vm-list", "params=all"))}
    assert rows[order[0]]["resident-on"] == plan[0]["to"]
    for vm in order[1:]:
        assert (rows[vm]["resident-on"], rows[vm]["scheduled-to-be-resident-on"]) == (lab1, "")


def test_evacuating_a_host_with_six_guests_moves_every_one_of_them(lab, guests):
    """Six running guests on lab1: host-evacuate moves all six to lab2, wave by wave, as virsh
    list on every host and the inventory both say."""
    vms = guests(count=6)
    assert set(vms) <= running_on(lab, "lab1")
    started = time.monotonic()
    data = json.loads(lab.inv.ok("-f", "json", "host-evacuate", "host=lab1"))
    took = time.monotonic() - started
    assert sorted(d["vm"] for d in data) == sorted(vms)
    listed = {h: set(lab.virsh(h, "list", "--all", "--name").stdout.split()) for h in ("lab1", "lab2")}
    assert listed["lab1"] & set(vms) == set()
    assert set(vms) <= running_on(lab, "lab2") and set(vms) <= listed["lab2"]
    rows = {r["uuid"]: r for r in json.loads(lab.inv.ok("-f", "json", "vm-list", "params=all"))}
    lab2 = host_uuid(lab, "lab2")
    for vm in vms:
        assert (rows[vm]["resident-on"], rows[vm]["current-operations"]) == (lab2, [])
    waves = [json.loads(rows[vm]["other-config"]["last-migration"])["wave"] for vm in vms]
    assert max(waves.count(w) for w in set(waves)) > 1  # some migrations ran at once
    assert all(d["measured"]["total-time"] > 0 for d in data)
    print(f"six guests evacuated in {took:.1f} s, waves {sorted(waves)}")


def test_pool_rebalance_moves_guests_for_real_as_its_plan_says(lab, guests):
    """Four 2 GiB guests (never written: each moves a few MiB) on lab1 and none on lab2: the
    rebalance's planned moves happen, as virsh on both hosts and the inventory say."""
    vms = guests("2GiB", count=4)
    plan = json.loads(lab.inv.ok("-f", "json", "--dry-run", "pool-rebalance", "pool=lab"))["moves"]
    assert plan and {m["vm"] for m in plan} <= set(vms)
    data = json.loads(lab.inv.ok("-f", "json", "pool-rebalance", "pool=lab"))
    assert [d["vm"] for d in data] == [m["vm"] for m in plan]
    for m in plan:
        to = "lab2" if m["to"] == host_uuid(lab, "lab2") else "lab1"
        assert on_hosts(lab, m["vm"]) == {to: "running"}
        assert vm_row(lab, m["vm"])["resident-on"] == m["to"]
    assert running_on(lab, "lab1") & running_on(lab, "lab2") == set()


def test_storage_motion_copies_the_disk_to_lab2s_local_sr_during_the_migration(lab, guests):
    """A guest of the template tiny, its disk on the shared SR, moves to lab2 with its disk copied
    to lab2's local SR: the domain on lab2 reads the new file there, the old file is gone, and
    pool-sync finds the hosts and the inventory agreeing."""
    import os

    vm = guests(tiny=True)
    disk = lab.inv.ok("vbd-list", f"vm={vm}", "type=disk", "params=vdi", "--minimal").strip()
    old_file = lab.inv.ok("vdi-param-get", f"uuid={disk}", "param-name=location").strip()
    assert old_file in os.listdir(f"{lab.state.dir}/shared")
    data = json.loads(
        lab.inv.ok("-f", "json", "vm-migrate", f"vm={vm}", "host=lab2", f"vdi:{disk}=lab2-local")
    )
    assert on_hosts(lab, vm) == {"lab2": "running"}
    new = lab.inv.ok("vbd-list", f"vm={vm}", "type=disk", "params=vdi", "--minimal").strip()
    row = json.loads(lab.inv.ok("-f", "json", "vdi-list", f"uuid={new}", "params=all"))[0]
    local = lab.inv.ok("sr-list", "name-label=lab2-local", "--minimal").strip()
    assert new != disk and row["sr"] == local
    blk = lab.virsh("lab2", "domblklist", vm).stdout
    assert f"/var/lib/libvirt/images/{row['location']}" in blk
    assert row["location"] in lab.in_host("lab2", "ls", "/var/lib/libvirt/images").stdout.split()
    assert old_file not in os.listdir(f"{lab.state.dir}/shared")
    assert data["measured"]["total-time"] > 0 and data["predicted"]["storage-bytes"] >= 0
    assert lab.inv.run("pool-sync").rc == 0


EXAMPLE = (
    "sudo vmctl lab up && vmctl vm-install template=tiny new-name-label=t1 && vmctl vm-start vm=t1 \\\n"
    "  && vmctl vm-migrate vm=t1 host=lab2 && vmctl lab down\n"
)


def test_the_labs_example_runs_as_written(lab, tmp_path):
    """The example of the README (drivers.md §5) in a shell, word for word: a lab of its own up,
    a guest of the template tiny installed, started (on lab1, its affinity host) and migrated live
    to lab2, the lab down. `vmctl` is this checkout's; `sudo` runs its command as it is (the test
    runs as root: a real sudo would reset the environment that names the test's inventory). The
    session's lab is down meanwhile (one lab per machine) and up again afterwards."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert EXAMPLE in (root / "README.md").read_text(encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "vmctl").write_text(f'#!/bin/sh\nexec {VMCTL[0]} -m vmctl "$@"\n')
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = lab.inv.env({"PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(root)})
    env.pop("XDG_RUNTIME_DIR", None)  # the lab's default directory: /run/vmctl-lab
    assert lab.down().rc == 0
    try:
        r = subprocess.run(["sh", "-c", EXAMPLE], env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].startswith("lab: 2 hosts up in ") and lines[-1].startswith("lab: down in ")
        # vm-migrate printed the move it made, lab1 to lab2, predicted and measured
        (vm_line,) = [ln for ln in lines if ln.startswith("vm  ")]
        assert vm_line.endswith("(t1)")
        assert [ln.split()[-1] for ln in lines if ln.split()[:1] in (["from"], ["to"])] == [
            "(lab1)",
            "(lab2)",
        ]
        assert any(ln.split() == ["predicted", "measured"] for ln in lines)
        downtime = next(ln for ln in lines if ln.startswith("downtime "))
        assert downtime.split()[-1] in ("ms", "s") and len(downtime.split()) == 5
        assert lab.inv.run("lab", "status").rc == 1  # nothing of it is left up
    finally:
        if lab.inv.run("lab", "status").rc == 0:
            lab.inv.run("lab", "down")
        r = lab.up()
        assert r.rc == 0, r.err
