"""Storage on a libvirt host (drivers.md §3): an SR is a storage pool, a VDI a volume of it.

* An SR is a pool whose name and uuid are the SR's uuid: a `dir` pool at device-config:path for
  ext and file SRs (the directory must exist: the pool never changes its owner or mode; a shared
  file SR is the same directory of one cluster filesystem on every host), a `netfs` pool for nfs,
  mounted at device-config:path or /run/sr-mount/<sr-uuid>.
* A volume is a file of the pool (`VolumeSpec.file_name`): thin VDIs are qcow2 (version 3), thick
  ones raw with their whole size allocated (fallocate); thick-eager ones are then written with
  zeros. An overlay (a clone, a snapshot) is a thin qcow2 whose backing store is its parent's file.
* A copy is made by the host itself (`createXMLFrom`: qemu-img convert, or a plain copy between raw
  files), which reads through the source's chain and writes a volume of its own. libvirt cannot
  stop such a copy once started: Ctrl-C waits for the host to finish it, then removes it.
* Deleting a volume deletes, up its backing chain, every file that no other volume still uses:
  the model merges a base copy into its last child at once (storage.merge_chain), the files of
  a chain stay until nothing reads them.

Every method either completes or leaves the host as it was (what it made is removed) and raises
DriverFault; a missing volume is `SR_BACKEND_FAILURE_46`, as XAPI's storage says it.
"""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET

from vmctl.drivers.base import DriverFault, HostTarget, Progress, SrTarget, VolumeSpec, VolumeState

POOL_TYPES = {"ext": "dir", "file": "dir", "nfs": "netfs"}
MOUNT_ROOT = "/run/sr-mount"  # where an nfs SR is mounted when device-config:path is not given
POLL_SECONDS = 0.25  # how often a copy's progress is read back
ZEROS = bytes(1024 * 1024)  # what a thick-eager volume is written with, a chunk at a time
# The files vmctl makes: <vdi-uuid>[.<8 hex>].qcow2|img; only those are ever collected.
OUR_FILE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(\.[0-9a-f]{8})?\.(qcow2|img)$"
)


def _libvirt():
    """The libvirt module: loaded by the driver's connection before any of these run."""
    import libvirt

    return libvirt


# --- XML -------------------------------------------------------------------------------------------
def pool_type(sr: SrTarget) -> str:
    kind = POOL_TYPES.get(sr.type)
    if kind is None:
        raise DriverFault(f"an SR of type {sr.type} is not supported on libvirt (ext, file, nfs are)")
    return kind


def pool_target(sr: SrTarget) -> str:
    if sr.path:
        return sr.path
    if pool_type(sr) == "netfs":
        return f"{MOUNT_ROOT}/{sr.uuid}"
    raise DriverFault(f"the SR {sr.name} has no device-config:path")


def pool_xml(sr: SrTarget) -> str:
    """The storage pool of an SR, named (and identified) by the SR's uuid."""
    kind = pool_type(sr)
    pool = ET.Element("pool", type=kind)
    ET.SubElement(pool, "name").text = sr.uuid
    ET.SubElement(pool, "uuid").text = sr.uuid
    if kind == "netfs":
        if not sr.server or not sr.serverpath:
            raise DriverFault(f"the nfs SR {sr.name} needs device-config:server and device-config:serverpath")
        source = ET.SubElement(pool, "source")
        ET.SubElement(source, "host", name=sr.server)
        ET.SubElement(source, "dir", path=sr.serverpath)
        ET.SubElement(source, "format", type="nfs")
    target = ET.SubElement(pool, "target")
    ET.SubElement(target, "path").text = pool_target(sr)
    return ET.tostring(pool, encoding="unicode")


def volume_xml(vol: VolumeSpec, backing: tuple[str, str] | None = None) -> str:
    """A new volume: `backing` (path, format) makes it an overlay on that file."""
    fmt = "qcow2" if backing is not None else vol.format
    thick = vol.provisioning != "thin" and fmt == "raw"
    v = ET.Element("volume")
    ET.SubElement(v, "name").text = vol.file_name
    ET.SubElement(v, "capacity", unit="bytes").text = str(vol.virtual_size)
    ET.SubElement(v, "allocation", unit="bytes").text = str(vol.virtual_size if thick else 0)
    target = ET.SubElement(v, "target")
    ET.SubElement(target, "format", type=fmt)
    if fmt == "qcow2":
        ET.SubElement(target, "compat").text = "1.1"
    if backing is not None:
        store = ET.SubElement(v, "backingStore")
        ET.SubElement(store, "path").text = backing[0]
        ET.SubElement(store, "format", type=backing[1])
    return ET.tostring(v, encoding="unicode")


def disk_snapshot_xml(domain_xml: str, switch: dict[str, str]) -> str:
    """The external disk snapshot of a domain: each disk whose file is a key of `switch` moves
    to the overlay file it maps to; every other disk is left alone."""
    snap = ET.Element("domainsnapshot")
    disks = ET.SubElement(snap, "disks")
    for disk in ET.fromstring(domain_xml).iterfind("devices/disk"):
        source = disk.find("source")
        path = source.get("file", "") if source is not None else ""
        name = disk.find("target").get("dev")
        if path in switch:
            d = ET.SubElement(disks, "disk", name=name, snapshot="external", type="file")
            ET.SubElement(d, "source", file=switch[path])
            ET.SubElement(d, "driver", type="qcow2")
        else:
            ET.SubElement(disks, "disk", name=name, snapshot="no")
    missing = set(switch) - {d.get("file") for d in ET.fromstring(domain_xml).iterfind("devices/disk/source")}
    if missing:
        raise DriverFault(f"the domain does not use {', '.join(sorted(missing))}")
    return ET.tostring(snap, encoding="unicode")


def _backing_path(vol) -> str:
    """The file a volume overlays, "" for none."""
    return ET.fromstring(vol.XMLDesc(0)).findtext("backingStore/path") or ""


def _format(vol) -> str:
    node = ET.fromstring(vol.XMLDesc(0)).find("target/format")
    return node.get("type", "raw") if node is not None else "raw"


def _state(vol) -> VolumeState:
    _kind, capacity, allocation = vol.info()
    return VolumeState(capacity=int(capacity), allocation=int(allocation))


def _missing(e, code: int) -> bool:
    return e.get_error_code() == code


def _host_message(e) -> str:
    """libvirt's words; for a failed qemu-img only qemu-img's own (libvirt adds its command line)."""
    text = " ".join(str(e).split())
    return text.rsplit("qemu-img: ", 1)[1] if "qemu-img: " in text else text


def _refresh(pool) -> None:
    """Re-read the pool's directory (a file may have come or gone behind libvirt's back); a pool
    busy with a copy refuses, and its list is then as current as libvirt keeps it."""
    try:
        pool.refresh(0)
    except _libvirt().libvirtError:
        pass


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:
        pass


class StorageMixin:
    """The storage methods of the libvirt driver (the Driver protocol, vmctl/drivers/base.py)."""

    # --- SRs -------------------------------------------------------------------------------------
    def sr_attach(self, host: HostTarget, sr: SrTarget) -> bool:
        """Define and start the SR's pool (once: an existing pool is kept and started)."""
        kind = pool_type(sr)
        xml = pool_xml(sr)
        with self.on(host) as conn:
            libvirt = _libvirt()
            pool = self._pool_or_none(conn, sr)
            defined = pool is None
            if defined:
                pool = conn.storagePoolDefineXML(xml, 0)
            try:
                started = not pool.isActive()
                if started:
                    pool.create(libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD if kind == "netfs" else 0)
                pool.setAutostart(1)
            except libvirt.libvirtError:
                if defined:
                    _quietly(pool.undefine)
                raise
            return defined or started

    def sr_detach(self, host: HostTarget, sr: SrTarget) -> None:
        """Stop and undefine the SR's pool; its files stay (an nfs mount point vmctl chose goes)."""
        with self.on(host) as conn:
            pool = self._pool_or_none(conn, sr)
            if pool is None:
                return
            if pool.isActive():
                pool.destroy()
            if pool_type(sr) == "netfs" and not sr.path:
                _quietly(pool.delete, 0)
            pool.undefine()

    # --- volumes ---------------------------------------------------------------------------------
    def volume_create(self, host: HostTarget, vol: VolumeSpec) -> VolumeState:
        with self.on(host) as conn:
            pool = self._active_pool(conn, host, vol.sr)
            backing = None
            if vol.parent is not None:
                parent = self._volume(pool, host, vol.parent)
                backing = (parent.path(), _format(parent))
            made = pool.createXML(volume_xml(vol, backing), 0)
            try:
                if vol.provisioning == "thick-eager" and backing is None:
                    _write_zeros(conn, made, vol.virtual_size)
                return _state(made)
            except BaseException:
                _quietly(made.delete, 0)
                raise

    def volume_resize(self, host: HostTarget, vol: VolumeSpec, size: int, domain: str | None) -> VolumeState:
        """Grow a volume; a running domain using it grows its disk live (block resize)."""
        with self.on(host) as conn:
            libvirt = _libvirt()
            pool = self._active_pool(conn, host, vol.sr)
            v = self._volume(pool, host, vol)
            dom = _running_domain(conn, domain)
            if dom is not None:
                dom.blockResize(v.path(), size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
            else:
                thick_raw = vol.provisioning != "thin" and _format(v) == "raw"
                v.resize(size, libvirt.VIR_STORAGE_VOL_RESIZE_ALLOCATE if thick_raw else 0)
            return _state(v)

    def volume_copy(
        self, host: HostTarget, src: VolumeSpec, dst: VolumeSpec, progress: Progress | None
    ) -> VolumeState:
        """A full copy of what the guest sees in `src` (its chain read through) as the new volume
        `dst`, made by the host; progress(done, total) as the new volume fills."""
        with self.on(host) as conn:
            source = self._volume(self._active_pool(conn, host, src.sr), host, src)
            pool = self._active_pool(conn, host, dst.sr)
            if _volume_or_none(pool, dst.file_name) is not None:
                raise DriverFault(f"storage volume '{dst.file_name}' exists already", host=host.name)
            total = _chain_allocation(conn, source)
            job = _CopyJob(pool, volume_xml(dst), source)
            job.start()

            def tick() -> None:
                if progress is not None:
                    progress(min(job.written(dst.file_name), total), total)

            try:
                job.wait(tick)
            except BaseException:
                job.finish_then_remove(dst.file_name, tick)  # libvirt cannot stop it: wait, then remove
                raise
            if job.error is not None:
                left = _volume_or_none(pool, dst.file_name)  # libvirt removes it; make sure
                if left is not None:
                    _quietly(left.delete, 0)
                raise DriverFault(_host_message(job.error), host=host.name)
            if progress:
                progress(total, total)
            return _state(job.volume)

    def volume_snapshot_live(
        self, host: HostTarget, domain: str, pairs: list[tuple[VolumeSpec, VolumeSpec]]
    ) -> list[VolumeState]:
        """A live disk snapshot: each overlay made on the file the running domain writes, then
        the domain switched to all of them in one step (libvirt's atomic external disk
        snapshot); from then on the bases are read only. On failure the overlays go."""
        with self.on(host) as conn:
            libvirt = _libvirt()
            dom = conn.lookupByName(domain)
            made, switch = [], {}
            try:
                for base, overlay in pairs:
                    pool = self._active_pool(conn, host, overlay.sr)
                    b = self._volume(self._active_pool(conn, host, base.sr), host, base)
                    v = pool.createXML(volume_xml(overlay, (b.path(), _format(b))), 0)
                    made.append(v)
                    switch[b.path()] = v.path()
                flags = (
                    libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
                    | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
                    | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT
                    | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
                )
                dom.snapshotCreateXML(disk_snapshot_xml(dom.XMLDesc(0), switch), flags)
            except BaseException:
                for v in made:
                    _quietly(v.delete, 0)
                raise
            return [_state(v) for v in made]

    def volume_delete(self, host: HostTarget, vol: VolumeSpec, chain: bool = True) -> None:
        """Delete the volume, then (`chain`) the files up its chain that no volume reads any more.
        A volume already gone is no error: the disk is gone either way (as XAPI's file SR deletes)."""
        with self.on(host) as conn:
            pool = self._active_pool(conn, host, vol.sr)
            _refresh(pool)
            v = _volume_or_none(pool, vol.file_name)
            if v is None:
                return
            backing = _backing_path(v) if chain else ""
            v.delete(0)
            _collect(conn, pool, backing)

    def volume_state(self, host: HostTarget, vol: VolumeSpec) -> VolumeState | None:
        with self.on(host) as conn:
            pool = self._active_pool(conn, host, vol.sr)
            v = _volume_or_none(pool, vol.file_name)
            if v is None:
                _refresh(pool)
                v = _volume_or_none(pool, vol.file_name)
            return _state(v) if v is not None else None

    def volumes(self, host: HostTarget, sr: SrTarget) -> dict[str, VolumeState]:
        """Every volume of the SR's pool on the host, by file name."""
        with self.on(host) as conn:
            pool = self._active_pool(conn, host, sr)
            _refresh(pool)
            return {v.name(): _state(v) for v in pool.listAllVolumes(0)}

    # --- lookups -----------------------------------------------------------------------------------
    def _pool_or_none(self, conn, sr: SrTarget):
        try:
            return conn.storagePoolLookupByName(sr.uuid)
        except _libvirt().libvirtError as e:
            if _missing(e, _libvirt().VIR_ERR_NO_STORAGE_POOL):
                return None
            raise

    def _active_pool(self, conn, host: HostTarget, sr: SrTarget):
        """The SR's pool on the host, started if it was stopped (a host restarted without it)."""
        pool = self._pool_or_none(conn, sr)
        if pool is None:
            raise DriverFault(
                f"The SR is not available: {host.name} has no storage pool {sr.uuid} ({sr.name}); "
                "plug the SR's PBD on that host",
                code="SR_BACKEND_FAILURE_47",
                host=host.name,
            )
        if not pool.isActive():
            pool.create(0)
        return pool

    def _volume(self, pool, host: HostTarget, vol: VolumeSpec):
        v = _volume_or_none(pool, vol.file_name)
        if v is None:
            _refresh(pool)
            v = _volume_or_none(pool, vol.file_name)
        if v is None:
            raise DriverFault(
                f"The VDI is not available: no volume {vol.file_name} in SR {vol.sr.name} on {host.name}",
                code="SR_BACKEND_FAILURE_46",
                host=host.name,
            )
        return v


def _volume_or_none(pool, name: str):
    try:
        v = pool.storageVolLookupByName(name)
    except _libvirt().libvirtError as e:
        if _missing(e, _libvirt().VIR_ERR_NO_STORAGE_VOL):
            return None
        raise
    # libvirt keeps a volume whose file went behind its back until the pool is refreshed
    try:
        v.info()
    except _libvirt().libvirtError:
        return None
    return v


def _running_domain(conn, name: str | None):
    if not name:
        return None
    try:
        dom = conn.lookupByName(name)
    except _libvirt().libvirtError as e:
        if _missing(e, _libvirt().VIR_ERR_NO_DOMAIN):
            return None
        raise
    return dom if dom.isActive() else None


def _write_zeros(conn, vol, size: int) -> None:
    """Write the whole volume (thick-eager): every block is written once, now, not on first use."""
    stream = conn.newStream(0)
    vol.upload(stream, 0, size, 0)
    try:
        left = size
        while left:
            chunk = memoryview(ZEROS)[: min(left, len(ZEROS))]
            while chunk:
                sent = stream.send(chunk.tobytes())
                chunk = chunk[sent:]
                left -= sent
        stream.finish()
    except BaseException:
        _quietly(stream.abort)
        raise


def _chain_allocation(conn, vol) -> int:
    """The bytes a full copy reads: the allocation of the volume and its backing files, at most
    its capacity."""
    _kind, capacity, total = vol.info()
    seen = {vol.path()}
    path = _backing_path(vol)
    while path and path not in seen:
        seen.add(path)
        try:
            b = conn.storageVolLookupByPath(path)
        except _libvirt().libvirtError:
            break
        total += b.info()[2]
        path = _backing_path(b)
    return int(min(total, capacity))


def _collect(conn, pool, path: str) -> None:
    """Delete, up a chain, the files of vmctl's that no volume of the pool reads any more. What
    cannot be deleted stays for host-sync to report; the disk the user destroyed is gone."""
    libvirt = _libvirt()
    try:
        while path and OUR_FILE.match(path.rsplit("/", 1)[-1]):
            if any(_backing_path(v) == path for v in pool.listAllVolumes(0)):
                return
            try:
                base = conn.storageVolLookupByPath(path)
            except libvirt.libvirtError:
                return
            path = _backing_path(base)
            base.delete(0)
    except libvirt.libvirtError:
        return


class _CopyJob:
    """createXMLFrom in a thread, so that the caller can report progress and take Ctrl-C. It is
    waited for through an Event: a Thread.join interrupted by Ctrl-C may leave the thread marked
    as ended while it still runs (Python 3.11)."""

    def __init__(self, pool, xml: str, source) -> None:
        self.pool, self.xml, self.source = pool, xml, source
        self.volume = None
        self.error = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vmctl-copy", daemon=True)

    def _run(self) -> None:
        try:
            self.volume = self.pool.createXMLFrom(self.xml, self.source, 0)
        except _libvirt().libvirtError as e:
            self.error = e
        finally:
            self._done.set()

    def start(self) -> None:
        self._thread.start()

    def wait(self, tick) -> None:
        while not self._done.wait(POLL_SECONDS):
            tick()

    def written(self, name: str) -> int:
        try:
            v = self.pool.storageVolLookupByName(name)
            return int(v.info()[2])
        except _libvirt().libvirtError:
            return 0

    def finish_then_remove(self, name: str, tick) -> None:
        """After Ctrl-C (or any failure of ours): wait for the host to end the copy, ignoring
        further Ctrl-C, then delete what it made."""
        while not self._done.is_set():
            try:
                if not self._done.wait(POLL_SECONDS):
                    tick()
            except KeyboardInterrupt:
                continue
        made = self.volume if self.volume is not None else _volume_or_none(self.pool, name)
        if made is not None:
            _quietly(made.delete, 0)
