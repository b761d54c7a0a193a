"""VMs on real hosts (drivers.md §3): the domain a VM's records describe, and what each power
transition queues for the host that runs it.

The power commands decide and record exactly as on a simulated pool; on a pool with a driver
they also queue the matching action here (vmctl/drivers: it runs only once every check passed,
and a dry run drops it). On a sim pool every function here returns without doing anything, so
command code never asks which driver runs.

What runs how long (drivers.md §4): a start, a forced halt, a reboot, a pause are short (under
the inventory lock); a clean shutdown (it waits for the guest), a suspend and a resume (they
write or read the whole memory) are long: the VM is held (`current-operations`) while the lock
is released, and a failure puts the records back.

A VM of a libvirt pool runs under software emulation (`type='qemu'`) instead of KVM when its
`other-config:emulation` is `tcg` (a guest kernel that hangs under this machine's KVM, a host
without /dev/kvm). It boots straight from a kernel file on the host (libvirt's direct kernel
boot) when its `other-config:kernel` names one, with `initrd` and `kernel-args` beside it: the
files must be at that path on every host the VM may run on, as a migration starts the guest's
QEMU on the destination from them.
"""

from __future__ import annotations

from vmctl import drivers, xenet
from vmctl.drivers.base import DiskSpec, DomainSpec, NicSpec, VolumeSpec

# The time a clean shutdown waits for the guest to power off, unless vm-shutdown says timeout=.
SHUTDOWN_TIMEOUT = 60.0


# --- the records as a domain -------------------------------------------------------------------------
def volume_spec(txn, vdi: dict, host_uuid: str) -> VolumeSpec:
    """A VDI's volume as the host sees it (its file is the VDI's location, vmctl/volumes.py)."""
    from vmctl import volumes

    return volumes.volume_spec(txn, vdi, volumes.sr_target(txn, txn.get("sr", vdi["sr"]), host_uuid))


def domain_spec(txn, vm: dict, host_uuid: str) -> DomainSpec:
    """The domain of a VM on a host: memory (static-max, and dynamic-max as the current
    amount), vCPUs, its disks in VBD order (empty CD drives have nothing to attach), its NICs
    with their MACs on their networks' bridges (Open vSwitch ports on an openvswitch host, with
    the VIF's uuid as iface-id, and on a VLAN network the parent bridge and the VLAN's tag)."""
    host = txn.get("host", host_uuid)
    disks = []
    for b in sorted(txn.select("vbd", vm=vm["uuid"]), key=lambda b: (b["device"], b["uuid"])):
        vdi = txn.get("vdi", b["vdi"]) if b["vdi"] else None
        if vdi is None:
            continue
        disks.append(
            DiskSpec(volume_spec(txn, vdi, host_uuid), b["device"], b["mode"].lower(), b["type"] == "cd")
        )
    nics = []
    ovs = host["network-backend"] == "openvswitch"
    for f in sorted(txn.select("vif", vm=vm["uuid"]), key=lambda f: (f["device"], f["uuid"])):
        net = txn.get("network", f["network"]) if f["network"] else None
        if net is None:
            continue
        bridge, vlan = net["bridge"], None
        if ovs:
            # a VLAN network's bridge is a fake bridge: the port goes on its real parent, tagged
            kind = xenet.bridge_kind(txn.switch(host_uuid), bridge)
            if kind is not None and kind[0] != bridge:
                bridge, vlan = kind
        nics.append(NicSpec(f["mac"], bridge, f["device"], ovs, interface_id=f["uuid"], vlan=vlan))
    return DomainSpec(
        uuid=vm["uuid"],
        title=vm["name-label"],
        memory=vm["memory-static-max"],
        current_memory=vm["memory-dynamic-max"],
        vcpus=vm["vcpus"],
        disks=tuple(disks),
        nics=tuple(nics),
        emulated=str(vm["other-config"].get("emulation", "")).lower() == "tcg",
        **_direct_boot(vm),
    )


# other-config keys of a direct kernel boot, and the DomainSpec fields they fill
DIRECT_BOOT_KEYS = {"kernel": "kernel", "initrd": "initrd", "kernel-args": "kernel_args"}


def _direct_boot(vm: dict) -> dict:
    cfg = vm["other-config"]
    return {field: str(cfg.get(key, "")) for key, field in DIRECT_BOOT_KEYS.items()}


def check_direct_boot(vm: dict) -> None:
    """A VM about to boot from a kernel file: absolute paths (they are read on the host, whatever
    directory vmctl runs in), and no initrd or kernel-args without a kernel (they would be
    ignored: the VM would boot its disks instead)."""
    from vmctl.errors import VmctlError

    cfg = vm["other-config"]
    for key in ("kernel", "initrd"):
        path = str(cfg.get(key, ""))
        if path and not path.startswith("/"):
            raise VmctlError(
                "INVALID_VALUE",
                f"other-config:{key} must be an absolute path on the host, not {path!r}",
                [("name", f"other-config:{key}"), ("value", path)],
            )
    if not cfg.get("kernel"):
        for key in ("initrd", "kernel-args"):
            if cfg.get(key):
                raise VmctlError(
                    "INVALID_VALUE",
                    f"other-config:{key} needs other-config:kernel (the kernel to boot with it)",
                    [("name", f"other-config:{key}"), ("value", str(cfg[key]))],
                )


# --- the power transitions ---------------------------------------------------------------------------
def _driver_and_host(txn, vm: dict, host_uuid: str):
    """(driver, host target, host name) for a VM of a real pool, else None."""
    driver = drivers.driver_for(txn, vm["pool"])
    if driver is None:
        return None
    host = txn.get("host", host_uuid)
    return driver, drivers.host_target(host), host["name-label"]


def start(txn, vm: dict, host_uuid: str, paused: bool, image_vdi: str = "") -> None:
    """The VM becomes resident on host_uuid: a cold boot defines and starts its domain there; a
    resume (`image_vdi`, its suspend image) restores it from the image."""
    real = _driver_and_host(txn, vm, host_uuid)
    if real is None:
        return
    driver, host, name = real
    if not image_vdi:  # a resumed guest keeps the kernel it booted with, in its memory image
        check_direct_boot(vm)
    dom = domain_spec(txn, vm, host_uuid)
    if image_vdi:
        image = volume_spec(txn, txn.get("vdi", image_vdi), host_uuid)
        drivers.queue(
            txn,
            drivers.Action(
                f"resume VM {vm['name-label']}",
                name,
                lambda: driver.domain_restore(host, dom, image, paused),
                # the guest ran since: only a new save makes the image current again
                undo=lambda: driver.domain_save(host, dom.uuid, image),
                long=True,
                holds=[drivers.Hold("vm", vm["uuid"], "resume")],
            ),
        )
        return
    drivers.queue(
        txn,
        drivers.Action(
            f"start VM {vm['name-label']}",
            name,
            lambda: driver.domain_start(host, dom, paused),
            undo=lambda: driver.domain_destroy(host, dom.uuid),
        ),
    )


def halt(txn, vm: dict, clean: bool, timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """A running or paused VM halts: clean asks the guest and waits for it (long: the lock is
    released meanwhile), otherwise its domain is destroyed at once. Either way the domain is
    undefined. Undone by starting it again (a new boot: what ran is gone)."""
    if vm["power-state"] not in ("running", "paused") or not vm["resident-on"]:
        return
    real = _driver_and_host(txn, vm, vm["resident-on"])
    if real is None:
        return
    driver, host, name = real
    dom = domain_spec(txn, vm, vm["resident-on"])
    if clean:
        drivers.queue(
            txn,
            drivers.Action(
                f"shut down VM {vm['name-label']}",
                name,
                lambda: driver.domain_shutdown(host, dom.uuid, timeout),
                undo=lambda: driver.domain_start(host, dom, False),
                long=True,
                holds=[drivers.Hold("vm", vm["uuid"], "clean_shutdown")],
            ),
        )
        return
    was_paused = vm["power-state"] == "paused"
    drivers.queue(
        txn,
        drivers.Action(
            f"force VM {vm['name-label']} off",
            name,
            lambda: driver.domain_destroy(host, dom.uuid),
            undo=lambda: driver.domain_start(host, dom, was_paused),
        ),
    )


def save(txn, vm: dict, image_vdi: str) -> None:
    """A running VM suspends: its memory goes into the suspend image (the VDI the model made for
    it), and its domain is undefined. Undone by restoring it from the image."""
    if not vm["resident-on"]:
        return
    real = _driver_and_host(txn, vm, vm["resident-on"])
    if real is None:
        return
    driver, host, name = real
    dom = domain_spec(txn, vm, vm["resident-on"])
    image = volume_spec(txn, txn.get("vdi", image_vdi), vm["resident-on"])
    drivers.queue(
        txn,
        drivers.Action(
            f"suspend VM {vm['name-label']}",
            name,
            lambda: driver.domain_save(host, dom.uuid, image),
            undo=lambda: driver.domain_restore(host, dom, image, False),
            long=True,
            holds=[drivers.Hold("vm", vm["uuid"], "suspend"), drivers.Hold("vdi", image_vdi, "suspend")],
        ),
    )


def reboot(txn, vm: dict, force: bool) -> None:
    """Clean: ask the guest to reboot (ACPI); force: reset it. Nothing to undo."""
    real = _driver_and_host(txn, vm, vm["resident-on"]) if vm["resident-on"] else None
    if real is None:
        return
    driver, host, name = real
    uuid = vm["uuid"]
    drivers.queue(
        txn,
        drivers.Action(
            f"{'reset' if force else 'reboot'} VM {vm['name-label']}",
            name,
            lambda: driver.domain_reboot(host, uuid, force),  # type: ignore[call-arg]
        ),
    )


def set_paused(txn, vm: dict, paused: bool) -> None:
    """vm-pause / vm-unpause: the guest's vCPUs stop or run again; undone by the reverse."""
    real = _driver_and_host(txn, vm, vm["resident-on"]) if vm["resident-on"] else None
    if real is None:
        return
    driver, host, name = real
    uuid = vm["uuid"]
    pause, unpause = (lambda: driver.domain_pause(host, uuid)), (lambda: driver.domain_unpause(host, uuid))
    drivers.queue(
        txn,
        drivers.Action(
            f"{'pause' if paused else 'unpause'} VM {vm['name-label']}",
            name,
            pause if paused else unpause,
            undo=unpause if paused else pause,
        ),
    )
