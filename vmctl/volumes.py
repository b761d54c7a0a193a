"""Disks on real hosts (drivers.md §3–§4): what the storage service (vmctl/storage.py) and the SR
commands also do when a pool's hosts are real. Every function here is called where the records
change, in the same transaction, and does nothing on a simulated pool; on a real pool it queues
the host's side as an Action with its undo (vmctl/drivers), so that nothing happens on a host
unless the transaction passed every check.

Where a volume lives: on the SR's host for a local SR; for a shared SR on the pool master if it
is live and attached, else the first such host by uuid. A copy runs on a host that sees both
SRs (a copy between two local SRs of different hosts is refused).

Which file a VDI is: its `location` (the volume's name in the SR). A new VDI's file is
`<vdi-uuid>.qcow2` (thin) or `.img` (thick). A clone or snapshot keeps the model's chain
(storage.clone_vdi): the new base copy takes the source's file, now read only; the source gets a
new overlay file `<vdi-uuid>.<8 hex>.qcow2` on it; the clone an overlay `<clone-uuid>.qcow2`.
A merge of the model (storage.merge_chain) changes records only: the files stay as the chain
below them needs them, and go when the last volume reading them is deleted.

What is measured is recorded: a VDI's physical-utilisation on a real pool is its volume's
allocation, except that a thick writable disk uses its whole size (as the model says, and as its
volume is made)."""

from __future__ import annotations

import dataclasses

from vmctl import drivers
from vmctl.drivers.base import Action, Hold, SrTarget, VolumeSpec, VolumeState
from vmctl.errors import VmctlError

SUPPORTED_SR_TYPES = ("ext", "file", "nfs")


def real_sr(txn, sr: dict) -> bool:
    return drivers.real(txn, sr["pool"])


# --- descriptions for the driver ------------------------------------------------------------------------
def sr_target(txn, sr: dict, host_uuid: str = "") -> SrTarget:
    """The SR as the driver sees it on a host: its PBD there gives the device-config (a shared
    SR's PBD made when a host joined has none of its own: the SR's other PBDs give it)."""
    pbds = sorted(
        txn.select("pbd", sr=sr["uuid"]),
        key=lambda p: (not p["device-config"], p["host"] != host_uuid, p["uuid"]),
    )
    config = pbds[0]["device-config"] if pbds else {}
    return SrTarget(
        uuid=sr["uuid"],
        name=sr["name-label"],
        type=sr["type"],
        shared=sr["shared"],
        path=config.get("path", ""),
        server=config.get("server", ""),
        serverpath=config.get("serverpath", ""),
    )


def new_location(vdi: dict, fmt: str) -> str:
    """The file of a new volume of its own: `<vdi-uuid>.qcow2` or `<vdi-uuid>.img`."""
    return f"{vdi['uuid']}.{'qcow2' if fmt == 'qcow2' else 'img'}"


def file_of(vdi: dict) -> str:
    """The VDI's file: its location, else (a disk from before locations) its own file's name."""
    return vdi["location"] or new_location(vdi, "qcow2" if vdi["provisioning"] == "thin" else "raw")


def volume_spec(
    txn, vdi: dict, target: SrTarget | None = None, parent: VolumeSpec | None = None
) -> VolumeSpec:
    """The VDI's volume. `parent` is given only for a new overlay (the file it reads through);
    an existing volume is found by its location alone."""
    sr = target or sr_target(txn, txn.get("sr", vdi["sr"]))
    return VolumeSpec(
        uuid=vdi["uuid"],
        name=vdi["name-label"],
        sr=sr,
        virtual_size=vdi["virtual-size"],
        provisioning=vdi["provisioning"],
        parent=parent,
        read_only=vdi["read-only"],
        location=vdi["location"],
    )


def _thick_writable(vdi: dict) -> bool:
    return vdi["provisioning"] != "thin" and not vdi["read-only"] and vdi["managed"]


def record_usage(txn, vdi_uuid: str, state: VolumeState | None) -> None:
    """physical-utilisation from the volume: its allocation (at most its virtual size); a thick
    writable disk keeps its whole size, which its volume has allocated."""
    d = txn.get("vdi", vdi_uuid)
    if d is None or state is None or _thick_writable(d):
        return
    used = min(state.allocation, d["virtual-size"])
    if used != d["physical-utilisation"]:
        txn.update("vdi", vdi_uuid, {"physical-utilisation": used})


# --- where a volume is handled ---------------------------------------------------------------------------
def _hosts_seeing(txn, sr_uuids: list[str]) -> list[dict]:
    """Live hosts with an attached PBD of every SR in sr_uuids: the pool master first, then by uuid."""
    seen = None
    for u in sr_uuids:
        hosts = {p["host"] for p in txn.select("pbd", sr=u) if p["currently-attached"]}
        seen = hosts if seen is None else seen & hosts
    rows = [h for h in (txn.get("host", u) for u in seen or ()) if h is not None and h["live"]]
    if not rows:
        return []
    master = (txn.get("pool", rows[0]["pool"]) or {}).get("master", "")
    return sorted(rows, key=lambda h: (h["uuid"] != master, h["uuid"]))


def volume_host(txn, sr: dict, other_sr: dict | None = None) -> dict:
    """The host that handles the SR's volumes (and, for a copy, sees other_sr too)."""
    srs = [sr["uuid"]] + (
        [other_sr["uuid"]] if other_sr is not None and other_sr["uuid"] != sr["uuid"] else []
    )
    hosts = _hosts_seeing(txn, srs)
    if hosts:
        return hosts[0]
    if len(srs) > 1:
        raise VmctlError(
            "SR_OPERATION_NOT_SUPPORTED",
            "No live host sees both SRs: copy the disk through a shared SR",
            [("sr", txn.ref("sr", other_sr))],
        )
    attached = [p for p in txn.select("pbd", sr=sr["uuid"]) if p["currently-attached"]]
    if not attached:
        raise VmctlError("SR_HAS_NO_PBDS", "The SR is not attached to any host", [("sr", txn.ref("sr", sr))])
    host = min(attached, key=lambda p: p["uuid"])["host"]
    raise VmctlError("HOST_OFFLINE", params=[("host", txn.ref("host", host))])


def _driver(txn, pool: str):
    return drivers.driver_for(txn, pool)


# --- SRs ----------------------------------------------------------------------------------------------------
def check_sr(txn, sr: dict, config: dict) -> None:
    """Before an SR of a real pool is made: a type libvirt serves, and what it needs to find it."""
    if not real_sr(txn, sr):
        return
    if sr["type"] not in SUPPORTED_SR_TYPES:
        raise VmctlError(
            "SR_OPERATION_NOT_SUPPORTED",
            f"A libvirt pool has SRs of type {', '.join(SUPPORTED_SR_TYPES)} ({sr['type']} is not one)",
            [("sr", sr["name-label"])],
        )
    need = ("server", "serverpath") if sr["type"] == "nfs" else ("path",)
    for key in need:
        if not config.get(key):
            raise VmctlError(
                "MISSING_PARAMETER",
                f"An SR of type {sr['type']} on a libvirt pool needs device-config:{key}=",
                [("name", f"device-config:{key}")],
            )


def attach_sr(txn, sr: dict, host_uuids: list[str]) -> None:
    """The SR's pool defined and started on each host (sr-create, pbd-plug); undone by removing
    it where this command made it."""
    if not real_sr(txn, sr):
        return
    driver = _driver(txn, sr["pool"])
    for u in sorted(host_uuids):
        host = txn.get("host", u)
        target, where = drivers.host_target(host), sr_target(txn, sr, u)
        made: list[bool] = []
        drivers.queue(
            txn,
            Action(
                what=f"attach SR {sr['name-label']}",
                host=host["name-label"],
                do=lambda d=driver, t=target, s=where, m=made: m.append(d.sr_attach(t, s)),
                undo=lambda d=driver, t=target, s=where, m=made: m and m[0] and d.sr_detach(t, s),
            ),
        )


def detach_sr(txn, sr: dict, host_uuids: list[str], last: bool = False) -> None:
    """The SR's pool stopped and undefined on each host (pbd-unplug, sr-forget, sr-destroy); its
    files stay. `last` for sr-destroy, after its volumes are deleted."""
    if not real_sr(txn, sr):
        return
    driver = _driver(txn, sr["pool"])
    for u in sorted(host_uuids):
        host = txn.get("host", u)
        target, where = drivers.host_target(host), sr_target(txn, sr, u)
        drivers.queue(
            txn,
            Action(
                what=f"detach SR {sr['name-label']}",
                host=host["name-label"],
                do=lambda d=driver, t=target, s=where: d.sr_detach(t, s),
                undo=None if last else (lambda d=driver, t=target, s=where: d.sr_attach(t, s)),
            ),
            last=last,
        )


# --- volumes --------------------------------------------------------------------------------------------------
def created(txn, vdi_uuid: str) -> None:
    """A new VDI (vdi-create, vm-disk-add, a suspend image): its volume, deleted if anything
    later fails."""
    vdi = txn.get("vdi", vdi_uuid)
    sr = txn.get("sr", vdi["sr"])
    if not real_sr(txn, sr):
        return
    host = volume_host(txn, sr)
    fmt = "qcow2" if vdi["provisioning"] == "thin" else "raw"
    vdi = txn.update("vdi", vdi_uuid, {"location": new_location(vdi, fmt)})
    spec = volume_spec(txn, vdi, sr_target(txn, sr, host["uuid"]))
    driver, target = _driver(txn, sr["pool"]), drivers.host_target(host)
    drivers.queue(
        txn,
        Action(
            what=f"create volume {spec.file_name} (VDI {vdi['name-label']})",
            host=host["name-label"],
            do=lambda: driver.volume_create(target, spec),
            undo=lambda: driver.volume_delete(target, spec, chain=False),
            then=lambda t, state: record_usage(t, vdi_uuid, state),
        ),
    )


def cloned(txn, source_uuid: str, base_uuid: str, clone_uuid: str, source_location: str) -> None:
    """After storage.clone_vdi: the base copy takes the source's file; the source and the clone
    get overlays on it. `source_location` is the source's file before the clone. A disk a
    running (or paused) VM writes moves to its overlay through its domain, with the VM's other
    disks of this command, in one live disk snapshot."""
    base = txn.get("vdi", base_uuid)
    sr = txn.get("sr", base["sr"])
    if not real_sr(txn, sr):
        return
    writer = _live_writer(txn, source_uuid)
    host = volume_host(txn, sr)
    where = sr_target(txn, sr, host["uuid"])
    source = txn.get("vdi", source_uuid)
    base = txn.update("vdi", base_uuid, {"location": source_location or file_of(source)})
    source = txn.update("vdi", source_uuid, {"location": f"{source_uuid}.{txn.new_uuid()[:8]}.qcow2"})
    clone = txn.update("vdi", clone_uuid, {"location": new_location(txn.get("vdi", clone_uuid), "qcow2")})
    parent = volume_spec(txn, base, where)
    driver, target = _driver(txn, sr["pool"]), drivers.host_target(host)

    def record(t, states, u: str) -> None:
        record_usage(t, u, states[0])
        record_usage(t, base_uuid, states[1])  # what the guest wrote before, now the base's

    for vdi, role in ((source, "overlay of"), (clone, "clone of")):
        if vdi is source and writer is not None:
            _live_switch(txn, writer, sr, base, source)
            continue
        spec = volume_spec(txn, vdi, where, parent=parent)
        drivers.queue(
            txn,
            Action(
                what=f"create volume {spec.file_name} ({role} VDI {source['name-label']})",
                host=host["name-label"],
                do=lambda s=spec: (driver.volume_create(target, s), driver.volume_state(target, parent)),
                undo=lambda s=spec: driver.volume_delete(target, s, chain=False),
                then=lambda t, states, u=vdi["uuid"]: record(t, states, u),
            ),
        )


def _live_writer(txn, vdi_uuid: str) -> dict | None:
    """The running or paused VM writing the disk, if any (its domain must switch files)."""
    writers = []
    for b in txn.select("vbd", vdi=vdi_uuid):
        vm = txn.get("vm", b["vm"])
        if vm is not None and vm["power-state"] in ("running", "paused") and b["mode"] == "RW":
            writers.append(vm)
    if len(writers) > 1:  # a sharable disk written by several domains cannot move under all of them
        raise VmctlError(
            "VDI_IN_USE",
            "Several running VMs write this disk: it is cloned once at most one of them runs",
            [("vdi", txn.ref("vdi", vdi_uuid)), ("operation", "clone")],
        )
    return writers[0] if writers else None


class _LiveSnapshot:
    """The disks of one running VM that this transaction moves to overlays, in one step."""

    def __init__(self) -> None:
        self.pairs: list[tuple[VolumeSpec, VolumeSpec]] = []
        self.uuids: list[str] = []


def _live_switch(txn, vm: dict, sr: dict, base: dict, source: dict) -> None:
    """Join the VM's live disk snapshot (queued once per VM, when its first disk joins). It runs
    with the destroys, after every action that can be undone: a domain switched to new files is
    not switched back."""
    key = (_LiveSnapshot, vm["uuid"])
    group = txn.cache.get(key)
    host = txn.get("host", vm["resident-on"])
    where = sr_target(txn, sr, host["uuid"])
    if group is None:
        group = txn.cache[key] = _LiveSnapshot()
        driver, target = _driver(txn, vm["pool"]), drivers.host_target(host)

        def record(t, states) -> None:
            for u, state in zip(group.uuids, states):
                record_usage(t, u, state)

        drivers.queue(
            txn,
            Action(
                what=f"switch the disks of VM {vm['name-label']} to new overlays",
                host=host["name-label"],
                do=lambda: driver.volume_snapshot_live(target, vm["uuid"], group.pairs),
                then=record,
            ),
            last=True,
        )
    parent = volume_spec(txn, base, where)
    group.pairs.append((parent, volume_spec(txn, source, where, parent=parent)))
    group.uuids.append(source["uuid"])


def copied(
    txn,
    source_uuid: str,
    copy_uuid: str,
    quiet: bool = False,
    vms: tuple[str, ...] = (),
    replaces: str = "",
) -> None:
    """A full copy (vdi-copy, vm-copy, a checkpoint's memory image on revert): a long action
    run without the inventory lock, the source, the copy (and `vms`) held meanwhile; the copy is
    removed if it fails or is interrupted. `replaces`: the file the copy takes over (vdi-copy
    into an existing disk), deleted once the copy is done."""
    source, copy = txn.get("vdi", source_uuid), txn.get("vdi", copy_uuid)
    src_sr, dst_sr = txn.get("sr", source["sr"]), txn.get("sr", copy["sr"])
    if not real_sr(txn, dst_sr):
        return
    host = volume_host(txn, dst_sr, src_sr)
    fmt = "qcow2" if copy["provisioning"] == "thin" else "raw"
    location = new_location(copy, fmt)
    if replaces:  # a new file beside the one it replaces
        location = f"{copy_uuid}.{txn.new_uuid()[:8]}.{location.rsplit('.', 1)[1]}"
    copy = txn.update("vdi", copy_uuid, {"location": location})
    src_spec = volume_spec(txn, source, sr_target(txn, src_sr, host["uuid"]))
    dst_spec = volume_spec(txn, copy, sr_target(txn, dst_sr, host["uuid"]))
    driver, target = _driver(txn, dst_sr["pool"]), drivers.host_target(host)
    label = f"copying {source['name-label'] or source_uuid} to {dst_sr['name-label']}"

    def do() -> VolumeState:
        from vmctl import progress

        shown = progress.bar(label, quiet)
        try:
            return driver.volume_copy(target, src_spec, dst_spec, shown)
        finally:
            if shown is not None:
                shown.end()

    holds = [Hold("vdi", source_uuid, "copy"), Hold("vdi", copy_uuid, "copy")]
    holds += [Hold("vm", u, "copy") for u in vms]
    drivers.queue(
        txn,
        Action(
            what=f"copy volume {src_spec.file_name} to {dst_spec.file_name}",
            host=host["name-label"],
            do=do,
            undo=lambda: driver.volume_delete(target, dst_spec, chain=False),
            then=lambda t, state: record_usage(t, copy_uuid, state),
            long=True,
            holds=holds,
        ),
    )
    if replaces:
        old = dataclasses.replace(dst_spec, location=replaces)
        drivers.queue(
            txn,
            Action(
                what=f"delete volume {replaces} (VDI {copy['name-label']})",
                host=host["name-label"],
                do=lambda: driver.volume_delete(target, old),
            ),
            last=True,
        )


def resized(txn, vdi_uuid: str, size: int, holder: dict | None) -> None:
    """vdi-resize: the volume grows (live, through its domain, when `holder` runs it). Growing
    cannot be undone; it is the only action of its command."""
    vdi = txn.get("vdi", vdi_uuid)
    sr = txn.get("sr", vdi["sr"])
    if not real_sr(txn, sr):
        return
    if holder is not None and holder["power-state"] in ("running", "paused"):
        host = txn.get("host", holder["resident-on"])
        domain = holder["uuid"]
    else:
        host, domain = volume_host(txn, sr), None
    spec = volume_spec(txn, vdi, sr_target(txn, sr, host["uuid"]))
    driver, target = _driver(txn, sr["pool"]), drivers.host_target(host)
    drivers.queue(
        txn,
        Action(
            what=f"resize volume {spec.file_name} (VDI {vdi['name-label']})",
            host=host["name-label"],
            do=lambda: driver.volume_resize(target, spec, size, domain),
            then=lambda t, state: record_usage(t, vdi_uuid, state),
        ),
    )


def destroyed(txn, vdi: dict) -> None:
    """A VDI about to leave the inventory with its data (vdi-destroy, vm-destroy's disks, a
    suspend image, sr-destroy): its volume is deleted after every other action of the command,
    since it cannot be undone. Called before the record goes."""
    sr = txn.get("sr", vdi["sr"])
    if sr is None or not real_sr(txn, sr):
        return
    host = volume_host(txn, sr)
    spec = volume_spec(txn, vdi, sr_target(txn, sr, host["uuid"]))
    driver, target = _driver(txn, sr["pool"]), drivers.host_target(host)
    drivers.queue(
        txn,
        Action(
            what=f"delete volume {spec.file_name} (VDI {vdi['name-label']})",
            host=host["name-label"],
            do=lambda: driver.volume_delete(target, spec),
        ),
        last=True,
    )


def scanned(txn, sr: dict) -> None:
    """sr-scan: every disk's physical-utilisation read back from its volume (what the guests
    wrote since), in one pass over the SR's pool."""
    if not real_sr(txn, sr):
        return
    host = volume_host(txn, sr)
    where = sr_target(txn, sr, host["uuid"])
    driver, target = _driver(txn, sr["pool"]), drivers.host_target(host)

    def record(t, found: dict[str, VolumeState]) -> None:
        for d in t.select("vdi", sr=sr["uuid"]):
            record_usage(t, d["uuid"], found.get(file_of(d)))

    drivers.queue(
        txn,
        Action(
            what=f"scan SR {sr['name-label']}",
            host=host["name-label"],
            do=lambda: driver.volumes(target, where),
            then=record,
        ),
    )
