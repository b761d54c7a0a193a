"""The libvirt driver's storage (vmctl/drivers/libvirt/storage.py), fast tier: the pool and volume
XML it builds, and its methods against libvirt's built-in test driver (`test:///default`, no
daemon; it keeps pools and volumes in memory and supports no resize). The same commands on a real
libvirtd, checked with qemu-img and virsh: tests/test_libvirt_storage_lab.py."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import pytest

from vmctl.drivers.base import DriverFault, HostTarget, SrTarget, VolumeSpec
from vmctl.drivers.libvirt import storage

GiB = 1024**3


def sr_of(kind="ext", **kw) -> SrTarget:
    u = str(uuid.uuid4())
    defaults = {"path": f"/srv/{u}"} if kind != "nfs" else {}
    return SrTarget(uuid=u, name="sr1", type=kind, shared=False, **{**defaults, **kw})


def vol(sr, provisioning="thin", size=GiB, parent=None, location="") -> VolumeSpec:
    return VolumeSpec(str(uuid.uuid4()), "d", sr, size, provisioning, parent=parent, location=location)


# --- XML ----------------------------------------------------------------------------------------------------
def test_a_file_sr_is_a_dir_pool_named_and_identified_by_the_sr_uuid():
    sr = sr_of("file", path="/srv/a&b")
    x = ET.fromstring(storage.pool_xml(sr))
    assert x.get("type") == "dir"
    assert (x.findtext("name"), x.findtext("uuid"), x.findtext("target/path")) == (
        sr.uuid,
        sr.uuid,
        "/srv/a&b",
    )
    assert x.find("source") is None


def test_an_nfs_sr_is_a_netfs_pool_mounted_where_asked_or_under_run_sr_mount():
    sr = sr_of("nfs", server="nas.example", serverpath="/export/vm")
    x = ET.fromstring(storage.pool_xml(sr))
    assert x.get("type") == "netfs"
    assert x.find("source/host").get("name") == "nas.example"
    assert x.find("source/dir").get("path") == "/export/vm"
    assert x.find("source/format").get("type") == "nfs"
    assert x.findtext("target/path") == f"/run/sr-mount/{sr.uuid}"
    at = sr_of("nfs", server="nas", serverpath="/e", path="/mnt/x")
    assert ET.fromstring(storage.pool_xml(at)).findtext("target/path") == "/mnt/x"


def test_srs_libvirt_cannot_serve_are_refused():
    with pytest.raises(DriverFault, match="lvm is not supported"):
        storage.pool_xml(sr_of("lvm"))
    with pytest.raises(DriverFault, match="device-config:server"):
        storage.pool_xml(sr_of("nfs"))
    with pytest.raises(DriverFault, match="device-config:path"):
        storage.pool_xml(sr_of("ext", path=""))


@pytest.mark.parametrize(
    "provisioning, name, fmt, allocation",
    [("thin", "qcow2", "qcow2", 0), ("thick-lazy", "img", "raw", GiB), ("thick-eager", "img", "raw", GiB)],
)
def test_a_volume_is_thin_qcow2_or_thick_raw_fully_allocated(provisioning, name, fmt, allocation):
    v = vol(sr_of(), provisioning)
    x = ET.fromstring(storage.volume_xml(v))
    assert x.findtext("name") == f"{v.uuid}.{name}"
    assert x.find("capacity").get("unit") == "bytes" and x.findtext("capacity") == str(GiB)
    assert x.findtext("allocation") == str(allocation)
    assert x.find("target/format").get("type") == fmt
    # qcow2 version 3 (libvirt's default is the old 0.10)
    assert x.findtext("target/compat") == ("1.1" if fmt == "qcow2" else None)
    assert x.find("backingStore") is None


def test_an_overlay_is_a_thin_qcow2_reading_through_its_base_even_for_a_thick_disk():
    v = vol(sr_of(), "thick-lazy", location="x.1234abcd.qcow2")
    x = ET.fromstring(storage.volume_xml(v, ("/srv/p/base.img", "raw")))
    assert x.findtext("name") == "x.1234abcd.qcow2"
    assert (x.find("target/format").get("type"), x.findtext("allocation")) == ("qcow2", "0")
    assert x.findtext("backingStore/path") == "/srv/p/base.img"
    assert x.find("backingStore/format").get("type") == "raw"


def test_a_failed_qemu_img_is_reported_in_its_own_words():
    class E(Exception):
        pass

    e = E(
        "internal error: Child process (/usr/bin/qemu-img convert -f qcow2 -O qcow2 a b) unexpected "
        "exit status 1: qemu-img: error while writing at byte 31457280: No space left on device\n"
    )
    assert storage._host_message(e) == "error while writing at byte 31457280: No space left on device"
    assert storage._host_message(E("cannot open directory '/x'")) == "cannot open directory '/x'"


# --- against test:///default --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def driver():
    try:
        import libvirt  # noqa: F401
    except ImportError:
        pytest.skip("libvirt-python is not installed (pip install 'vmctl[libvirt]')")
    from vmctl.drivers.libvirt import LibvirtDriver

    d = LibvirtDriver()
    yield d
    d.close()


@pytest.fixture
def host():
    return HostTarget("h-uuid", "h1", "192.0.2.1", "test:///default", "")


@pytest.fixture
def sr(driver, host):
    s = sr_of()
    driver.sr_attach(host, s)
    yield s
    driver.sr_detach(host, s)


def pool_names(driver, host) -> set[str]:
    return {p.name() for p in driver.connect(host).listAllStoragePools(0)}


def test_attaching_twice_keeps_the_pool_and_detaching_removes_it(driver, host):
    s = sr_of()
    assert driver.sr_attach(host, s) is True
    assert driver.sr_attach(host, s) is False  # already there: undoing the second must keep it
    pool = driver.connect(host).storagePoolLookupByName(s.uuid)
    assert pool.isActive() and pool.autostart() and pool.UUIDString() == s.uuid
    driver.sr_detach(host, s)
    driver.sr_detach(host, s)  # already gone: nothing to do
    assert s.uuid not in pool_names(driver, host)


def test_volumes_are_created_with_their_size_and_allocation(driver, host, sr):
    thin, thick = vol(sr), vol(sr, "thick-lazy")
    assert driver.volume_create(host, thin).allocation == 0
    state = driver.volume_create(host, thick)
    assert (state.capacity, state.allocation) == (GiB, GiB)
    assert set(driver.volumes(host, sr)) == {f"{thin.uuid}.qcow2", f"{thick.uuid}.img"}
    assert driver.volume_state(host, thin).capacity == GiB


def test_an_overlay_names_its_base_file_as_backing_store(driver, host, sr):
    base = vol(sr)
    driver.volume_create(host, base)
    over = vol(sr, parent=base, location="o.qcow2")
    driver.volume_create(host, over)
    pool = driver.connect(host).storagePoolLookupByName(sr.uuid)
    x = ET.fromstring(pool.storageVolLookupByName("o.qcow2").XMLDesc(0))
    assert x.findtext("backingStore/path") == f"{sr.path}/{base.uuid}.qcow2"
    assert x.find("backingStore/format").get("type") == "qcow2"


def test_an_overlay_on_a_missing_volume_is_sr_backend_failure_46(driver, host, sr):
    with pytest.raises(DriverFault) as e:
        driver.volume_create(host, vol(sr, parent=vol(sr)))
    assert e.value.code == "SR_BACKEND_FAILURE_46" and "The VDI is not available" in e.value.message
    assert driver.volumes(host, sr) == {}


def test_a_volume_on_an_sr_not_attached_there_is_sr_backend_failure_47(driver, host):
    with pytest.raises(DriverFault) as e:
        driver.volume_create(host, vol(sr_of()))
    assert e.value.code == "SR_BACKEND_FAILURE_47"


def test_a_copy_reports_progress_and_makes_a_volume_of_its_own(driver, host, sr):
    src = vol(sr)
    driver.volume_create(host, src)
    dst = vol(sr, "thick-lazy")
    seen = []
    state = driver.volume_copy(host, src, dst, lambda done, total: seen.append((done, total)))
    assert state.capacity == GiB and seen and seen[-1][0] == seen[-1][1]
    assert f"{dst.uuid}.img" in driver.volumes(host, sr)
    with pytest.raises(DriverFault, match="exists already"):
        driver.volume_copy(host, src, dst, None)
    assert f"{dst.uuid}.img" in driver.volumes(host, sr)  # a failed copy never removes what was there


def test_deleting_a_volume_collects_the_base_files_nothing_reads_any_more(driver, host, sr):
    base = vol(sr)
    driver.volume_create(host, base)
    a = vol(sr, parent=base, location="a.qcow2")
    b = vol(sr, parent=base, location="b.qcow2")
    driver.volume_create(host, a)
    driver.volume_create(host, b)
    driver.volume_delete(host, a)
    assert set(driver.volumes(host, sr)) == {f"{base.uuid}.qcow2", "b.qcow2"}  # b still reads it
    driver.volume_delete(host, b)
    assert driver.volumes(host, sr) == {}


def test_undoing_an_overlay_leaves_its_base(driver, host, sr):
    base = vol(sr)
    driver.volume_create(host, base)
    over = vol(sr, parent=base, location="o.qcow2")
    driver.volume_create(host, over)
    driver.volume_delete(host, over, chain=False)
    assert set(driver.volumes(host, sr)) == {f"{base.uuid}.qcow2"}


def test_a_volume_already_gone_is_deleted_without_error_and_has_no_state(driver, host, sr):
    gone = vol(sr)
    driver.volume_delete(host, gone)
    assert driver.volume_state(host, gone) is None


def test_a_live_disk_snapshot_moves_the_named_files_and_leaves_every_other_disk_alone():
    domain = """<domain><devices>
      <disk type='file' device='disk'><source file='/srv/a.qcow2'/><target dev='vda'/></disk>
      <disk type='file' device='disk'><source file='/srv/b.img'/><target dev='vdb'/></disk>
      <disk type='file' device='cdrom'><target dev='hdc'/></disk>
    </devices></domain>"""
    x = ET.fromstring(storage.disk_snapshot_xml(domain, {"/srv/a.qcow2": "/srv/a.1.qcow2"}))
    disks = {d.get("name"): d for d in x.iterfind("disks/disk")}
    assert (
        disks["vda"].get("snapshot") == "external"
        and disks["vda"].find("source").get("file") == "/srv/a.1.qcow2"
    )
    assert disks["vda"].find("driver").get("type") == "qcow2"
    assert (disks["vdb"].get("snapshot"), disks["hdc"].get("snapshot")) == ("no", "no")
    with pytest.raises(DriverFault, match="does not use /srv/c.qcow2"):
        storage.disk_snapshot_xml(domain, {"/srv/c.qcow2": "/srv/c.1.qcow2"})
