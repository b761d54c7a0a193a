"""The libvirt driver's live migration (vmctl/drivers/libvirt/migration.py) against fake
connections and domains that behave as libvirt's do: the checks of the destination before
anything moves, the job watched from another thread (progress, Ctrl-C aborting it), where the
guest is after a failure, and the figures libvirt keeps of the completed job. The real thing is
tested on the lab (tests/lab/test_migrate_real.py)."""

from __future__ import annotations

import threading
import time

import pytest

libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")

from vmctl.drivers.base import DriverFault, HostTarget, MigrationSpec  # noqa: E402
from vmctl.drivers.libvirt import LibvirtDriver  # noqa: E402
from vmctl.drivers.libvirt import migration as mig  # noqa: E402

MiB = 1024**2
SRC = HostTarget("s", "lab1", "10.0.0.1", "test+fake://lab1", "")
DST = HostTarget("d", "lab2", "10.0.0.2", "test+fake://lab2", "")
SPEC = MigrationSpec("u1", "t1", 64 * MiB, 0.3)
XML = (
    "<domain type='kvm'><os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>"
    "<cpu mode='custom' match='exact'><model>qemu64</model></cpu><devices>"
    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/s1/d1.a1.qcow2'/>"
    "<backingStore type='file'><format type='qcow2'/><source file='/s1/d1.qcow2'/></backingStore>"
    "<target dev='vda' bus='virtio'/></disk>"
    "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/s1/d2.img'/>"
    "<target dev='vdb' bus='virtio'/></disk></devices></domain>"
)


def error(code: int, message: str) -> libvirt.libvirtError:
    """A libvirtError as libvirt raises it (its constructor would take the thread's last real
    error instead of this one)."""
    e = libvirt.libvirtError.__new__(libvirt.libvirtError)
    Exception.__init__(e, message)
    e.err = (code, 0, message, 2, None, None, None, 0, 0)
    return e


class FakeDomain:
    """A running guest whose migration takes `steps` looks of the job, or waits for an abort."""

    def __init__(self, world, steps: int = 3, outcome: str = "ok"):
        self.world, self.steps, self.outcome = world, steps, outcome
        self.state_ = [libvirt.VIR_DOMAIN_RUNNING, 1]
        self.looks = 0
        self.aborted = threading.Event()
        self.finished = threading.Event()
        self.calls: list = []

    def state(self):
        return list(self.state_)

    def isActive(self):
        return True

    def maxMemory(self):
        return 256 * 1024  # KiB

    def XMLDesc(self, flags):
        return XML

    def migrateSetMaxDowntime(self, ms, flags):
        self.calls.append(("downtime", ms))

    def migrateToURI3(self, uri, params, flags):
        self.calls.append(("migrate", uri, dict(params), flags))
        if self.outcome == "wait-for-abort":
            self.aborted.wait(5)
            if self.world.late:  # the abort came too late: it finished all the same
                self.world.move()
                return 0
            self.state_ = [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION]
            raise error(
                libvirt.VIR_ERR_OPERATION_ABORTED, "operation aborted: job 'migration out' canceled by client"
            )
        if self.outcome == "refused":
            raise error(
                libvirt.VIR_ERR_SYSTEM_ERROR,
                "unable to connect to server at '10.0.0.2:16509': Connection refused",
            )
        self.finished.wait(5)
        self.world.move()
        return 0

    def jobStats(self, flags=0):
        self.looks += 1
        if self.looks >= self.steps:
            self.finished.set()
        total = 256 * MiB
        return {"type": 2, "data_total": total, "data_remaining": max(0, total - self.looks * 64 * MiB)}

    def abortJob(self):
        self.calls.append(("abort",))
        self.aborted.set()

    def resume(self):
        self.calls.append(("resume",))
        self.state_ = [libvirt.VIR_DOMAIN_RUNNING, 1]


class Arrived:
    """The guest on the destination once migrated: libvirt's completed-job statistics."""

    def isActive(self):
        return True

    def jobStats(self, flags=0):
        assert flags == libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED
        return {
            "type": 3,
            "time_elapsed": 1423,
            "downtime": 124,
            "data_processed": 1103513,
            "memory_total": 256 * MiB,
            "memory_iteration": 2,
            "memory_bps": 11022455,
        }


class FakeConn:
    def __init__(self, domains: dict, available_kib: int = 8 * 1024 * 1024, cpu: int = 2):
        self.domains, self.available_kib, self.cpu = domains, available_kib, cpu

    def lookupByName(self, name):
        if name not in self.domains:
            raise error(libvirt.VIR_ERR_NO_DOMAIN, f"Domain not found: {name}")
        return self.domains[name]

    def getMemoryStats(self, cell, flags):
        return {
            "total": 16 * 1024 * 1024,
            "free": self.available_kib // 2,
            "buffers": 0,
            "cached": self.available_kib // 2,
        }

    def compareHypervisorCPU(self, emulator, arch, machine, virttype, xml, flags):
        assert "qemu64" in xml and (arch, machine, virttype) == ("x86_64", "pc-i440fx-7.2", "kvm")
        if (
            self.cpu == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE
            and flags & libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE
        ):
            raise error(
                libvirt.VIR_ERR_CPU_INCOMPATIBLE,
                "the CPU is incompatible with host CPU: Host CPU does not provide required features: avx512f",
            )
        return self.cpu


class World(LibvirtDriver):
    """Two hosts as fake connections; `move()` is what a finished migration does."""

    def __init__(self, steps=3, outcome="ok", **dst):
        super().__init__()
        self.late = False
        self.dom = FakeDomain(self, steps, outcome)
        self.src = FakeConn({"u1": self.dom})
        self.dst = FakeConn({}, **dst)

    def connect(self, host):
        return {SRC.uri: self.src, DST.uri: self.dst}[host.uri]

    def volume_path(self, conn, vol, memory_image=False):
        return f"/{vol.sr.uuid}/{vol.file_name}"

    def move(self):
        del self.src.domains["u1"]
        self.dst.domains["u1"] = Arrived()


def test_a_migration_with_the_engines_parameters_returns_libvirts_figures():
    w = World()
    seen = []
    figures = w.domain_migrate(SRC, DST, SPEC, lambda done, total: seen.append((done, total)))
    downtime, migrate = w.dom.calls
    assert downtime == ("downtime", 300)
    _, uri, params, flags = migrate
    assert uri == DST.uri and params == {libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 64}
    for flag in ("LIVE", "PEER2PEER", "PERSIST_DEST", "UNDEFINE_SOURCE"):
        assert flags & getattr(libvirt, f"VIR_MIGRATE_{flag}")
    assert seen and all(0 < d <= t == 256 * MiB for d, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert (figures.total_time, figures.downtime, figures.bytes, figures.rounds) == (1.423, 0.124, 1103513, 2)
    assert figures.memory == 256 * MiB and figures.wall_time >= 0


def test_the_stream_uri_and_a_bandwidth_below_one_mib_s():
    spec = MigrationSpec("u1", "t1", 0.25 * MiB, 0.05, uri="tcp://192.0.2.7")
    assert mig.migration_params(libvirt, spec) == {
        libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 1,
        libvirt.VIR_MIGRATE_PARAM_URI: "tcp://192.0.2.7",
    }
    assert mig.migration_params(libvirt, MigrationSpec("u1", "t1", float("inf"), 0.3)) == {}


@pytest.mark.parametrize(
    "dst, code, words",
    [
        (
            {"available_kib": 128 * 1024},
            "HOST_NOT_ENOUGH_FREE_MEMORY",
            "lab2 has 128 MiB of memory available, VM t1 may use 256 MiB",
        ),
        (
            {"cpu": 0},
            "VM_INCOMPATIBLE_WITH_THIS_HOST",
            "Host CPU does not provide required features: avx512f",
        ),
    ],
)
def test_a_destination_that_cannot_take_the_guest_is_refused_before_anything_moves(dst, code, words):
    w = World(**dst)
    with pytest.raises(DriverFault) as e:
        w.domain_migrate(SRC, DST, SPEC)
    assert (e.value.code, e.value.host) == (code, "lab2") and words in e.value.message
    assert w.dom.calls == [] and "u1" in w.src.domains


def test_a_destination_already_running_the_domain_is_refused():
    w = World()
    w.dst.domains["u1"] = Arrived()
    with pytest.raises(DriverFault) as e:
        w.domain_migrate(SRC, DST, SPEC)
    assert "lab2 already runs a domain named u1" in e.value.message and w.dom.calls == []


def test_a_refused_job_says_why_and_the_guest_stays_on_the_source():
    w = World(outcome="refused")
    with pytest.raises(DriverFault) as e:
        w.domain_migrate(SRC, DST, SPEC)
    assert e.value.host == "lab1" and "Connection refused" in e.value.message
    assert "neither host" not in e.value.message and "u1" in w.src.domains


def test_ctrl_c_aborts_the_job_and_the_guest_runs_on_the_source_again():
    w = World(outcome="wait-for-abort")

    def progress(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        w.domain_migrate(SRC, DST, SPEC, progress)
    assert ("abort",) in w.dom.calls and w.dom.calls[-1] == ("resume",)  # paused by the migration: resumed
    assert w.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING and "u1" not in w.dst.domains


def test_a_migration_in_a_thread_of_its_own_stops_when_ctrl_c_is_asked_for():
    """A wave's migrations run in worker threads, where Ctrl-C never arrives: the main thread sets
    cancel_requested, and the job is aborted as for Ctrl-C (KeyboardInterrupt, the guest on the
    source)."""
    from vmctl.drivers.base import cancel_requested

    w = World(outcome="wait-for-abort")
    outcome: list = []

    def migrate():
        try:
            w.domain_migrate(SRC, DST, SPEC)
        except BaseException as e:  # what the runner's worker reports
            outcome.append(e)

    worker = threading.Thread(target=migrate)
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while w.dom.looks < 2:  # the job is under way and watched
            assert time.monotonic() < deadline
            worker.join(0.01)
        cancel_requested.set()
        worker.join(10)
    finally:
        cancel_requested.clear()
    assert len(outcome) == 1 and isinstance(outcome[0], KeyboardInterrupt)
    assert ("abort",) in w.dom.calls and "u1" not in w.dst.domains
    assert w.dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def test_an_abort_that_came_too_late_is_reported_as_done(capsys):
    w = World(outcome="wait-for-abort")
    w.late = True

    def progress(done, total):
        raise KeyboardInterrupt

    figures = w.domain_migrate(SRC, DST, SPEC, progress)
    assert figures.downtime == 0.124 and "u1" in w.dst.domains
    assert "had finished before it could be stopped: it runs on lab2" in capsys.readouterr().err


def test_storage_motion_copies_the_mapped_disks_into_their_new_volumes():
    """The destination's definition reads the new volume (stand-alone: no backing chain) in place
    of the disk it replaces, and libvirt copies exactly that disk."""
    from vmctl.drivers.base import SrTarget, VolumeSpec

    def volume(sr, uuid, location, provisioning="thin"):
        return VolumeSpec(uuid, uuid, SrTarget(sr, sr, "ext", False), 2**30, provisioning, location=location)

    pair = (volume("s1", "d1", "d1.a1.qcow2"), volume("s2", "n1", "n1.img", "thick-lazy"))
    w = World()
    w.domain_migrate(SRC, DST, MigrationSpec("u1", "t1", 64 * MiB, 0.3, disks=(pair,)))
    _, _, params, flags = w.dom.calls[-1]
    assert flags & libvirt.VIR_MIGRATE_NON_SHARED_DISK
    assert params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] == ["vda"]
    dest = params[libvirt.VIR_MIGRATE_PARAM_DEST_XML]
    assert params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] == dest
    assert "/s2/n1.img" in dest and "/s1/d1.a1.qcow2" not in dest and "backingStore" not in dest
    assert '<driver name="qemu" type="raw" /><source file="/s2/n1.img"' in dest
    assert "/s1/d2.img" in dest  # the disk left where it is


def test_storage_motion_of_a_disk_the_guest_does_not_use_is_refused():
    from vmctl.drivers.base import SrTarget, VolumeSpec

    stray = VolumeSpec("d9", "d9", SrTarget("s1", "s1", "ext", False), 2**30, "thin", location="d9.qcow2")
    w = World()
    with pytest.raises(DriverFault) as e:
        w.domain_migrate(SRC, DST, MigrationSpec("u1", "t1", 64 * MiB, 0.3, disks=((stray, stray),)))
    assert "does not use every disk to move" in e.value.message
    assert w.dom.calls == []  # nothing asked of the source, not even the downtime target
