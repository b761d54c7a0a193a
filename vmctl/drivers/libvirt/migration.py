"""Live migration between libvirt hosts (drivers.md §3): `migrateToURI3`, live and peer to peer
(the source's libvirtd drives the whole protocol, so vmctl needs no stream of its own), the
definition persisted on the destination and undefined on the source, with the engine's stream
bandwidth and downtime target.

Before anything moves, read-only checks of the destination, each a refusal in one line:

* it answers (`HOST_OFFLINE`, with its URI and libvirt's words);
* it has the memory the guest may use (`HOST_NOT_ENOUGH_FREE_MEMORY`): the domain's maximum
  memory against the host's free memory plus buffers and page cache (memory the kernel gives
  back), as the host itself reports it now, whatever the inventory believes;
* its hypervisor can provide the CPU the guest runs with (`VM_INCOMPATIBLE_WITH_THIS_HOST`):
  libvirt's compareHypervisorCPU on the guest's `<cpu>` from its live definition;
* it runs no domain of that name already.

Storage motion (`spec.disks`): the new volumes are made on the destination beforehand (by the
caller); the guest's definition for the destination names them instead of the disks they
replace (`VIR_MIGRATE_PARAM_DEST_XML`, and the same for the persistent definition), and libvirt
copies exactly those disks while the memory moves (`VIR_MIGRATE_NON_SHARED_DISK` with
`VIR_MIGRATE_PARAM_MIGRATE_DISKS`: a full copy, the chain read through, so each new volume stands
alone); the other disks stay where they are, on storage both hosts see.

Why a thread: migrateToURI3 blocks inside libvirt's C code for the whole migration, where
Python cannot deliver Ctrl-C. The call runs in a worker thread while this one watches the job:
libvirt's job statistics feed the progress line (memory covered against memory to cover), and
Ctrl-C asks libvirt to abort the job (abortJob) and waits for the call to return, a second
Ctrl-C ignored meanwhile. A migration of a wave runs in a thread of its own, where Ctrl-C never
arrives: it watches `cancel_requested` (drivers/base.py), set by the main thread, instead. libvirt then resumes the guest on the source and removes what it had
started on the destination.

After a failure or an abort the guest is looked for on both hosts; only a guest on the source
means "nothing moved" (KeyboardInterrupt for an abort, a DriverFault otherwise). A guest found
running on the destination means the migration finished after all (an abort that came too late):
that is reported as done, never hidden, because the inventory must follow the guest.

The measured figures are libvirt's completed-job statistics, read from the destination's domain
(the source's is undefined by then): total time, downtime, bytes sent, memory covered, rounds.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from contextlib import AbstractContextManager

from vmctl.drivers.base import (
    DriverFault,
    HostTarget,
    MigrationFigures,
    MigrationSpec,
    Progress,
    cancel_requested,
)

POLL = 0.2  # seconds between looks at the job
MiB = 1024**2


class MigrationMixin:
    """The migration part of LibvirtDriver (see __init__.py)."""

    on: Callable[[HostTarget], AbstractContextManager]
    connect: Callable[[HostTarget], object]
    volume_path: Callable[..., str]  # a volume's file on a host (compute.py)

    def domain_migrate(
        self, src: HostTarget, dst: HostTarget, spec: MigrationSpec, progress: Progress | None = None
    ) -> MigrationFigures:
        from vmctl.drivers.libvirt import load
        from vmctl.drivers.libvirt.compute import _lookup, _required

        libvirt = load()
        with self.on(src) as sconn:
            dom = _required(sconn, spec.uuid, src)
            if not dom.isActive():  # destroyed behind vmctl's back, or crashed
                raise DriverFault(
                    f"VM {spec.title} does not run on {src.name} (host-sync reports it)", host=src.name
                )
            was_running = dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
            need = dom.maxMemory() * 1024  # KiB
            desc = ET.fromstring(dom.XMLDesc(0))
            moving = {self.volume_path(sconn, old): new for old, new in spec.disks}
            movable = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE) if moving else ""
        dconn = self.connect(dst)  # HOST_OFFLINE, with the URI, when it does not answer
        with self.on(dst):
            other = _lookup(dconn, spec.uuid)
            if other is not None and other.isActive():
                raise DriverFault(f"{dst.name} already runs a domain named {spec.uuid}", host=dst.name)
            check_memory(libvirt, dconn, dst, spec, need)
            check_cpu(libvirt, dconn, dst, desc)
            paths = {old: (self.volume_path(dconn, new), new.format) for old, new in moving.items()}
        xml, devices = moved_disks_xml(movable, paths) if moving else ("", [])
        if len(devices) != len(moving):
            raise DriverFault(
                f"VM {spec.title} does not use every disk to move on {src.name} (host-sync reports it)",
                host=src.name,
            )
        with self.on(src):
            set_downtime(libvirt, dom, spec.downtime)
        flags = (
            libvirt.VIR_MIGRATE_LIVE
            | libvirt.VIR_MIGRATE_PEER2PEER
            | libvirt.VIR_MIGRATE_PERSIST_DEST
            | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        )
        params = migration_params(libvirt, spec)
        if moving:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
            params[libvirt.VIR_MIGRATE_PARAM_DEST_XML] = xml
            params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = xml
            params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = devices
        started = time.monotonic()
        error, interrupted, last = watch(
            libvirt, dom, lambda: dom.migrateToURI3(dst.uri, params, flags), progress
        )
        wall = time.monotonic() - started
        if error is None and not interrupted:
            return figures(libvirt, dconn, spec.uuid, last, wall)
        where = whereabouts(libvirt, sconn, dconn, spec.uuid, _lookup)
        if where == "destination":
            # it finished all the same (an abort that came too late): the guest runs there now
            sys.stderr.write(
                f"vmctl: warning: the migration of VM {spec.title} had finished before it could be "
                f"stopped: it runs on {dst.name}\n"
            )
            return figures(libvirt, dconn, spec.uuid, last, wall)
        if where == "source" and was_running:
            resume_if_paused_by_migration(libvirt, sconn, spec.uuid, _lookup)
        if interrupted:
            raise KeyboardInterrupt
        assert error is not None
        raise fault(libvirt, error, src, dst, where)


# --- before -------------------------------------------------------------------------------------------
def check_memory(libvirt, dconn, dst: HostTarget, spec: MigrationSpec, need: int) -> None:
    """The destination must have the memory the guest may use (`need` bytes) available now."""
    stats = dconn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
    available = 1024 * sum(stats.get(k, 0) for k in ("free", "buffers", "cached"))  # KiB
    if need > available:
        from vmctl.units import humanise_size

        raise DriverFault(
            f"{dst.name} has {humanise_size(available)} of memory available, "
            f"VM {spec.title} may use {humanise_size(need)}",
            code="HOST_NOT_ENOUGH_FREE_MEMORY",
            host=dst.name,
        )


def check_cpu(libvirt, dconn, dst: HostTarget, desc: ET.Element) -> None:
    """The destination's hypervisor must provide the guest's CPU (its live `<cpu>`)."""
    cpu = desc.find("cpu")
    if cpu is None or cpu.get("mode") in ("host-passthrough", "maximum"):
        return  # nothing libvirt could compare: its own migration check decides
    os_type = desc.find("os/type")
    try:
        result = dconn.compareHypervisorCPU(
            None,
            os_type.get("arch") if os_type is not None else None,
            os_type.get("machine") if os_type is not None else None,
            desc.get("type"),
            ET.tostring(cpu, encoding="unicode"),
            libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE,
        )
    except libvirt.libvirtError as e:
        if e.get_error_code() == libvirt.VIR_ERR_CPU_INCOMPATIBLE:
            raise cpu_fault(e, dst) from None
        if e.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
            return  # an older host: libvirt's own migration check still refuses
        raise
    if result == libvirt.VIR_CPU_COMPARE_INCOMPATIBLE:
        raise DriverFault(
            f"{dst.name} cannot provide the guest's CPU", code="VM_INCOMPATIBLE_WITH_THIS_HOST", host=dst.name
        )


def cpu_fault(e, dst: HostTarget) -> DriverFault:
    return DriverFault(str(e), code="VM_INCOMPATIBLE_WITH_THIS_HOST", host=dst.name)


def set_downtime(libvirt, dom, downtime: float) -> None:
    """The downtime target for the coming job (kept by QEMU as a migration parameter)."""
    try:
        dom.migrateSetMaxDowntime(max(1, round(downtime * 1000)), 0)
    except libvirt.libvirtError as e:
        if e.get_error_code() not in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_NO_SUPPORT):
            raise
        # an older libvirt takes it only while a job runs: migration_params says it again


def migration_params(libvirt, spec: MigrationSpec) -> dict:
    params: dict = {}
    if spec.bandwidth and spec.bandwidth != float("inf"):
        # libvirt takes MiB/s, whole: never below 1, never rounded up past the engine's rate
        params[libvirt.VIR_MIGRATE_PARAM_BANDWIDTH] = max(1, int(spec.bandwidth // MiB))
    if spec.uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = spec.uri
    return params


def moved_disks_xml(xml: str, paths: dict[str, tuple[str, str]]) -> tuple[str, list[str]]:
    """The guest's definition for the destination: each disk whose file is a key of `paths` reads
    its new file instead (a stand-alone volume of the given format, no backing chain). Returns the
    definition and the moved disks' target devices, in the definition's order."""
    root = ET.fromstring(xml)
    devices = []
    for disk in root.iter("disk"):
        source = disk.find("source")
        path = source.get("file") if source is not None else None
        if path not in paths:
            continue
        new_path, fmt = paths[path]
        source.set("file", new_path)
        driver = disk.find("driver")
        if driver is not None:
            driver.set("type", fmt)
        for backing in disk.findall("backingStore"):
            disk.remove(backing)
        target = disk.find("target")
        if target is not None and target.get("dev"):
            devices.append(target.get("dev"))
    return ET.tostring(root, encoding="unicode"), devices


# --- during -------------------------------------------------------------------------------------------
def watch(libvirt, dom, call: Callable[[], object], progress: Progress | None):
    """Run `call` (the blocking migration) in a worker thread and watch its job until it returns.
    Returns (the call's libvirt error or None, whether Ctrl-C aborted it, the last job statistics)."""
    outcome: dict = {}

    def work() -> None:
        try:
            call()
        except libvirt.libvirtError as e:
            outcome["error"] = e

    worker = threading.Thread(target=work, name="vmctl-migration", daemon=True)
    worker.start()
    last: dict = {}
    try:
        while worker.is_alive():
            worker.join(POLL)
            if cancel_requested.is_set():  # Ctrl-C, seen by the main thread (a wave's migration)
                raise KeyboardInterrupt
            stats = job_stats(libvirt, dom)
            if stats.get("type", 0) != 0:
                last = stats
                total = int(stats.get("data_total") or 0)
                if progress is not None and total:
                    progress(total - int(stats.get("data_remaining") or 0), total)
    except KeyboardInterrupt:
        abort(libvirt, dom, worker)
        return outcome.get("error"), True, last
    return outcome.get("error"), False, last


def job_stats(libvirt, dom) -> dict:
    try:
        return dom.jobStats(0)
    except libvirt.libvirtError:
        return {}  # the job ended between two looks


def abort(libvirt, dom, worker: threading.Thread) -> None:
    """Ask libvirt to abort the job and wait for the migration call to return; a second Ctrl-C
    meanwhile is ignored (leaving now would leave the job to run on without us)."""
    previous = _ignore_sigint()
    try:
        try:
            dom.abortJob()
        except libvirt.libvirtError:
            pass  # no job any more: it ended as Ctrl-C came
        worker.join()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _ignore_sigint():
    try:
        return signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to ignore
        return None


# --- after --------------------------------------------------------------------------------------------
def whereabouts(libvirt, sconn, dconn, uuid: str, lookup) -> str:
    """Where the guest runs after a failed or aborted job: source, destination or neither."""

    def active(conn) -> bool:
        try:
            d = lookup(conn, uuid)
            return d is not None and bool(d.isActive())
        except libvirt.libvirtError:
            return False  # that host does not answer: not there as far as we can tell

    if active(sconn):
        return "source"
    if active(dconn):
        return "destination"
    return "neither"


def resume_if_paused_by_migration(libvirt, sconn, uuid: str, lookup) -> None:
    """A guest the failed migration left paused on the source (it failed in the stop-and-copy)
    runs again, as it ran before."""
    try:
        d = lookup(sconn, uuid)
        if d is not None:
            state, reason = d.state()
            if state == libvirt.VIR_DOMAIN_PAUSED and reason == libvirt.VIR_DOMAIN_PAUSED_MIGRATION:
                d.resume()
    except libvirt.libvirtError:
        pass  # the guest is there; host-sync reports its state


def fault(libvirt, error, src: HostTarget, dst: HostTarget, where: str) -> DriverFault:
    code = error.get_error_code()
    if code == libvirt.VIR_ERR_CPU_INCOMPATIBLE:
        return cpu_fault(error, dst)
    message = str(error)
    if code == libvirt.VIR_ERR_OPERATION_ABORTED:
        message = f"the job was aborted on the host ({message})"
    if where == "neither":
        message += "; the guest now runs on neither host (host-sync reports it)"
    return DriverFault(message, host=src.name)


def figures(libvirt, dconn, uuid: str, last: dict, wall: float) -> MigrationFigures:
    """The completed job's statistics as the destination keeps them (else the last ones seen)."""
    stats = last
    try:
        stats = dconn.lookupByName(uuid).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED) or last
    except libvirt.libvirtError:
        pass
    elapsed = stats.get("time_elapsed")
    downtime = stats.get("downtime")
    return MigrationFigures(
        total_time=elapsed / 1000 if elapsed is not None else wall,
        downtime=downtime / 1000 if downtime is not None else None,
        bytes=int(stats.get("data_processed") or 0),
        memory=int(stats.get("memory_total") or stats.get("data_total") or 0),
        rounds=int(stats.get("memory_iteration") or 0),
        rate=float(stats.get("memory_bps") or 0),
        wall_time=round(wall, 3),
        storage_bytes=int(stats.get("disk_processed") or 0),
    )
