"""The libvirt domain XML of a VM (drivers.md §3 vm-start), built from a DomainSpec alone.

What the XML says and why:

* name = the VM's uuid (and `<uuid>` the same when it is one), `<title>` = its name-label: the
  name is what vmctl looks domains up by, the title what a person sees in `virsh list --title`;
* `<memory>` = memory-static-max, `<currentMemory>` = memory-dynamic-max (the balloon target);
* `type='kvm'`, or `type='qemu'` (software emulation) when the VM asks for it: never a host
  CPU model (`-cpu host`, host-passthrough): the guest gets the hypervisor's default CPU, which
  every host of a pool can give, so a guest can move between hosts;
* `<features><acpi/></features>`: without ACPI a clean shutdown request reaches no guest;
* `<kernel>`, `<initrd>`, `<cmdline>` when the VM boots straight from a kernel file on the host
  (no boot devices then: the firmware hands over to that kernel);
* disks in VBD (userdevice) order, virtio; CD drives read-only on IDE (the bus every firmware
  boots CDs from), beyond four on SATA;
* NICs on their network's bridge with their MAC, an Open vSwitch port when the bridge is one,
  whose `iface-id` is the VIF's uuid (libvirt sets it, with `attached-mac`, on the port it
  makes: vmctl finds a guest's port by it, whatever libvirt named it); a NIC on a VLAN network
  sits on the real parent bridge with the VLAN's tag.

Nothing here needs an operating system in the guest: with no disk the firmware starts and waits.
"""

from __future__ import annotations

import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from vmctl.drivers.base import DiskSpec, DomainSpec

IDE_SLOTS = 4  # two IDE buses, master and slave


def device_name(prefix: str, index: int) -> str:
    """The target name of the index-th device on a bus, as libvirt counts: vda..vdz, vdaa, ..."""
    letters = ""
    n = index
    while True:
        letters = chr(ord("a") + n % 26) + letters
        n = n // 26 - 1
        if n < 0:
            return prefix + letters


def kib(n: int) -> str:
    return str(-(-n // 1024))  # whole KiB, rounded up


def domain_xml(dom: DomainSpec, paths: Mapping[str, str]) -> str:
    """The domain XML; `paths` gives each disk volume's path on the host (by volume uuid)."""
    root = ET.Element("domain", type="qemu" if dom.emulated else "kvm")
    ET.SubElement(root, "name").text = dom.uuid
    if _is_uuid(dom.uuid):
        ET.SubElement(root, "uuid").text = dom.uuid
    ET.SubElement(root, "title").text = dom.title
    ET.SubElement(root, "memory", unit="KiB").text = kib(dom.memory)
    ET.SubElement(root, "currentMemory", unit="KiB").text = kib(min(dom.current_memory, dom.memory))
    ET.SubElement(root, "vcpu", placement="static").text = str(dom.vcpus)
    os_ = ET.SubElement(root, "os")
    ET.SubElement(os_, "type").text = "hvm"
    if dom.kernel:
        ET.SubElement(os_, "kernel").text = dom.kernel
        if dom.initrd:
            ET.SubElement(os_, "initrd").text = dom.initrd
        if dom.kernel_args:
            ET.SubElement(os_, "cmdline").text = dom.kernel_args
    else:
        ET.SubElement(os_, "boot", dev="hd")
        ET.SubElement(os_, "boot", dev="cdrom")
    features = ET.SubElement(root, "features")
    ET.SubElement(features, "acpi")
    for event, what in (("on_poweroff", "destroy"), ("on_reboot", "restart"), ("on_crash", "destroy")):
        ET.SubElement(root, event).text = what
    devices = ET.SubElement(root, "devices")
    disks = sorted(dom.disks, key=lambda d: d.device)
    n_disk = n_cd = 0
    for d in disks:
        if d.cd:
            bus, prefix, i = ("ide", "hd", n_cd) if n_cd < IDE_SLOTS else ("sata", "sd", n_cd - IDE_SLOTS)
            n_cd += 1
        else:
            bus, prefix, i = "virtio", "vd", n_disk
            n_disk += 1
        devices.append(_disk(d, paths[d.volume.uuid], bus, device_name(prefix, i)))
    for nic in sorted(dom.nics, key=lambda n: n.device):
        iface = ET.SubElement(devices, "interface", type="bridge")
        ET.SubElement(iface, "mac", address=nic.mac)
        ET.SubElement(iface, "source", bridge=nic.bridge)
        if nic.openvswitch:
            port = ET.SubElement(iface, "virtualport", type="openvswitch")
            if nic.interface_id:
                ET.SubElement(port, "parameters", interfaceid=nic.interface_id)
        if nic.vlan is not None:
            ET.SubElement(ET.SubElement(iface, "vlan"), "tag", id=str(nic.vlan))
        ET.SubElement(iface, "model", type="virtio")
    serial = ET.SubElement(devices, "serial", type="pty")
    ET.SubElement(serial, "target", port="0")
    ET.SubElement(devices, "console", type="pty")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def _disk(d: DiskSpec, path: str, bus: str, target: str) -> ET.Element:
    block = path.startswith("/dev/")  # an LVM or iSCSI volume is a block device, not a file
    disk = ET.Element("disk", type="block" if block else "file", device="cdrom" if d.cd else "disk")
    ET.SubElement(disk, "driver", name="qemu", type=d.volume.format)
    ET.SubElement(disk, "source", {"dev" if block else "file": path})
    ET.SubElement(disk, "target", dev=target, bus=bus)
    if d.cd or d.mode == "ro" or d.volume.read_only:
        ET.SubElement(disk, "readonly")
    return disk


def _is_uuid(text: str) -> bool:
    try:
        return str(uuidlib.UUID(text)) == text.lower()
    except ValueError:
        return False
