"""VMs as libvirt domains (drivers.md §3): start, shut down, destroy, reboot, pause, save and
restore, the domains a host runs, and CPU comparison.

A domain is defined on a host exactly while its VM runs or is paused there: a start defines it
(persistent) and creates it, a halt or a save undefines it again. A halted VM therefore has no
domain anywhere, as in XAPI a halted VM has no resident host, and the next start may pick any
host without leaving a stale definition behind.

A domain that is already gone when vmctl halts it (destroyed with virsh, crashed) counts as
halted: the VM ends where it was asked to be, as XAPI reports a VM whose domain vanished as
halted. Every other libvirt failure leaves as a DriverFault with libvirt's message.
"""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from contextlib import AbstractContextManager

from vmctl.drivers.base import DomainSpec, DriverFault, HostTarget, VolumeSpec
from vmctl.drivers.libvirt.domain_xml import domain_xml

POLL = 0.05  # seconds between looks at a guest that is shutting down


class ComputeMixin:
    """The compute half of LibvirtDriver (see __init__.py)."""

    on: Callable[[HostTarget], AbstractContextManager]  # a connection; libvirt errors become DriverFaults

    # --- lifecycle -----------------------------------------------------------------------------------
    def domain_start(self, host: HostTarget, dom: DomainSpec, paused: bool = False) -> None:
        """Define the domain (persistent) and start it, paused if asked. A domain that fails to
        start is undefined again: the host keeps nothing of it. One already running under that
        name (started outside vmctl) is left alone and the start fails."""
        libvirt = self._libvirt()
        with self.on(host) as conn:
            old = _lookup(conn, dom.uuid)
            if old is not None and old.isActive():
                raise DriverFault(f"domain {dom.uuid} is already running on the host", host=host.name)
            xml = domain_xml(dom, self.volume_paths(conn, dom))
            d = conn.defineXML(xml)
            try:
                d.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)
            except libvirt.libvirtError:
                if old is None:
                    _quietly(d.undefine)
                raise

    def domain_shutdown(self, host: HostTarget, uuid: str, timeout: float) -> None:
        """Ask the guest to power off (ACPI power button) and wait up to `timeout` seconds for it;
        then the domain is undefined. A guest still running then fails VM_SHUTDOWN_TIMEOUT and
        keeps running."""
        libvirt = self._libvirt()
        with self.on(host) as conn:
            d = _lookup(conn, uuid)
            if d is None:
                return
            if d.isActive():
                try:
                    # the domain has no guest agent channel: QEMU's default is the ACPI button
                    d.shutdown()
                except libvirt.libvirtError:
                    if d.isActive():
                        raise
                deadline = time.monotonic() + timeout
                while d.isActive():
                    if time.monotonic() >= deadline:
                        raise DriverFault(
                            f"the guest did not shut down within {timeout:g} s; "
                            "vm-shutdown --force halts it at once",
                            code="VM_SHUTDOWN_TIMEOUT",
                            host=host.name,
                            timeout=f"{timeout:g}",
                        )
                    time.sleep(POLL)
            _undefine(d)

    def domain_destroy(self, host: HostTarget, uuid: str) -> None:
        """Power the domain off at once and undefine it (vm-shutdown --force)."""
        libvirt = self._libvirt()
        with self.on(host) as conn:
            d = _lookup(conn, uuid)
            if d is None:
                return
            if d.isActive():
                try:
                    d.destroy()
                except libvirt.libvirtError:
                    if d.isActive():
                        raise
            _undefine(d)

    def domain_undefine(self, host: HostTarget, uuid: str) -> None:
        """Remove a stopped domain's definition; a running one is destroyed first."""
        self.domain_destroy(host, uuid)

    def domain_reboot(self, host: HostTarget, uuid: str, force: bool = False) -> None:
        """Ask the guest to reboot (ACPI), or with `force` reset it like a reset button."""
        libvirt = self._libvirt()
        with self.on(host) as conn:
            d = _required(conn, uuid, host)
            if force:
                d.reset(0)
                if d.info()[0] == libvirt.VIR_DOMAIN_PAUSED:
                    d.resume()  # a hard reboot ends running, also from paused (model.md §2)
            else:
                d.reboot(0)  # no guest agent channel: the ACPI way, as for shutdown

    def domain_pause(self, host: HostTarget, uuid: str) -> None:
        with self.on(host) as conn:
            _required(conn, uuid, host).suspend()

    def domain_unpause(self, host: HostTarget, uuid: str) -> None:
        with self.on(host) as conn:
            _required(conn, uuid, host).resume()

    # --- suspend and resume --------------------------------------------------------------------------
    def domain_save(self, host: HostTarget, uuid: str, image: VolumeSpec) -> None:
        """Save the guest's memory into the suspend image's volume and undefine the domain: the
        image alone now holds the VM, restorable on any host that sees the volume."""
        with self.on(host) as conn:
            d = _required(conn, uuid, host)
            path = self.volume_path(conn, image, memory_image=True)
            d.save(path)
            _refresh_pool(conn, image)
            _undefine(d)

    def domain_restore(
        self, host: HostTarget, dom: DomainSpec, image: VolumeSpec, paused: bool = False
    ) -> None:
        """Restore the guest from its suspend image on `host` (the image carries the domain's
        definition), running or paused, and define it there again."""
        libvirt = self._libvirt()
        with self.on(host) as conn:
            path = self.volume_path(conn, image, memory_image=True)
            # the image was saved running (vm-suspend needs a running VM): no flag restores it so
            flags = libvirt.VIR_DOMAIN_SAVE_PAUSED if paused else 0
            conn.restoreFlags(path, None, flags)
            d = _required(conn, dom.uuid, host)
            try:
                conn.defineXML(domain_xml(dom, self.volume_paths(conn, dom)))
            except libvirt.libvirtError:
                _quietly(d.destroy)
                raise

    # --- reads ---------------------------------------------------------------------------------------
    def domains(self, host: HostTarget) -> dict[str, str]:
        """Every domain the host knows, by name (a VM's uuid for vmctl's own), with its power
        state in vmctl's words: running, paused or halted, or migrating while a live migration
        holds it paused (arriving here, or in its last stop-and-copy round leaving)."""
        libvirt = self._libvirt()
        states = {
            libvirt.VIR_DOMAIN_PAUSED: "paused",
            libvirt.VIR_DOMAIN_PMSUSPENDED: "paused",
            libvirt.VIR_DOMAIN_SHUTOFF: "halted",
            libvirt.VIR_DOMAIN_CRASHED: "halted",
        }

        def word(state: int, reason: int) -> str:
            if state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_MIGRATION:
                return "migrating"
            return states.get(state, "running")

        with self.on(host) as conn:
            return {d.name(): word(*d.state()) for d in conn.listAllDomains()}

    def cpu_compatible(self, host: HostTarget, cpu_xml: str) -> bool:
        """Whether `host` can run the CPU `cpu_xml` describes (libvirt's compareCPU: identical
        or a superset)."""
        libvirt = self._libvirt()
        with self.on(host) as conn:
            result = conn.compareCPU(cpu_xml, 0)
        return result in (libvirt.VIR_CPU_COMPARE_IDENTICAL, libvirt.VIR_CPU_COMPARE_SUPERSET)

    # --- volumes as a domain sees them ---------------------------------------------------------------
    def volume_paths(self, conn, dom: DomainSpec) -> dict[str, str]:
        return {d.volume.uuid: self.volume_path(conn, d.volume) for d in dom.disks}

    def volume_path(self, conn, vol: VolumeSpec, memory_image: bool = False) -> str:
        """A volume's path on the host: the volume `file_name` of the storage pool named after its
        SR (the pool is refreshed once when it does not list the volume yet). A memory image is
        a file libvirt writes itself, listed by the pool or not: its path in the pool's
        directory. A host without that pool: the file in the SR's directory (device-config:path)."""
        libvirt = self._libvirt()
        try:
            pool = conn.storagePoolLookupByName(vol.sr.uuid)
        except libvirt.libvirtError:
            if vol.sr.path:
                return os.path.join(vol.sr.path, vol.file_name)
            raise DriverFault(f"the host has no storage pool {vol.sr.uuid} (SR {vol.sr.name})") from None
        for attempt in range(2):
            try:
                return pool.storageVolLookupByName(vol.file_name).path()
            except libvirt.libvirtError:
                if attempt == 0:
                    _quietly(lambda: pool.refresh(0))
        target = ET.fromstring(pool.XMLDesc(0)).findtext("target/path") or ""
        if memory_image and target:
            return os.path.join(target, vol.file_name)
        raise DriverFault(f"no volume {vol.file_name} in storage pool {vol.sr.uuid} (SR {vol.sr.name})")

    def _libvirt(self):
        from vmctl.drivers.libvirt import load

        return load()


def _lookup(conn, name: str):
    """The domain of that name, or None when the host has none."""
    import libvirt

    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as e:
        if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def _required(conn, name: str, host: HostTarget):
    d = _lookup(conn, name)
    if d is None:
        raise DriverFault(f"the host has no domain {name}", host=host.name)
    return d


def _undefine(d) -> None:
    """Remove a stopped domain's definition (a transient one is gone already once stopped)."""
    import libvirt

    try:
        d.undefine()
    except libvirt.libvirtError as e:
        if e.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
            raise


def _refresh_pool(conn, vol: VolumeSpec) -> None:
    """Let the storage pool see the size the saved image has now (no pool: nothing to tell)."""
    import libvirt

    try:
        conn.storagePoolLookupByName(vol.sr.uuid).refresh(0)
    except libvirt.libvirtError:
        pass


def _quietly(fn) -> None:
    try:
        fn()
    except Exception:  # already failing: the first error is the one to report
        pass
