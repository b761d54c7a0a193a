"""The compute half of the libvirt driver (vmctl/drivers/libvirt/compute.py) against libvirt's
built-in `test:///default` hypervisor: domains are defined, started, shut down, paused, saved
and restored in memory (a save writes a real file), checked through libvirt itself."""

from __future__ import annotations

import uuid

import pytest

from vmctl.drivers.base import DiskSpec, DomainSpec, DriverFault, HostTarget, SrTarget, VolumeSpec

libvirt = pytest.importorskip(
    "libvirt", reason="libvirt-python is not installed (pip install 'vmctl[libvirt]')"
)

MiB = 1024**2
HOST = HostTarget("", "t1", "127.0.0.1", "test:///default", "")


@pytest.fixture
def drv():
    from vmctl.drivers.libvirt import LibvirtDriver

    d = LibvirtDriver()
    yield d
    d.close()


@pytest.fixture
def conn():
    c = libvirt.open("test:///default")
    yield c
    c.close()


@pytest.fixture
def sr(conn, tmp_path):
    """A dir storage pool named after an SR, as the storage side names them."""
    s = SrTarget(str(uuid.uuid4()), "local", "ext", False, path=str(tmp_path))
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{s.uuid}</name><target><path>{tmp_path}</path></target></pool>"
    )
    pool.create()
    yield s
    pool.destroy()
    pool.undefine()


def spec(**kw) -> DomainSpec:
    return DomainSpec(str(uuid.uuid4()), kw.pop("title", "vm1"), 128 * MiB, 128 * MiB, 1, **kw)


def state(conn, name: str) -> str | None:
    """The domain's state as libvirt reports it, None when the host has no such domain."""
    try:
        d = conn.lookupByName(name)
    except libvirt.libvirtError:
        return None
    return {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused"}.get(
        d.state()[0], "shutoff"
    )


def test_start_defines_a_persistent_domain_and_runs_it(drv, conn):
    dom = spec(title="web1")
    drv.domain_start(HOST, dom)
    d = conn.lookupByName(dom.uuid)
    assert (state(conn, dom.uuid), d.isPersistent(), d.UUIDString()) == ("running", 1, dom.uuid)
    assert "<title>web1</title>" in d.XMLDesc()
    assert drv.domains(HOST)[dom.uuid] == "running"
    drv.domain_destroy(HOST, dom.uuid)


def test_a_disk_is_found_in_the_pool_named_after_its_sr(drv, conn, sr):
    vol = VolumeSpec(str(uuid.uuid4()), "d1", sr, 64 * MiB, "thin")
    conn.storagePoolLookupByName(sr.uuid).createXML(
        f"<volume><name>{vol.file_name}</name><capacity>{64 * MiB}</capacity>"
        "<target><format type='qcow2'/></target></volume>"
    )
    dom = spec(disks=(DiskSpec(vol, 0),))
    drv.domain_start(HOST, dom)
    xml = conn.lookupByName(dom.uuid).XMLDesc()
    assert f"{sr.path}/{vol.file_name}" in xml and "type='qcow2'" in xml
    drv.domain_destroy(HOST, dom.uuid)


def test_a_missing_disk_volume_fails_and_defines_nothing(drv, conn, sr):
    vol = VolumeSpec(str(uuid.uuid4()), "d1", sr, 64 * MiB, "thin")
    dom = spec(disks=(DiskSpec(vol, 0),))
    with pytest.raises(DriverFault) as e:
        drv.domain_start(HOST, dom)
    assert vol.file_name in e.value.message
    assert state(conn, dom.uuid) is None


def test_a_start_that_fails_leaves_nothing_defined(drv, conn):
    # a domain the hypervisor cannot create (the test driver has no paused start): defined
    # first, then undefined again
    dom = spec()
    with pytest.raises(DriverFault):
        drv.domain_start(HOST, dom, paused=True)
    assert state(conn, dom.uuid) is None


def test_a_domain_already_running_under_the_name_is_left_alone(drv, conn):
    dom = spec()
    drv.domain_start(HOST, dom)
    with pytest.raises(DriverFault) as e:
        drv.domain_start(HOST, DomainSpec(dom.uuid, "clash", dom.memory, dom.memory, 2))
    assert "already running" in e.value.message
    d = conn.lookupByName(dom.uuid)
    assert (state(conn, dom.uuid), d.isPersistent(), d.maxVcpus()) == ("running", 1, 1)
    drv.domain_destroy(HOST, dom.uuid)


def test_shutdown_stops_and_undefines(drv, conn):
    dom = spec()
    drv.domain_start(HOST, dom)
    drv.domain_shutdown(HOST, dom.uuid, timeout=5)
    assert state(conn, dom.uuid) is None
    assert dom.uuid not in drv.domains(HOST)


def test_halting_a_domain_already_gone_counts_as_halted(drv, conn):
    dom = spec()
    drv.domain_start(HOST, dom)
    conn.lookupByName(dom.uuid).destroy()  # behind vmctl's back
    drv.domain_shutdown(HOST, dom.uuid, timeout=1)
    assert state(conn, dom.uuid) is None
    drv.domain_destroy(HOST, dom.uuid)  # nothing left: no error either


def test_destroy_powers_off_and_undefines(drv, conn):
    dom = spec()
    drv.domain_start(HOST, dom)
    drv.domain_destroy(HOST, dom.uuid)
    assert state(conn, dom.uuid) is None


def test_pause_unpause_and_reboot(drv, conn):
    dom = spec()
    drv.domain_start(HOST, dom)
    drv.domain_pause(HOST, dom.uuid)
    assert state(conn, dom.uuid) == "paused"
    assert drv.domains(HOST)[dom.uuid] == "paused"
    drv.domain_reboot(HOST, dom.uuid, force=True)  # a hard reboot ends running, also from paused
    assert state(conn, dom.uuid) == "running"
    drv.domain_pause(HOST, dom.uuid)
    drv.domain_unpause(HOST, dom.uuid)
    drv.domain_reboot(HOST, dom.uuid)
    assert state(conn, dom.uuid) == "running"
    drv.domain_destroy(HOST, dom.uuid)


def test_operations_on_an_unknown_domain_fail_naming_it(drv):
    with pytest.raises(DriverFault) as e:
        drv.domain_pause(HOST, "no-such-vm")
    assert "no-such-vm" in e.value.message and e.value.host == "t1"


def test_save_writes_the_image_into_the_pool_and_restore_brings_it_back(drv, conn, sr, tmp_path):
    dom = spec()
    image = VolumeSpec(str(uuid.uuid4()), "suspend", sr, 128 * MiB, "thick-lazy")
    drv.domain_start(HOST, dom)
    drv.domain_save(HOST, dom.uuid, image)
    assert (tmp_path / image.file_name).stat().st_size > 0
    assert state(conn, dom.uuid) is None  # the image alone holds the VM now
    drv.domain_restore(HOST, dom, image, paused=False)
    assert state(conn, dom.uuid) == "running"
    assert conn.lookupByName(dom.uuid).isPersistent() == 1
    drv.domain_destroy(HOST, dom.uuid)


def test_save_without_a_pool_uses_the_sr_directory(drv, conn, tmp_path):
    sr = SrTarget(str(uuid.uuid4()), "plain", "ext", False, path=str(tmp_path))
    dom = spec()
    image = VolumeSpec(str(uuid.uuid4()), "suspend", sr, 128 * MiB, "thick-lazy")
    drv.domain_start(HOST, dom)
    drv.domain_save(HOST, dom.uuid, image)
    assert (tmp_path / image.file_name).exists()
    drv.domain_restore(HOST, dom, image, paused=False)
    assert state(conn, dom.uuid) == "running"
    drv.domain_destroy(HOST, dom.uuid)


def test_undefine_removes_the_domain(drv, conn):
    dom = spec()
    drv.domain_start(HOST, dom)
    drv.domain_undefine(HOST, dom.uuid)
    assert state(conn, dom.uuid) is None


def test_cpu_comparison_failure_is_a_fault_not_a_verdict(drv):
    # the test driver cannot compare CPUs: that must fail loudly, never read as "compatible"
    with pytest.raises(DriverFault) as e:
        drv.cpu_compatible(HOST, "<cpu><model>Broadwell</model><vendor>Intel</vendor></cpu>")
    assert "compare" in e.value.message.lower()


def test_an_unreachable_host_is_host_offline(drv):
    gone = HostTarget("", "gone", "10.0.0.9", "qemu:///system?socket=/nonexistent/libvirt-sock", "")
    with pytest.raises(DriverFault) as e:
        drv.domains(gone)
    assert (e.value.code, e.value.host) == ("HOST_OFFLINE", "gone")
