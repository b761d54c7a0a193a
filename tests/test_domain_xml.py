"""The domain XML of a VM (vmctl/drivers/libvirt/domain_xml.py, drivers.md §3 vm-start), parsed
back element by element. Pure functions: no libvirt needed."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from vmctl.drivers.base import DiskSpec, DomainSpec, NicSpec, SrTarget, VolumeSpec
from vmctl.drivers.libvirt.domain_xml import device_name, domain_xml

MiB = 1024**2
VM = "6f1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
SR = SrTarget("0a0b0c0d-0000-4000-8000-000000000001", "local", "ext", False, path="/srv/sr")


def volume(uuid: str, provisioning: str = "thin", read_only: bool = False, parent=None) -> VolumeSpec:
    return VolumeSpec(uuid, "disk", SR, 1024 * MiB, provisioning, parent=parent, read_only=read_only)


def parse(dom: DomainSpec, paths: dict[str, str] | None = None) -> ET.Element:
    paths = (
        paths if paths is not None else {d.volume.uuid: f"/srv/sr/{d.volume.file_name}" for d in dom.disks}
    )
    return ET.fromstring(domain_xml(dom, paths))


def test_identity_memory_and_vcpus():
    root = parse(DomainSpec(VM, "web 1 <prod>", 512 * MiB, 384 * MiB, 2))
    assert root.get("type") == "kvm"
    assert root.findtext("name") == VM
    assert root.findtext("uuid") == VM
    assert root.findtext("title") == "web 1 <prod>"  # escaped by the writer, intact when read
    assert (root.find("memory").get("unit"), root.findtext("memory")) == ("KiB", str(512 * 1024))
    assert root.findtext("currentMemory") == str(384 * 1024)
    assert root.findtext("vcpu") == "2"


def test_a_name_that_is_not_a_uuid_gets_no_uuid_element():
    root = parse(DomainSpec("seeded-vm-1", "t", 128 * MiB, 128 * MiB, 1))
    assert root.findtext("name") == "seeded-vm-1"
    assert root.find("uuid") is None


def test_memory_rounds_up_to_whole_kib_and_current_never_exceeds_static_max():
    root = parse(DomainSpec(VM, "t", 128 * MiB + 1, 256 * MiB, 1))
    assert root.findtext("memory") == str(128 * 1024 + 1)
    assert root.findtext("currentMemory") == str(128 * 1024 + 1)


def test_acpi_is_on_and_no_host_cpu_is_passed_through():
    root = parse(DomainSpec(VM, "t", 128 * MiB, 128 * MiB, 1))
    assert root.find("features/acpi") is not None
    assert root.find("cpu") is None  # the hypervisor's default model: never host-passthrough
    assert "host-passthrough" not in domain_xml(DomainSpec(VM, "t", 128 * MiB, 128 * MiB, 1), {})
    assert root.findtext("on_poweroff") == "destroy"
    assert root.findtext("os/type") == "hvm"


def test_emulated_guests_use_software_emulation():
    root = parse(DomainSpec(VM, "t", 128 * MiB, 128 * MiB, 1, emulated=True))
    assert root.get("type") == "qemu"


def test_firmware_only_guest_has_no_disks_and_no_nics():
    root = parse(DomainSpec(VM, "t", 128 * MiB, 128 * MiB, 1))
    assert root.findall("devices/disk") == []
    assert root.findall("devices/interface") == []
    assert root.find("devices/serial") is not None  # a console to look at the firmware


def test_disks_follow_the_vbd_order_with_their_format_and_path():
    thin = volume("11111111-0000-4000-8000-000000000001")
    thick = volume("22222222-0000-4000-8000-000000000002", "thick-lazy")
    base = volume("33333333-0000-4000-8000-000000000003", "thick-eager", read_only=True)
    overlay = volume("44444444-0000-4000-8000-000000000004", "thick-lazy", parent=base)
    dom = DomainSpec(
        VM,
        "t",
        128 * MiB,
        128 * MiB,
        1,
        disks=(DiskSpec(thick, 3), DiskSpec(thin, 0), DiskSpec(overlay, 1, mode="ro")),
    )
    disks = parse(dom).findall("devices/disk")
    got = [
        (
            d.find("source").get("file"),
            d.find("driver").get("type"),
            d.find("target").get("dev"),
            d.find("target").get("bus"),
            d.find("readonly") is not None,
            d.get("device"),
        )
        for d in disks
    ]
    assert got == [
        (f"/srv/sr/{thin.uuid}.qcow2", "qcow2", "vda", "virtio", False, "disk"),
        (f"/srv/sr/{overlay.uuid}.qcow2", "qcow2", "vdb", "virtio", True, "disk"),  # an overlay is qcow2
        (f"/srv/sr/{thick.uuid}.img", "raw", "vdc", "virtio", False, "disk"),
    ]


def test_cd_drives_are_read_only_on_ide_then_sata():
    cds = tuple(
        DiskSpec(volume(f"5555555{i}-0000-4000-8000-00000000000{i}", "thick-lazy"), i, cd=True)
        for i in range(5)
    )
    disks = parse(DomainSpec(VM, "t", 128 * MiB, 128 * MiB, 1, disks=cds)).findall("devices/disk")
    assert [d.get("device") for d in disks] == ["cdrom"] * 5
    assert all(d.find("readonly") is not None for d in disks)
    assert [(d.find("target").get("bus"), d.find("target").get("dev")) for d in disks] == [
        ("ide", "hda"),
        ("ide", "hdb"),
        ("ide", "hdc"),
        ("ide", "hdd"),
        ("sata", "sda"),
    ]


def test_a_block_volume_is_a_block_disk():
    vol = volume("66666666-0000-4000-8000-000000000006", "thick-lazy")
    dom = DomainSpec(VM, "t", 128 * MiB, 128 * MiB, 1, disks=(DiskSpec(vol, 0),))
    disk = parse(dom, {vol.uuid: "/dev/vg0/lv-x"}).find("devices/disk")
    assert disk.get("type") == "block"
    assert disk.find("source").get("dev") == "/dev/vg0/lv-x"


def test_nics_on_their_bridges_with_their_macs_in_device_order():
    nics = (
        NicSpec("02:00:00:00:00:02", "xapi1", 1, openvswitch=False),
        NicSpec("02:00:00:00:00:01", "xenbr0", 0),
    )
    ifaces = parse(DomainSpec(VM, "t", 128 * MiB, 128 * MiB, 1, nics=nics)).findall("devices/interface")
    got = [
        (
            i.get("type"),
            i.find("mac").get("address"),
            i.find("source").get("bridge"),
            i.find("virtualport").get("type") if i.find("virtualport") is not None else None,
        )
        for i in ifaces
    ]
    assert got == [
        ("bridge", "02:00:00:00:00:01", "xenbr0", "openvswitch"),
        ("bridge", "02:00:00:00:00:02", "xapi1", None),  # a Linux bridge: no OVS port
    ]


@pytest.mark.parametrize(
    ("index", "name"), [(0, "vda"), (25, "vdz"), (26, "vdaa"), (27, "vdab"), (52, "vdba"), (702, "vdaaa")]
)
def test_device_names_count_as_libvirt_does(index, name):
    assert device_name("vd", index) == name
