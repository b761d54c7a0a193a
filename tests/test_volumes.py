"""Storage on real pools, without a hypervisor (drivers.md §3–§4, vmctl/volumes.py): the storage
commands of a libvirt pool queue exactly the volume work their records describe, with the right
file names, order (deletes last), undo and measured sizes; a dry run or a simulated pool calls no
driver; a failing host action leaves no record. The driver here is a fake that records its calls;
tests/test_libvirt_storage.py runs the real one."""

from __future__ import annotations

import io

import pytest
from cli_helpers import cli, with_txn

from vmctl import drivers, progress
from vmctl.drivers.base import DriverFault, HostFacts, VolumeState

MiB, GiB = 1024**2, 1024**3


class FakeDriver:
    """The storage half of the Driver protocol, recording every call; `fail` names the
    operations that raise, `used` is the allocation every volume reports."""

    name = "libvirt"

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.fail: set[str] = set()
        self.used = 3 * MiB

    def _call(self, op: str, *args) -> None:
        if op in self.fail:
            raise DriverFault(f"{op}: No space left on device")
        self.calls.append((op, *args))

    def ops(self) -> list[str]:
        return [c[0] for c in self.calls]

    def probe(self, host):
        return HostFacts("GenuineIntel", "Fake", 6, ("sse2",), 8, 64 * GiB, "9.0.0")

    def switch_rows(self, host):  # no bridges (tests/test_ovs_real.py has real ones)
        return {}

    def cpu_compatible(self, host, cpu_xml):  # every host of these tests runs the master's CPU
        return True

    def sr_attach(self, host, sr):
        self._call("sr_attach", host.name, sr.name, sr.path or sr.server)
        return True

    def sr_detach(self, host, sr):
        self._call("sr_detach", host.name, sr.name)

    def volume_create(self, host, vol):
        self._call("volume_create", host.name, vol.file_name, vol.parent.file_name if vol.parent else "")
        return VolumeState(vol.virtual_size, min(self.used, vol.virtual_size))

    def volume_resize(self, host, vol, size, domain):
        self._call("volume_resize", host.name, vol.file_name, size, domain)
        return VolumeState(size, self.used)

    def volume_copy(self, host, src, dst, progress):
        self._call("volume_copy", host.name, src.file_name, dst.file_name, progress is not None)
        return VolumeState(dst.virtual_size, self.used)

    def volume_delete(self, host, vol, chain=True):
        self._call("volume_delete", host.name, vol.file_name, chain)

    def volume_state(self, host, vol):  # a read: not recorded among the changes
        return VolumeState(vol.virtual_size, self.used)

    def volumes(self, host, sr):
        return {}

    def volume_snapshot_live(self, host, domain, pairs):
        self._call("volume_snapshot_live", host.name, domain, [(b.file_name, o.file_name) for b, o in pairs])
        return [VolumeState(o.virtual_size, self.used) for _, o in pairs]


@pytest.fixture
def fake(monkeypatch):
    d = FakeDriver()
    monkeypatch.setitem(drivers._drivers, "libvirt", d)
    return d


def ok(db, *args) -> str:
    r = cli(db, *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def fails(db, code, *args):
    r = cli(db, *args)
    assert r.returncode == 1 and r.stdout == "", (r.stdout, r.stderr)
    assert r.stderr.startswith(f"vmctl: {code}:"), r.stderr
    return r


@pytest.fixture
def real(tmp_path, fake):
    """A libvirt pool (hosts h1, h2) with a local ext SR on h1; the fake's calls start empty."""
    db = tmp_path / "inv.db"
    ok(db, "pool-create", "name-label=lp", "driver=libvirt")
    for n in (1, 2):
        ok(
            db,
            "host-add",
            f"name-label=h{n}",
            f"address=10.0.0.{n}",
            f"driver-uri=qemu+tcp://10.0.0.{n}/system",
            "pool=lp",
        )
    sr = ok(
        db,
        "sr-create",
        "name-label=local",
        "type=ext",
        "host=h1",
        "physical-size=100GiB",
        "device-config:path=/srv/sr1",
    )
    fake.calls.clear()
    return db, sr


def row(db, cls, uuid):
    return with_txn(db, lambda t: t.get(cls, uuid), write=False)


def vdis(db):
    return with_txn(db, lambda t: sorted(d["name-label"] for d in t.all("vdi")), write=False)


# --- SRs ---------------------------------------------------------------------------------------------------
def test_sr_create_attaches_a_local_sr_on_its_host_and_a_shared_one_on_every_host(tmp_path, fake):
    db = tmp_path / "inv.db"
    ok(db, "pool-create", "name-label=lp", "driver=libvirt")
    for n in (1, 2):
        ok(
            db,
            "host-add",
            f"name-label=h{n}",
            f"address=10.0.0.{n}",
            f"driver-uri=qemu+tcp://10.0.0.{n}/system",
            "pool=lp",
        )
    ok(
        db,
        "sr-create",
        "name-label=l",
        "type=ext",
        "host=h2",
        "physical-size=1GiB",
        "device-config:path=/srv/l",
    )
    ok(
        db,
        "sr-create",
        "name-label=n",
        "type=nfs",
        "physical-size=1GiB",
        "device-config:server=nas",
        "device-config:serverpath=/export",
    )
    assert fake.calls[0] == ("sr_attach", "h2", "l", "/srv/l")
    assert sorted(fake.calls[1:]) == [("sr_attach", "h1", "n", "nas"), ("sr_attach", "h2", "n", "nas")]
    # a host joining later gets the shared SR too, with the SR's device-config
    fake.calls.clear()
    ok(
        db,
        "host-add",
        "name-label=h3",
        "address=10.0.0.3",
        "driver-uri=qemu+tcp://10.0.0.3/system",
        "pool=lp",
    )
    assert fake.calls == [("sr_attach", "h3", "n", "nas")]


def test_sr_create_on_a_libvirt_pool_refuses_what_libvirt_cannot_serve(real, fake):
    db, _ = real
    fails(
        db,
        "SR_OPERATION_NOT_SUPPORTED",
        "sr-create",
        "name-label=v",
        "type=lvm",
        "host=h1",
        "physical-size=1GiB",
    )
    r = fails(
        db, "MISSING_PARAMETER", "sr-create", "name-label=e", "type=ext", "host=h1", "physical-size=1GiB"
    )
    assert "device-config:path" in r.stderr
    assert fake.calls == []
    assert with_txn(db, lambda t: len(t.all("sr")), write=False) == 1


def test_a_failing_attach_leaves_no_sr(real, fake):
    db, _ = real
    fake.fail.add("sr_attach")
    r = fails(
        db,
        "DRIVER_ERROR",
        "sr-create",
        "name-label=x",
        "type=file",
        "host=h2",
        "physical-size=1GiB",
        "device-config:path=/x",
    )
    assert "attach SR x failed on h2: sr_attach: No space left on device" in r.stderr
    assert with_txn(db, lambda t: [s["name-label"] for s in t.all("sr")], write=False) == ["local"]


def test_pbd_unplug_and_plug_detach_and_attach_the_pool(real, fake):
    db, sr = real
    pbd = with_txn(db, lambda t: t.select("pbd", sr=sr)[0]["uuid"], write=False)
    ok(db, "pbd-unplug", f"uuid={pbd}")
    ok(db, "pbd-unplug", f"uuid={pbd}")  # already detached: nothing to do
    ok(db, "pbd-plug", f"uuid={pbd}")
    assert fake.ops() == ["sr_detach", "sr_attach"]


def test_sr_destroy_and_sr_forget_need_the_pool_detached_first(real, fake):
    """xapi_sr.assert_all_pbds_unplugged (SR_HAS_PBD) and Xapi_sr_operations.valid_operations
    (SR_NOT_EMPTY): the volumes go with their VDIs (vdi-destroy), the host's pool with pbd-unplug;
    destroying or forgetting the detached SR then calls no driver."""
    db, sr = real
    pbd = with_txn(db, lambda t: t.select("pbd", sr=sr)[0]["uuid"], write=False)
    d = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=1GiB")
    s = ok(db, "vdi-snapshot", f"uuid={d}")
    fake.calls.clear()
    fails(db, "SR_HAS_PBD", "sr-destroy", f"uuid={sr}", "--force")
    fails(db, "SR_HAS_PBD", "sr-forget", f"uuid={sr}")
    ok(db, "vdi-destroy", f"uuid={s}", "--", "vdi-destroy", f"uuid={d}")
    assert set(fake.ops()) == {"volume_delete"} and fake.calls
    fake.calls.clear()
    ok(db, "pbd-unplug", f"uuid={pbd}")
    assert fake.ops() == ["sr_detach"]
    fake.calls.clear()
    ok(db, "sr-destroy", f"uuid={sr}", "--force")
    assert fake.calls == []

    sr2 = ok(
        db, "sr-create", "name-label=l2", "type=ext", "host=h1", "physical-size=1GiB", "device-config:path=/p"
    )
    ok(db, "vdi-create", f"sr-uuid={sr2}", "name-label=d", "virtual-size=1GiB")
    ok(db, "pbd-unplug", f"uuid={with_txn(db, lambda t: t.select('pbd', sr=sr2)[0]['uuid'], write=False)}")
    fake.calls.clear()
    ok(db, "sr-forget", f"uuid={sr2}")  # the data counts as kept: no volume is deleted
    assert fake.calls == []


# --- volumes --------------------------------------------------------------------------------------------------
def test_vdi_create_queues_one_create_and_records_its_file_and_allocation(real, fake):
    db, sr = real
    d = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=1GiB")
    t = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=t", "virtual-size=1GiB", "provisioning=thick-lazy")
    assert fake.calls == [
        ("volume_create", "h1", f"{d}.qcow2", ""),
        ("volume_create", "h1", f"{t}.img", ""),
    ]
    thin, thick = row(db, "vdi", d), row(db, "vdi", t)
    assert (thin["location"], thin["physical-utilisation"]) == (f"{d}.qcow2", 3 * MiB)
    # a thick writable disk uses its whole size, whatever the volume reports
    assert (thick["location"], thick["physical-utilisation"]) == (f"{t}.img", GiB)


def test_a_failing_create_leaves_no_record(real, fake):
    db, sr = real
    fake.fail.add("volume_create")
    r = fails(db, "DRIVER_ERROR", "vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=1GiB")
    assert r.stderr.splitlines()[0].endswith("(VDI d) failed on h1: volume_create: No space left on device")
    assert vdis(db) == []


def test_a_dry_run_calls_no_driver(real, fake):
    db, sr = real
    d = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=1GiB")
    fake.calls.clear()
    for words in (
        ("vdi-create", f"sr-uuid={sr}", "name-label=e", "virtual-size=1GiB"),
        ("vdi-resize", f"uuid={d}", "disk-size=2GiB"),
        ("vdi-copy", f"uuid={d}", f"sr-uuid={sr}"),
        ("vdi-snapshot", f"uuid={d}"),
        ("vdi-destroy", f"uuid={d}"),
        ("pbd-unplug", f"uuid={with_txn(db, lambda t: t.select('pbd', sr=sr)[0]['uuid'], write=False)}"),
    ):
        ok(db, "--dry-run", *words)
    ok(db, "vdi-copy", f"uuid={d}", f"sr-uuid={sr}", "--explain")
    assert fake.calls == []


def test_a_simulated_pool_never_reaches_a_driver(tmp_path, fake):
    db = tmp_path / "inv.db"
    ok(
        db,
        "pool-create",
        "name-label=p",
        "--",
        "host-add",
        "name-label=h",
        "address=10.0.0.1",
        "cpu-count=4",
        "memory-total=8GiB",
    )
    sr = ok(db, "sr-create", "name-label=s", "type=ext", "host=h", "physical-size=10GiB")
    d = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=1GiB")
    ok(db, "vdi-snapshot", f"uuid={d}")
    ok(db, "vdi-copy", f"uuid={d}", f"sr-uuid={sr}")
    ok(db, "vdi-destroy", f"uuid={d}")
    assert fake.calls == []
    assert with_txn(db, lambda t: {x["location"] for x in t.all("vdi")}, write=False) == {""}


def test_vdi_resize_grows_the_volume_once(real, fake):
    db, sr = real
    d = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=1GiB")
    fake.calls.clear()
    fake.used = 5 * MiB
    ok(db, "vdi-resize", f"uuid={d}", "disk-size=+1GiB")
    assert fake.calls == [("volume_resize", "h1", f"{d}.qcow2", 2 * GiB, None)]
    assert (row(db, "vdi", d)["virtual-size"], row(db, "vdi", d)["physical-utilisation"]) == (
        2 * GiB,
        5 * MiB,
    )
    fake.fail.add("volume_resize")
    r = fails(db, "DRIVER_ERROR", "vdi-resize", f"uuid={d}", "disk-size=3GiB")
    assert "resize volume" in r.stderr
    assert row(db, "vdi", d)["virtual-size"] == 2 * GiB


def test_a_running_vm_s_disk_grows_online_through_its_domain_on_a_real_pool(real, fake):
    """QEMU grows a disk under a running guest (drivers.md §3), so a libvirt pool takes
    online=true, which a simulated pool refuses as XAPI's backends do (test_xapi_rules)."""
    db, sr = real
    vm = ok(db, "vm-create", "name-label=v", "memory=64MiB", "vcpus=1", "pool=lp")
    d = ok(db, "vm-disk-add", "vm=v", "disk-size=1GiB", f"sr-uuid={sr}")
    h1 = with_txn(db, lambda t: t.select("host", name_label="h1")[0]["uuid"], write=False)
    with_txn(db, lambda t: t.update("vm", vm, {"power-state": "running", "resident-on": h1, "domid": 1}))
    fake.calls.clear()
    fails(db, "VDI_IN_USE", "vdi-resize", f"uuid={d}", "disk-size=2GiB")  # held, not online
    ok(db, "vdi-resize", f"uuid={d}", "disk-size=2GiB", "online=true")
    assert [c[:4] for c in fake.calls] == [("volume_resize", "h1", f"{d}.qcow2", 2 * GiB)]
    assert fake.calls[0][4] is not None  # through the guest's domain
    assert row(db, "vdi", d)["virtual-size"] == 2 * GiB


def test_a_clone_gives_the_source_file_to_the_base_and_overlays_to_both_children(real, fake):
    db, sr = real
    d = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=1GiB")
    fake.calls.clear()
    c = ok(db, "vdi-clone", f"uuid={d}", "new-name-label=c")
    src, clone = row(db, "vdi", d), row(db, "vdi", c)
    base = row(db, "vdi", src["parent"])
    assert base["location"] == f"{d}.qcow2" and not base["managed"]
    assert src["location"].startswith(f"{d}.") and src["location"] != f"{d}.qcow2"
    assert clone["location"] == f"{c}.qcow2"
    assert [x for x in fake.calls if x[0] == "volume_create"] == [
        ("volume_create", "h1", src["location"], f"{d}.qcow2"),
        ("volume_create", "h1", f"{c}.qcow2", f"{d}.qcow2"),
    ]
    # a second clone stacks on the source's current file
    fake.calls.clear()
    ok(db, "vdi-snapshot", f"uuid={d}")
    assert fake.calls[0][3] == src["location"]


def test_a_failing_overlay_undoes_the_other_and_changes_no_record(real, fake):
    db, sr = real
    d = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=1GiB")
    before = row(db, "vdi", d)
    fake.calls.clear()

    def second_fails(host, vol):
        if fake.ops().count("volume_create") == 1:
            raise DriverFault("No space left on device")
        fake.calls.append(("volume_create", host.name, vol.file_name))
        return VolumeState(vol.virtual_size, 0)

    fake.volume_create = second_fails
    fails(db, "DRIVER_ERROR", "vdi-clone", f"uuid={d}")
    first = fake.calls[0][2]
    # undone without touching the base file the overlay read through
    assert fake.calls[-1] == ("volume_delete", "h1", first, False)
    assert row(db, "vdi", d) == before and vdis(db) == ["d"]


def test_destroys_come_after_everything_else_and_nothing_is_deleted_when_a_create_fails(real, fake):
    db, sr = real
    a = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=a", "virtual-size=1GiB")
    fake.calls.clear()
    ok(
        db,
        "vdi-destroy",
        f"uuid={a}",
        "--",
        "vdi-create",
        f"sr-uuid={sr}",
        "name-label=b",
        "virtual-size=1GiB",
    )
    assert fake.ops() == ["volume_create", "volume_delete"]
    assert fake.calls[1] == ("volume_delete", "h1", f"{a}.qcow2", True)

    b = with_txn(db, lambda t: t.all("vdi")[0]["uuid"], write=False)
    fake.calls.clear()
    fake.fail.add("volume_create")
    fails(
        db,
        "DRIVER_ERROR",
        "vdi-destroy",
        f"uuid={b}",
        "--",
        "vdi-create",
        f"sr-uuid={sr}",
        "name-label=c",
        "virtual-size=1GiB",
    )
    assert fake.calls == [] and vdis(db) == ["b"]


def test_vdi_copy_runs_as_a_task_holding_both_disks_and_records_the_copy(real, fake):
    db, sr = real
    d = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=1GiB")
    fake.calls.clear()
    seen = {}

    def copy(host, src, dst, progress):
        seen["held"] = with_txn(
            db, lambda t: sorted(x["current-operations"] for x in t.all("vdi")), write=False
        )
        fake.calls.append(("volume_copy", src.file_name, dst.file_name, progress))
        return VolumeState(dst.virtual_size, 7 * MiB)

    fake.volume_copy = copy
    c = ok(db, "vdi-copy", f"uuid={d}", f"sr-uuid={sr}")
    # no terminal here: no progress line
    assert fake.calls == [("volume_copy", f"{d}.qcow2", f"{c}.qcow2", None)]
    assert seen["held"] == [["copy"], ["copy"]]  # the source and the copy, while it runs
    assert (
        row(db, "vdi", c)["physical-utilisation"] == 7 * MiB and row(db, "vdi", c)["current-operations"] == []
    )
    tasks = with_txn(db, lambda t: [(x["status"], len(x["objects"])) for x in t.all("task")], write=False)
    assert tasks == [("success", 2)]


def test_a_failing_copy_leaves_no_copy_and_a_failed_task(real, fake):
    db, sr = real
    d = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=1GiB")
    fake.fail.add("volume_copy")
    r = fails(db, "DRIVER_ERROR", "vdi-copy", f"uuid={d}", f"sr-uuid={sr}")
    assert "copy volume" in r.stderr and "No space left on device" in r.stderr
    assert vdis(db) == ["d"]
    tasks = with_txn(db, lambda t: [(x["status"], x["error-code"]) for x in t.all("task")], write=False)
    assert tasks == [("failure", "DRIVER_ERROR")]


def test_a_copy_into_a_disk_writes_a_new_file_and_deletes_the_old_one_last(real, fake):
    db, sr = real
    a = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=a", "virtual-size=1GiB")
    b = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=b", "virtual-size=2GiB")
    fake.calls.clear()
    ok(db, "vdi-copy", f"uuid={a}", f"into-vdi-uuid={b}")
    new = row(db, "vdi", b)["location"]
    assert new.startswith(f"{b}.") and new != f"{b}.qcow2"
    assert [c[0] for c in fake.calls] == ["volume_copy", "volume_delete"]
    assert fake.calls[1][2] == f"{b}.qcow2"


def test_vm_copy_holds_the_vms_and_copies_each_disk(real, fake):
    db, sr = real
    ok(db, "vm-create", "name-label=v", "memory=1GiB", "vcpus=1", "pool=lp")
    ok(db, "vm-disk-add", "vm=v", "disk-size=1GiB", f"sr-uuid={sr}")
    ok(db, "vm-disk-add", "vm=v", "disk-size=1GiB", f"sr-uuid={sr}")
    fake.calls.clear()
    ok(db, "vm-copy", "vm=v", "new-name-label=w")
    assert fake.ops() == ["volume_copy", "volume_copy"]
    objects = with_txn(db, lambda t: t.all("task")[0]["objects"], write=False)
    assert sum(o.startswith("vm:") for o in objects) == 2 and sum(o.startswith("vdi:") for o in objects) == 4


def test_destroying_a_vm_deletes_its_suspend_image_volume(real, fake):
    db, sr = real
    ok(db, "pool-param-set", "uuid=lp", f"default-sr={sr}")
    vm = ok(db, "vm-create", "name-label=v", "memory=64MiB", "vcpus=1", "pool=lp")
    image = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=img", "virtual-size=64MiB", "type=suspend")

    def suspended(t):
        t.update("vm", vm, {"power-state": "suspended", "suspend-vdi": image})

    with_txn(db, suspended)
    fake.calls.clear()
    ok(db, "vm-destroy", f"uuid={vm}")
    assert fake.calls == [("volume_delete", "h1", f"{image}.qcow2", True)]


def test_the_disks_of_a_running_vm_switch_to_their_overlays_in_one_live_step_after_the_rest(real, fake):
    db, sr = real
    vm = ok(db, "vm-create", "name-label=v", "memory=64MiB", "vcpus=1", "pool=lp")
    d1 = ok(db, "vm-disk-add", "vm=v", "disk-size=1GiB", f"sr-uuid={sr}")
    d2 = ok(db, "vm-disk-add", "vm=v", "disk-size=1GiB", f"sr-uuid={sr}")
    h2 = with_txn(db, lambda t: t.select("host", name_label="h2")[0]["uuid"], write=False)
    with_txn(db, lambda t: t.update("vm", vm, {"power-state": "running", "resident-on": h2, "domid": 1}))
    fake.calls.clear()
    snap = ok(db, "vm-snapshot", "vm=v", "new-name-label=s")
    # the snapshots' overlays are made first, by the SR's host; then the domain, on the VM's
    # host, moves both disks to their new files at once
    assert fake.ops() == ["volume_create", "volume_create", "volume_snapshot_live"]
    live = fake.calls[-1]
    assert live[:3] == ("volume_snapshot_live", "h2", vm)
    assert live[3] == [
        (f"{d1}.qcow2", row(db, "vdi", d1)["location"]),
        (f"{d2}.qcow2", row(db, "vdi", d2)["location"]),
    ]
    snaps = with_txn(db, lambda t: [t.get("vdi", b["vdi"]) for b in t.select("vbd", vm=snap)], write=False)
    assert sorted(c[2] for c in fake.calls[:2]) == sorted(x["location"] for x in snaps)

    fake.fail.add("volume_snapshot_live")
    fake.calls.clear()
    fails(db, "DRIVER_ERROR", "vdi-snapshot", f"uuid={d1}")
    assert fake.calls[-1][0] == "volume_delete" and not fake.calls[-1][3]  # the snapshot overlay undone
    assert with_txn(db, lambda t: len(t.all("vdi")), write=False) == 6  # 2 disks, 2 snapshots, 2 bases


def test_a_shared_sr_volume_is_handled_by_the_master_while_it_is_live(tmp_path, fake):
    db = tmp_path / "inv.db"
    ok(db, "pool-create", "name-label=lp", "driver=libvirt")
    for n in (1, 2):
        ok(
            db,
            "host-add",
            f"name-label=h{n}",
            f"address=10.0.0.{n}",
            f"driver-uri=qemu+tcp://10.0.0.{n}/system",
            "pool=lp",
        )
    sr = ok(
        db,
        "sr-create",
        "name-label=n",
        "type=nfs",
        "physical-size=10GiB",
        "device-config:server=nas",
        "device-config:serverpath=/e",
    )
    fake.calls.clear()
    ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=a", "virtual-size=1GiB")
    with_txn(db, lambda t: t.update("host", t.select("host", name_label="h1")[0]["uuid"], {"live": False}))
    ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=b", "virtual-size=1GiB")
    assert [c[1] for c in fake.calls] == ["h1", "h2"]


# --- the progress line ------------------------------------------------------------------------------------
def test_the_progress_line_redraws_in_place_and_is_erased_at_the_end():
    out = io.StringIO()
    b = progress.Bar("copying d to sr", out)
    b(0, 4 * MiB)
    b(4 * MiB, 4 * MiB)
    b.end()
    text = out.getvalue()
    assert text.count("\r") == 3 and "vmctl: copying d to sr:   0% 0 B of 4 MiB" in text
    assert "100% 4 MiB of 4 MiB" in text and text.endswith("\r\x1b[K")


def test_one_progress_line_for_jobs_at_once_sums_them_and_ends_with_the_last():
    """A wave's migrations share one line: their figures summed, erased once every part ended."""
    out = io.StringIO()
    line = progress.Shared("wave 1 of 1 (2 migrations)", out)
    a, b = line.part(), line.part()
    a(1 * MiB, 4 * MiB)
    b(3 * MiB, 4 * MiB)  # drawn at once: 100% of one part is not the end of the line
    b(4 * MiB, 4 * MiB)
    b.end()
    assert not out.getvalue().endswith("\r\x1b[K")  # a still runs: the line stays
    a(4 * MiB, 4 * MiB)
    a.end()
    text = out.getvalue()
    assert "vmctl: wave 1 of 1 (2 migrations):  25% 1 MiB of 4 MiB" in text  # b not heard of yet
    assert "100% 8 MiB of 8 MiB" in text and text.endswith("\r\x1b[K") and text.count("\x1b[K") == 3


def test_no_progress_line_without_a_terminal_or_with_quiet(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress.bar("x", quiet=False) is None
    monkeypatch.setattr("sys.stderr", Tty())
    assert progress.bar("x", quiet=True) is None
    assert isinstance(progress.bar("x", quiet=False), progress.Bar)


def test_vm_snapshot_and_revert_keep_files_and_chains_in_step(real, fake):
    db, sr = real
    vm = ok(db, "vm-create", "name-label=v", "memory=64MiB", "vcpus=1", "pool=lp")
    d = ok(db, "vm-disk-add", "vm=v", "disk-size=1GiB", f"sr-uuid={sr}")
    snap = ok(db, "vm-snapshot", "vm=v", "new-name-label=s")
    s_disk = with_txn(db, lambda t: t.select("vbd", vm=snap)[0]["vdi"], write=False)
    d_file, s_file = row(db, "vdi", d)["location"], row(db, "vdi", s_disk)["location"]
    fake.calls.clear()
    ok(db, "snapshot-revert", f"snapshot-uuid={snap}")
    # the snapshot's disk is cloned for the VM (two overlays on the snapshot's file), then the
    # VM's old disk is deleted, last
    assert fake.ops() == ["volume_create", "volume_create", "volume_delete"]
    assert fake.calls[0][3] == fake.calls[1][3] == s_file
    assert fake.calls[2] == ("volume_delete", "h1", d_file, True)
    new_disk = with_txn(db, lambda t: t.select("vbd", vm=vm)[0]["vdi"], write=False)
    assert fake.calls[1][2] == row(db, "vdi", new_disk)["location"] == f"{new_disk}.qcow2"
    assert row(db, "vdi", s_disk)["location"] == fake.calls[0][2]


def test_vm_clone_of_a_template_makes_one_overlay_pair_per_disk(real, fake):
    db, sr = real
    ok(db, "vm-create", "name-label=t", "memory=64MiB", "vcpus=1", "pool=lp", "is-a-template=true")
    ok(db, "vm-disk-add", "vm=t", "disk-size=1GiB", f"sr-uuid={sr}")
    ok(db, "vm-disk-add", "vm=t", "disk-size=2GiB", f"sr-uuid={sr}")
    fake.calls.clear()
    ok(db, "vm-clone", "vm=t", "new-name-label=c")
    assert fake.ops() == ["volume_create"] * 4
    # each pair reads through the same base file: the template disk's file before the clone
    assert fake.calls[0][3] == fake.calls[1][3] != fake.calls[2][3] == fake.calls[3][3]


def test_sr_scan_reads_every_disk_s_utilisation_back_from_the_host(real, fake):
    db, sr = real
    d = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=1GiB")
    t = ok(db, "vdi-create", f"sr-uuid={sr}", "name-label=t", "virtual-size=1GiB", "provisioning=thick-lazy")
    fake.volumes = lambda host, s: {
        f"{d}.qcow2": VolumeState(GiB, 300 * MiB),
        f"{t}.img": VolumeState(GiB, 5 * MiB),
    }
    ok(db, "sr-scan", f"uuid={sr}")
    assert row(db, "vdi", d)["physical-utilisation"] == 300 * MiB  # what the guest wrote
    assert row(db, "vdi", t)["physical-utilisation"] == GiB  # thick: its whole size, as ever
