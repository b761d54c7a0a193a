"""Live migration on a libvirt pool (vmctl/moves.py, drivers.md §3–§4), with a fake driver that
moves domains between its hosts: vm-migrate, host-evacuate and pool-rebalance make real moves,
each committed alone with the engine's prediction and the measured figures side by side; a
failure or Ctrl-C leaves the VM where it ran and says what stays done."""

from __future__ import annotations

import json
import shutil

import pytest
from test_domains_wiring import FakeDriver, ok, row, vmctl

from vmctl import drivers
from vmctl.drivers.base import DriverFault, MigrationFigures
from vmctl.runner import Options, Runner

MiB = 1024**2


class MigratingDriver(FakeDriver):
    """FakeDriver whose domain_migrate moves the domain between its hosts and measures."""

    def __init__(self) -> None:
        super().__init__()
        self.specs_migrated: list = []
        self.interrupt: set[str] = set()  # VM names whose migration is interrupted (Ctrl-C)
        self.fail_vm: dict[str, DriverFault] = {}  # VM name -> the fault its migration raises

    def domain_migrate(self, src, dst, spec, progress=None):
        self.calls.append(("domain_migrate", src.name, dst.name, spec.uuid))
        self.specs_migrated.append(spec)
        if "domain_migrate" in self.during:
            self.during["domain_migrate"]()
        if spec.title in self.interrupt:
            raise KeyboardInterrupt
        if spec.title in self.fail_vm:
            raise self.fail_vm[spec.title]
        state = self.hosts.setdefault(src.uri, {}).pop(spec.uuid)
        self.hosts.setdefault(dst.uri, {})[spec.uuid] = state
        return MigrationFigures(
            total_time=0.9,
            downtime=0.042,
            bytes=3 * MiB,
            memory=256 * MiB,
            rounds=2,
            rate=50e6,
            wall_time=1.2,
        )


@pytest.fixture
def fake(monkeypatch):
    f = MigratingDriver()
    monkeypatch.setitem(drivers._drivers, "libvirt", f)
    return f


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A libvirt pool of three hosts, VMs v1..v3 (256 MiB, no disks) running on h1: built once,
    copied for each test with the fake hosts' domains."""
    db = tmp_path_factory.mktemp("pool") / "inv.db"
    f = MigratingDriver()
    saved = drivers._drivers.get("libvirt")
    drivers._drivers["libvirt"] = f
    try:
        ok(db, "pool-create", "name-label=lp", "driver=libvirt")
        for i in (1, 2, 3):
            ok(
                db,
                "host-add",
                f"name-label=h{i}",
                f"address=10.0.0.{i}",
                "pool=lp",
                f"driver-uri=test:///h{i}",
                "pifs=eth0",  # a real host gets none unless named: the migration links' speed
            )
        for n in ("v1", "v2", "v3"):
            ok(db, "vm-create", f"name-label={n}", "memory=256MiB")
            ok(db, "vm-start", f"vm={n}", "on=h1")
    finally:
        if saved is None:
            drivers._drivers.pop("libvirt", None)
        else:
            drivers._drivers["libvirt"] = saved
    return db, {uri: dict(doms) for uri, doms in f.hosts.items()}


@pytest.fixture
def pool(tmp_path, fake, built):
    src, hosts = built
    db = tmp_path / "inv.db"
    shutil.copyfile(src, db)
    fake.hosts = {uri: dict(doms) for uri, doms in hosts.items()}
    return db


def vm(db, name: str) -> dict:
    return row(db, "vm", ok(db, "vm-list", f"name-label={name}", "--minimal"))


def host_name(db, uuid: str) -> str:
    return row(db, "host", uuid)["name-label"] if uuid else ""


def where(db, name: str) -> str:
    return host_name(db, vm(db, name)["resident-on"])


def domains_on(fake, host: str) -> set[str]:
    return set(fake.hosts.get(f"test:///{host}", {}))


def tasks(db) -> list[dict]:
    return Runner(Options(db=str(db)), "test").transaction(lambda t: t.all("task"), write=False)


def migrations(fake) -> list[tuple]:
    return [c for c in fake.calls if c[0] == "domain_migrate"]


def test_vm_migrate_moves_the_domain_and_records_prediction_and_measurement(pool, fake):
    v1 = vm(pool, "v1")["uuid"]
    out = ok(pool, "vm-migrate", "vm=v1", "host=h2", "downtime=200ms", "bandwidth=64MiB/s")
    assert migrations(fake) == [("domain_migrate", "h1", "h2", v1)]
    assert v1 in domains_on(fake, "h2") and v1 not in domains_on(fake, "h1")
    spec = fake.specs_migrated[0]
    assert (spec.uuid, spec.title, spec.bandwidth, spec.downtime) == (v1, "v1", 64 * MiB, 0.2)
    after = vm(pool, "v1")
    assert (host_name(pool, after["resident-on"]), after["scheduled-to-be-resident-on"]) == ("h2", "")
    assert after["current-operations"] == []
    record = json.loads(after["other-config"]["last-migration"])
    assert record["measured"] == {
        "total-time": 0.9,
        "downtime": 0.042,
        "bytes": 3 * MiB,
        "memory": 256 * MiB,
        "rounds": 2,
        "rate": 50e6,
        "wall-time": 1.2,
        "storage-bytes": 0,
    }
    assert record["rate"] == 64 * MiB and record["stop-reason"] == "converged"  # the prediction
    assert [t["status"] for t in tasks(pool)] == ["success"]
    # the text: the hosts, then predicted and measured side by side
    lines = out.splitlines()
    assert lines[0] == f"vm          {v1} (v1)"
    assert lines[3].split() == ["predicted", "measured"]
    figures = {ln.split()[0]: ln.split()[1:] for ln in lines[4:]}
    assert figures["downtime"][-2:] == ["42", "ms"] and figures["total-time"][-2:] == ["900", "ms"]
    assert figures["bytes"][-2:] == ["3", "MiB"]


def test_vm_migrate_json_holds_predicted_and_measured_objects(pool, fake):
    data = json.loads(ok(pool, "-f", "json", "vm-migrate", "vm=v1", "host=h3"))
    assert (data["name-label"], data["from-name"], data["to-name"]) == ("v1", "h1", "h3")
    assert set(data["predicted"]) == {
        "total-time",
        "downtime",
        "bytes",
        "storage-bytes",
        "rounds",
        "rate",
        "stop-reason",
    }
    assert data["measured"]["downtime"] == 0.042 and data["measured"]["bytes"] == 3 * MiB
    assert data["predicted"]["bytes"] == round(data["predicted"]["bytes"])  # whole bytes
    csv = ok(pool, "-f", "csv", "vm-migrate", "vm=v2", "host=h3").splitlines()
    assert csv[0].startswith("vm,name-label,from,to,predicted-total-time,measured-total-time")
    assert ok(pool, "--minimal", "vm-migrate", "vm=v3", "host=h2") == vm(pool, "v3")["resident-on"]


def test_meanwhile_the_vm_is_migrating_held_and_counted_on_both_hosts(pool, fake):
    v1 = vm(pool, "v1")
    seen = {}

    def meanwhile():
        during = vm(pool, "v1")
        seen["where"] = (
            host_name(pool, during["resident-on"]),
            host_name(pool, during["scheduled-to-be-resident-on"]),
        )
        seen["ops"] = during["current-operations"]
        seen["tasks"] = [t["status"] for t in tasks(pool)]
        rc, _, err = vmctl(pool, "vm-pause", "vm=v1")
        seen["other"] = err.split(":")[1].strip() if rc else "allowed"

    fake.during["domain_migrate"] = meanwhile
    ok(pool, "vm-migrate", f"vm={v1['uuid']}", "host=h2")
    assert seen == {
        "where": ("h1", "h2"),
        "ops": ["pool_migrate"],
        "tasks": ["pending"],
        "other": "OTHER_OPERATION_IN_PROGRESS",
    }


@pytest.mark.parametrize(
    "fault, code",
    [
        (
            DriverFault("unable to connect to server at '10.0.0.2:16509': Connection refused", host="h1"),
            "DRIVER_ERROR",
        ),
        (
            DriverFault(
                "h2 has 1 GiB of memory available, VM v1 may use 256 GiB",
                code="HOST_NOT_ENOUGH_FREE_MEMORY",
                host="h2",
            ),
            "HOST_NOT_ENOUGH_FREE_MEMORY",
        ),
        (
            DriverFault(
                "the CPU is incompatible with host CPU", code="VM_INCOMPATIBLE_WITH_THIS_HOST", host="h2"
            ),
            "VM_INCOMPATIBLE_WITH_THIS_HOST",
        ),
    ],
)
def test_a_failed_migration_is_one_line_and_moves_nothing(pool, fake, fault, code):
    before = vm(pool, "v1")
    fake.fail_vm["v1"] = fault
    rc, out, err = vmctl(pool, "vm-migrate", "vm=v1", "host=h2")
    assert rc == 1 and out == ""
    first = err.splitlines()[0]
    assert first == f"vmctl: {code}: migrate VM v1 from h1 to h2 failed on {fault.host}: {fault.message}"
    after = vm(pool, "v1")
    for k in ("resident-on", "scheduled-to-be-resident-on", "current-operations", "other-config", "domid"):
        assert after[k] == before[k], k
    assert before["uuid"] in domains_on(fake, "h1")
    assert [(t["status"], t["error-code"]) for t in tasks(pool)] == [("failure", code)]


def test_ctrl_c_leaves_the_vm_on_its_source_and_cancels_the_task(pool, fake):
    before = vm(pool, "v1")
    fake.interrupt.add("v1")
    rc, out, err = vmctl(pool, "vm-migrate", "vm=v1", "host=h2")
    assert (rc, out, err) == (130, "", "vmctl: interrupted; nothing was changed\n")
    after = vm(pool, "v1")
    assert (after["resident-on"], after["scheduled-to-be-resident-on"]) == (before["resident-on"], "")
    assert [t["status"] for t in tasks(pool)] == ["cancelled"]


@pytest.mark.parametrize("flag", ["--dry-run", "--explain"])
def test_dry_run_and_explain_migrate_nothing(pool, fake, flag):
    out = ok(pool, flag, "vm-migrate", "vm=v1", "host=h2")
    assert out and "measured" not in out
    ok(pool, flag, "host-evacuate", "host=h1")
    ok(pool, flag, "pool-rebalance", "threshold=5")
    assert migrations(fake) == [] and where(pool, "v1") == "h1"


def storage_motion(pool, fake):
    """v1 with a disk on the shared SR s1, and a second shared SR s2: (disk uuid, s1, s2)."""
    srs = [
        ok(
            pool,
            "sr-create",
            f"name-label=s{i}",
            "type=nfs",
            "shared=true",
            "physical-size=10GiB",
            "device-config:server=nas",
            f"device-config:serverpath=/s{i}",
        )
        for i in (1, 2)
    ]
    ok(pool, "vm-shutdown", "vm=v1", "--force")
    d = ok(pool, "vdi-create", f"sr-uuid={srs[0]}", "name-label=d", "virtual-size=1GiB")
    ok(pool, "vbd-create", f"vm-uuid={vm(pool, 'v1')['uuid']}", f"vdi-uuid={d}", "device=0")
    ok(pool, "vm-start", "vm=v1", "on=h1")
    fake.calls.clear()
    return d, srs[0], srs[1]


def disk_of(pool, name: str) -> dict:
    vbd = ok(pool, "vbd-list", f"vm={vm(pool, name)['uuid']}", "type=disk", "params=vdi", "--minimal")
    return row(pool, "vdi", vbd)


def test_storage_motion_copies_the_disk_during_the_migration(pool, fake):
    d, s1, s2 = storage_motion(pool, fake)
    data = json.loads(ok(pool, "-f", "json", "vm-migrate", "vm=v1", "host=h2", f"vdi:{d}={s2}"))
    new = disk_of(pool, "v1")
    assert new["uuid"] != d and new["sr"] == s2 and new["location"] == f"{new['uuid']}.qcow2"
    assert row(pool, "vdi", d) is None  # the old disk is gone, its volume deleted after the move
    (spec,) = fake.specs_migrated
    ((old_vol, new_vol),) = spec.disks
    assert (old_vol.uuid, old_vol.sr.uuid, new_vol.uuid, new_vol.sr.uuid) == (d, s1, new["uuid"], s2)
    acting = [c for c in fake.calls if c[0] in ("volume_create", "domain_migrate", "volume_delete")]
    assert [c[:2] for c in acting] == [
        ("volume_create", "h2"),
        ("domain_migrate", "h1"),
        ("volume_delete", "h1"),
    ]
    assert where(pool, "v1") == "h2" and data["predicted"]["storage-bytes"] is not None
    record = json.loads(vm(pool, "v1")["other-config"]["last-migration"])
    assert record["vdis"] == {d: new["uuid"]}


def test_a_running_vms_disk_moves_only_with_a_migration_to_another_host(pool, fake):
    """libvirt copies a running guest's disks while it migrates: without another host (host= the
    current one, or vdi-pool-migrate) the move is refused in one line, dry run included, and
    nothing changes."""
    d, _, s2 = storage_motion(pool, fake)
    for words in (
        ("vm-migrate", "vm=v1", "host=h1", f"vdi:{d}={s2}"),
        ("--dry-run", "vm-migrate", "vm=v1", "host=h1", f"vdi:{d}={s2}"),
        ("vdi-pool-migrate", f"uuid={d}", f"sr-uuid={s2}"),
    ):
        rc, out, err = vmctl(pool, *words)
        assert (rc, out) == (1, "") and err.splitlines()[0] == (
            "vmctl: OPERATION_NOT_ALLOWED: On a libvirt pool a running VM's disks move only with a migration "
            "to another host: add host= naming another host than h1"
        ), err
    assert disk_of(pool, "v1")["uuid"] == d and where(pool, "v1") == "h1" and fake.calls == []


def test_a_failed_storage_motion_removes_the_new_volume_and_keeps_the_old_disk(pool, fake):
    d, s1, s2 = storage_motion(pool, fake)
    before = {n: row(pool, "vdi", d)[n] for n in ("sr", "location")}
    fake.fail_vm["v1"] = DriverFault("Unable to write to the NBD server: Connection reset by peer", host="h1")
    rc, out, err = vmctl(pool, "vm-migrate", "vm=v1", "host=h2", f"vdi:{d}={s2}")
    assert rc == 1 and out == "" and "NBD server" in err.splitlines()[0]
    assert (
        disk_of(pool, "v1")["uuid"] == d and {n: row(pool, "vdi", d)[n] for n in ("sr", "location")} == before
    )
    assert json.loads(ok(pool, "-f", "json", "vdi-list", f"sr={s2}")) == []
    acting = [c[:2] for c in fake.calls if c[0] in ("volume_create", "domain_migrate", "volume_delete")]
    assert acting == [("volume_create", "h2"), ("domain_migrate", "h1"), ("volume_delete", "h2")]
    assert where(pool, "v1") == "h1"


def test_vm_migrate_multiple_commits_each_vm_alone(pool, fake):
    fake.fail_vm["v2"] = DriverFault("migration failed: connection reset", host="h1")
    rc, out, err = vmctl(pool, "vm-migrate", "host=h2", "power-state=running", "--multiple")
    assert rc == 1 and out == ""
    first = err.splitlines()[0]
    assert first == (
        "vmctl: DRIVER_ERROR: VM v2 (2 of 3): migrate VM v2 from h1 to h2 failed on h1: migration failed: "
        "connection reset; the migrations before it are done and committed; the 1 migration after it was "
        "not attempted"
    )
    assert [where(pool, n) for n in ("v1", "v2", "v3")] == ["h2", "h1", "h1"]
    assert [c[1:3] for c in migrations(fake)] == [("h1", "h2"), ("h1", "h2")]
    assert sorted(t["status"] for t in tasks(pool)) == ["failure", "success"]


def test_host_evacuate_moves_each_vm_for_real_and_prints_what_moved(pool, fake):
    data = json.loads(ok(pool, "-f", "json", "host-evacuate", "host=h1"))
    assert sorted(d["name-label"] for d in data) == ["v1", "v2", "v3"]
    assert all(d["measured"]["downtime"] == 0.042 for d in data)
    assert domains_on(fake, "h1") == set() and len(migrations(fake)) == 3
    for d in data:
        assert where(pool, d["name-label"]) == d["to-name"] != "h1"
        record = json.loads(vm(pool, d["name-label"])["other-config"]["last-migration"])
        assert record["wave"] >= 1 and record["measured"]["rounds"] == 2
    assert len(tasks(pool)) == 3  # one task a move


def test_an_evacuation_that_fails_half_way_keeps_what_moved(pool, fake):
    """Waves of one (batch-size=1): the moves one after another; the second fails, the first
    stays done, the third is not attempted."""
    plan = json.loads(ok(pool, "-f", "json", "--dry-run", "host-evacuate", "host=h1", "batch-size=1"))[
        "moves"
    ]
    order = [m["name-label"] for m in plan]
    assert [m["wave"] for m in plan] == [1, 2, 3]
    fake.fail_vm[order[1]] = DriverFault("unable to connect to server: Connection refused", host="h1")
    rc, out, err = vmctl(pool, "host-evacuate", "host=h1", "batch-size=1")
    assert rc == 1 and out == ""
    to = host_name(pool, plan[1]["to"])
    assert err.splitlines()[0] == (
        f"vmctl: DRIVER_ERROR: move 2 of 3 (VM {order[1]} from h1 to {to}) failed on h1: unable to connect "
        "to server: Connection refused; 1 other move is done and committed; the 1 move after it "
        "was not attempted"
    )
    assert f"  step: move 2 of 3 (VM {order[1]} from h1 to {to})" in err.splitlines()
    assert where(pool, order[0]) == host_name(pool, plan[0]["to"])
    assert where(pool, order[1]) == where(pool, order[2]) == "h1"
    assert len(migrations(fake)) == 2  # the third was not attempted
    assert all(vm(pool, n)["scheduled-to-be-resident-on"] == "" for n in order)
    assert sorted(t["status"] for t in tasks(pool)) == ["failure", "success"]


def test_the_moves_of_a_wave_migrate_at_once_and_the_next_wave_waits(pool, fake):
    """batch-size=2: waves of two and one. Both moves of the first wave are under way together
    (each waits for the other at a barrier: one after another they could not pass it), and the
    third starts once both ended. What is printed follows the plan's order."""
    import threading

    plan = json.loads(ok(pool, "-f", "json", "--dry-run", "host-evacuate", "host=h1", "batch-size=2"))[
        "moves"
    ]
    assert [m["wave"] for m in plan] == [1, 1, 2]
    together = threading.Barrier(2, timeout=10)
    timeline: list[str] = []
    first_wave = {plan[0]["vm"], plan[1]["vm"]}

    def meanwhile():
        spec = fake.specs_migrated[-1]
        timeline.append(f"start {spec.title}")
        if spec.uuid in first_wave:
            together.wait()

    fake.during["domain_migrate"] = meanwhile
    original = fake.domain_migrate

    def migrate(src, dst, spec, progress=None):
        figures = original(src, dst, spec, progress)
        timeline.append(f"end {spec.title}")
        return figures

    fake.domain_migrate = migrate
    data = json.loads(ok(pool, "-f", "json", "host-evacuate", "host=h1", "batch-size=2"))
    assert [d["vm"] for d in data] == [m["vm"] for m in plan]
    assert sorted(timeline[:2]) == sorted(f"start {m['name-label']}" for m in plan[:2])
    assert timeline.index(f"start {plan[2]['name-label']}") > max(
        timeline.index(f"end {m['name-label']}") for m in plan[:2]
    )
    assert domains_on(fake, "h1") == set()
    assert len(tasks(pool)) == 3 and {t["status"] for t in tasks(pool)} == {"success"}


def test_a_move_failing_in_a_wave_keeps_the_others_of_the_wave_and_stops_there(pool, fake):
    plan = json.loads(ok(pool, "-f", "json", "--dry-run", "host-evacuate", "host=h1", "batch-size=2"))[
        "moves"
    ]
    order = [m["name-label"] for m in plan]
    fake.fail_vm[order[0]] = DriverFault("Connection refused", host="h1")
    rc, _, err = vmctl(pool, "host-evacuate", "host=h1", "batch-size=2")
    assert rc == 1
    assert err.splitlines()[0].startswith(f"vmctl: DRIVER_ERROR: move 1 of 3 (VM {order[0]} from h1 to ")
    assert err.splitlines()[0].endswith(
        "Connection refused; 1 other move is done and committed; the 1 move after it was not attempted"
    )
    assert where(pool, order[0]) == where(pool, order[2]) == "h1"
    assert where(pool, order[1]) == host_name(pool, plan[1]["to"])  # its wave's other move ended well
    assert len(migrations(fake)) == 2


def test_a_move_refused_while_its_wave_is_decided_waits_for_the_others(pool, fake, monkeypatch):
    """A move whose re-check fails while other moves of its wave are decided (say it needs the
    room one of them frees) is checked once more after they ended, and then made."""
    from vmctl import moves
    from vmctl.errors import VmctlError

    plan = json.loads(ok(pool, "-f", "json", "--dry-run", "host-evacuate", "host=h1"))["moves"]
    assert {m["wave"] for m in plan} == {1}
    checks: list[str] = []
    real_recheck = moves.recheck

    def recheck(txn, m):
        checks.append(m.vm)
        if m.vm == plan[1]["vm"] and checks.count(m.vm) == 1:
            raise VmctlError("HOST_NOT_ENOUGH_FREE_MEMORY", "not yet")
        return real_recheck(txn, m)

    monkeypatch.setattr(moves, "recheck", recheck)
    ok(pool, "host-evacuate", "host=h1")
    # the first ran alone; the refused one, checked again once it ended, ran with the third
    made = [c[3] for c in migrations(fake)]
    assert made[0] == plan[0]["vm"] and sorted(made[1:]) == sorted([plan[1]["vm"], plan[2]["vm"]])
    assert checks.count(plan[1]["vm"]) == 2
    assert domains_on(fake, "h1") == set()


def test_the_maintenance_chain_stays_one_decision_and_keeps_the_host_disabled(pool, fake):
    """host-disable -- host-evacuate: a refused evacuation changes nothing (the host stays
    enabled); once the plan is decided the host is disabled whatever its moves do, and a full
    evacuation leaves it disabled and empty."""
    h1 = ok(pool, "host-list", "name-label=h1", "--minimal")
    ok(pool, "vm-param-set", "uuid=" + vm(pool, "v1")["uuid"], "platform:nomigrate=true")
    rc, _, err = vmctl(pool, "host-disable", "host=h1", "--", "host-evacuate", "host=h1")
    assert rc == 1 and err.startswith("vmctl: VM_IS_IMMOBILE")  # the VM's own error, as XAPI's
    assert row(pool, "host", h1)["enabled"] is True and migrations(fake) == []
    ok(
        pool,
        "vm-param-remove",
        "uuid=" + vm(pool, "v1")["uuid"],
        "param-name=platform",
        "param-key=nomigrate",
    )

    plan = json.loads(ok(pool, "-f", "json", "--dry-run", "host-evacuate", "host=h1"))["moves"]
    fake.fail_vm[plan[0]["name-label"]] = DriverFault("Connection refused", host="h1")
    rc, _, err = vmctl(pool, "host-disable", "host=h1", "--", "host-evacuate", "host=h1")
    assert rc == 1 and "2 other moves are done and committed" in err.splitlines()[0]
    assert row(pool, "host", h1)["enabled"] is False
    assert where(pool, plan[0]["name-label"]) == "h1"

    fake.fail_vm.clear()
    ok(pool, "host-enable", "host=h1")
    ok(pool, "host-disable", "host=h1", "--", "host-evacuate", "host=h1")
    assert row(pool, "host", h1)["enabled"] is False
    assert domains_on(fake, "h1") == set() and "h1" not in {where(pool, n) for n in ("v1", "v2", "v3")}


def test_ctrl_c_in_a_later_move_keeps_the_earlier_ones(pool, fake):
    plan = json.loads(ok(pool, "-f", "json", "--dry-run", "host-evacuate", "host=h1", "batch-size=1"))[
        "moves"
    ]
    order = [m["name-label"] for m in plan]
    fake.interrupt.add(order[1])
    rc, out, err = vmctl(pool, "host-evacuate", "host=h1", "batch-size=1")
    assert rc == 130 and out == ""
    assert err.startswith(f"vmctl: interrupted: move 2 of 3 (VM {order[1]} from h1 to ")
    assert err.rstrip().endswith(
        "did not happen; 1 other move is done and committed; the 1 move after it not attempted"
    )
    assert where(pool, order[0]) != "h1" and where(pool, order[1]) == where(pool, order[2]) == "h1"


def test_ctrl_c_during_a_wave_stops_every_migration_under_way(pool, fake):
    """Ctrl-C reaches the main thread while the wave's migrations run in theirs: each is asked to
    stop (as the libvirt driver aborts its job) and every guest stays on h1, the tasks cancelled."""
    import _thread
    import threading
    import time

    from vmctl.drivers.base import cancel_requested

    started = threading.Barrier(3, timeout=10)

    def migrate(src, dst, spec, progress=None):
        fake.calls.append(("domain_migrate", src.name, dst.name, spec.uuid))
        if started.wait() == 0:
            _thread.interrupt_main()  # Ctrl-C, once all three are under way
        deadline = time.monotonic() + 10
        while not cancel_requested.is_set():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        raise KeyboardInterrupt  # the job aborted, the guest on its source

    fake.domain_migrate = migrate
    rc, out, err = vmctl(pool, "host-evacuate", "host=h1")
    assert rc == 130 and out == ""
    assert err.startswith("vmctl: interrupted: move ") and err.rstrip().endswith(
        "did not happen; no move is done"
    )
    assert err.count(" did not happen") == 1 and err.count(" of 3 (VM ") == 3
    assert {where(pool, n) for n in ("v1", "v2", "v3")} == {"h1"}
    assert all(vm(pool, n)["scheduled-to-be-resident-on"] == "" for n in ("v1", "v2", "v3"))
    assert [t["status"] for t in tasks(pool)] == ["cancelled"] * 3
    assert not cancel_requested.is_set()


def test_pool_rebalance_makes_its_moves_for_real(pool, fake):
    plan = json.loads(ok(pool, "-f", "json", "--dry-run", "pool-rebalance", "threshold=5"))
    assert plan["moves"], "three VMs on one host of three: the plan moves some"
    data = json.loads(ok(pool, "-f", "json", "pool-rebalance", "threshold=5"))
    assert [d["vm"] for d in data] == [m["vm"] for m in plan["moves"]]  # printed in the plan's order
    assert sorted(c[3] for c in migrations(fake)) == sorted(m["vm"] for m in plan["moves"])
    for m, d in zip(plan["moves"], data):
        assert vm(pool, m["name-label"])["resident-on"] == m["to"]
        # the engine's prediction for the move in its wave, as the dry run printed its time
        assert d["predicted"]["total-time"] == pytest.approx(m["time"])
        record = json.loads(vm(pool, m["name-label"])["other-config"]["last-migration"])
        assert (record["step"], record["rebalance"]) == (m["step"], plan["policy"])


def test_an_evacuation_keeps_its_plans_predictions_and_limits_each_stream_to_its_wave_rate(pool, fake):
    """What is applied is the plan the dry run printed: each move's recorded prediction is the
    plan's for it in its wave (h1's 2.5 Gbit/s link shared by the wave's moves, so less than a move
    alone would get), and libvirt is given that rate and downtime target."""
    h1 = ok(pool, "host-list", "name-label=h1", "--minimal")
    for pif in ok(pool, "pif-list", f"host-uuid={h1}", "--minimal").split(","):
        ok(pool, "pif-param-set", f"uuid={pif}", "speed=2500")
    plan = json.loads(ok(pool, "-f", "json", "--dry-run", "host-evacuate", "host=h1"))["moves"]
    assert len({m["wave"] for m in plan}) < len(plan)  # moves sharing a wave
    ok(pool, "host-evacuate", "host=h1")
    specs = {spec.uuid: spec for spec in fake.specs_migrated}
    for m in plan:
        record = json.loads(vm(pool, m["name-label"])["other-config"]["last-migration"])
        assert (record["wave"], record["total-time"]) == (m["wave"], m["time"])
        assert record["bytes"] == pytest.approx(m["bytes"], abs=1)  # the JSON prints whole bytes
        assert record["downtime"] == m["downtime"] and specs[m["vm"]].bandwidth == record["rate"]


def test_a_later_move_is_checked_again_on_the_inventory_as_it_is_then(pool, fake):
    """Between two moves the lock is released: a move whose VM was halted meanwhile fails its
    re-check, and nothing after it is attempted."""
    plan = json.loads(ok(pool, "-f", "json", "--dry-run", "host-evacuate", "host=h1", "batch-size=1"))[
        "moves"
    ]
    order = [m["name-label"] for m in plan]

    def halt_the_second():
        if len(migrations(fake)) == 1:
            ok(pool, "vm-shutdown", f"vm={order[1]}", "--force")

    fake.during["domain_migrate"] = halt_the_second
    rc, _, err = vmctl(pool, "host-evacuate", "host=h1", "batch-size=1")
    assert rc == 1
    assert err.startswith(f"vmctl: VM_BAD_POWER_STATE: move 2 of 3 (VM {order[1]} from h1 to ")
    assert len(migrations(fake)) == 1 and where(pool, order[2]) == "h1"


def test_the_progress_line_follows_the_job_on_a_terminal_only(pool, fake, monkeypatch):
    """The driver gets a progress callback drawing on stderr when stderr is a terminal and the
    command is not quiet (vmctl/progress.py), and the line is erased when the migration ends."""
    import io
    import types

    from vmctl import progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    seen = []

    def migrate_with_progress(src, dst, spec, bar=None):
        seen.append(bar)
        if bar is not None:
            bar(64 * MiB, 256 * MiB)
            bar(256 * MiB, 256 * MiB)
        return MigratingDriver.domain_migrate(fake, src, dst, spec, bar)

    monkeypatch.setattr(fake, "domain_migrate", migrate_with_progress)
    tty = Tty()
    # the command line's stderr is the test's capture here: a terminal stands in for it
    monkeypatch.setattr(progress, "sys", types.SimpleNamespace(stderr=tty))
    ok(pool, "vm-migrate", "vm=v1", "host=h2")
    ok(pool, "-q", "vm-migrate", "vm=v1", "host=h3")
    assert seen[0] is not None and seen[1] is None
    drawn = tty.getvalue()
    assert "vmctl: migrate VM v1 from h1 to h2:  25% 64 MiB of 256 MiB" in drawn
    assert "100% 256 MiB of 256 MiB" in drawn and drawn.endswith("\r\x1b[K")
