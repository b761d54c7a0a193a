"""What a driver is told and what it answers (drivers.md §3): plain descriptions of hosts,
storage, volumes and domains, built by the service layer from the inventory's records, and the
interface every real driver implements.

A driver never reads the inventory and never decides: the service layer has already checked
and placed everything, and hands the driver exactly what to do on which host. Command code
never sees a driver (architecture.md §1); the sim driver has none at all, because for it the
inventory is the world.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class HostTarget:
    """One host as a driver reaches it."""

    uuid: str
    name: str
    address: str
    uri: str  # libvirt URI
    ovsdb: str  # Open vSwitch database remote


@dataclass(frozen=True)
class HostFacts:
    """The hardware a host reports about itself (host-add on a real pool)."""

    cpu_vendor: str
    cpu_model: str
    cpu_family: int
    cpu_flags: tuple[str, ...]
    cpu_count: int
    memory_total: int  # bytes
    software_version: str  # the hypervisor's version, dotted
    cpu_xml: str = ""  # the host CPU description, for CPU comparison


@dataclass(frozen=True)
class SrTarget:
    """A storage repository as it exists on one host (a libvirt storage pool)."""

    uuid: str
    name: str
    type: str  # ext | file | nfs | lvm | iscsi
    shared: bool
    path: str = ""  # device-config:path (ext, file)
    server: str = ""  # device-config:server (nfs)
    serverpath: str = ""  # device-config:serverpath (nfs)


@dataclass(frozen=True)
class VolumeSpec:
    """One VDI as a volume: thin VDIs are qcow2 (overlays on their parent's volume), thick ones raw.

    A new volume is the file `<vdi-uuid>.qcow2` or `<vdi-uuid>.img`; `location` names the file
    once the VDI has one of its own (a clone hands the VDI's old file to the new base copy and
    gives the VDI a new overlay file: the VDI record's `location`)."""

    uuid: str
    name: str
    sr: SrTarget
    virtual_size: int
    provisioning: str  # thin | thick-lazy | thick-eager
    parent: VolumeSpec | None = None  # the read-only base this volume overlays
    read_only: bool = False
    location: str = ""

    @property
    def format(self) -> str:
        if self.location:
            return "qcow2" if self.location.endswith(".qcow2") else "raw"
        return "qcow2" if self.provisioning == "thin" or self.parent is not None else "raw"

    @property
    def file_name(self) -> str:
        return self.location or f"{self.uuid}.{'qcow2' if self.format == 'qcow2' else 'img'}"


@dataclass(frozen=True)
class DiskSpec:
    volume: VolumeSpec
    device: int  # the VBD's userdevice: disks appear in this order
    mode: str = "rw"  # rw | ro
    cd: bool = False


@dataclass(frozen=True)
class NicSpec:
    mac: str
    bridge: str  # the network's bridge on the host (the real parent of a VLAN network's bridge)
    device: int
    openvswitch: bool = True
    interface_id: str = ""  # the VIF's uuid: the Open vSwitch interface's external_ids:iface-id
    vlan: int | None = None  # the port's tag (a VIF on a VLAN network)


@dataclass(frozen=True)
class DomainSpec:
    """A VM as a domain: name = VM uuid, title = name-label (drivers.md §3)."""

    uuid: str
    title: str
    memory: int  # bytes: static-max
    current_memory: int  # bytes: dynamic-max
    vcpus: int
    disks: tuple[DiskSpec, ...] = ()
    nics: tuple[NicSpec, ...] = ()
    emulated: bool = False  # software emulation (no KVM), e.g. other-config:emulation=tcg
    # direct kernel boot (other-config:kernel, initrd, kernel-args): files on the host; "" = firmware
    kernel: str = ""
    initrd: str = ""
    kernel_args: str = ""


@dataclass(frozen=True)
class VolumeState:
    capacity: int
    allocation: int


Progress = Callable[[int, int], None]  # (done bytes, total bytes)

# A host's Open vSwitch rows as the inventory keeps them (vmctl/ovs/session.py records()): per
# table (bridge, port, interface, controller) a list of rows, each with `uuid` and its columns.
SwitchRows = dict[str, list[dict]]
# Set when Ctrl-C came while long actions run in worker threads (the migrations of a wave, which
# run at once): Ctrl-C reaches only the main thread, so an action that can stop looks at this
# instead (a live migration aborts its job and raises KeyboardInterrupt, the guest on its source).
cancel_requested = threading.Event()


class Driver(Protocol):
    """The operations a real driver performs. Each one either completes or raises DriverFault,
    leaving the host as it was where it can (a volume half-written is removed)."""

    name: str

    # hosts
    def close(self) -> None: ...  # let go of every host connection
    def probe(self, host: HostTarget) -> HostFacts: ...
    def cpu_compatible(self, host: HostTarget, cpu_xml: str) -> bool: ...

    # storage
    def sr_attach(self, host: HostTarget, sr: SrTarget) -> bool: ...  # True: it defined or started it
    def sr_detach(self, host: HostTarget, sr: SrTarget) -> None: ...
    def volume_create(self, host: HostTarget, vol: VolumeSpec) -> VolumeState: ...
    def volume_resize(
        self, host: HostTarget, vol: VolumeSpec, size: int, domain: str | None
    ) -> VolumeState: ...
    def volume_copy(
        self, host: HostTarget, src: VolumeSpec, dst: VolumeSpec, progress: Progress | None
    ) -> VolumeState: ...
    # chain: also delete the files up its backing chain that no volume reads any more (a destroy);
    # False deletes that file only (undoing a new overlay leaves its base alone)
    def volume_delete(self, host: HostTarget, vol: VolumeSpec, chain: bool = True) -> None: ...
    # a running domain's disks switch, all at once, to new overlays on the files they wrote
    # (each pair: the base, that file; the overlay, with the base as parent); the overlays' states
    def volume_snapshot_live(
        self, host: HostTarget, domain: str, pairs: list[tuple[VolumeSpec, VolumeSpec]]
    ) -> list[VolumeState]: ...
    def volume_state(self, host: HostTarget, vol: VolumeSpec) -> VolumeState | None: ...
    def volumes(self, host: HostTarget, sr: SrTarget) -> dict[str, VolumeState]: ...

    # compute
    def domain_start(self, host: HostTarget, dom: DomainSpec, paused: bool) -> None: ...
    def domain_shutdown(self, host: HostTarget, uuid: str, timeout: float) -> None: ...
    def domain_destroy(self, host: HostTarget, uuid: str) -> None: ...
    def domain_reboot(self, host: HostTarget, uuid: str) -> None: ...
    def domain_pause(self, host: HostTarget, uuid: str) -> None: ...
    def domain_unpause(self, host: HostTarget, uuid: str) -> None: ...
    def domain_save(self, host: HostTarget, uuid: str, image: VolumeSpec) -> None: ...
    def domain_restore(self, host: HostTarget, dom: DomainSpec, image: VolumeSpec, paused: bool) -> None: ...
    def domain_undefine(self, host: HostTarget, uuid: str) -> None: ...
    def domains(self, host: HostTarget) -> dict[str, str]: ...  # uuid -> power state

    # network: the host's Open vSwitch, through its OVSDB remote (HostTarget.ovsdb)
    def switch_rows(self, host: HostTarget) -> SwitchRows: ...
    # one transaction on the host: its rows go from `before` to `after` (rows named by uuid)
    def switch_change(self, host: HostTarget, before: SwitchRows, after: SwitchRows) -> None: ...
    # migration: the domain moves live from src to dst; Ctrl-C aborts it (KeyboardInterrupt, the
    # guest still running on src)
    def domain_migrate(
        self, src: HostTarget, dst: HostTarget, spec: MigrationSpec, progress: Progress | None
    ) -> MigrationFigures: ...


class DriverFault(Exception):
    """A driver operation failed on a host: `message` is the hypervisor's own words."""

    def __init__(self, message: str, code: str = "DRIVER_ERROR", host: str = "", **params: object):
        super().__init__(message)
        self.message = message
        self.code = code
        self.host = host
        self.params = params


@dataclass
class Hold:
    """An object a long operation holds until it ends: (class, uuid, XAPI operation name)."""

    cls: str
    uuid: str
    operation: str


@dataclass
class Action:
    """One change to the world, queued by the service layer while the transaction decides.

    `do` acts and returns a result; `then(txn, result)` records what was measured (a volume's
    real size) in the transaction that commits the outcome (the deciding one for a short action,
    the closing one for a long action: look records up by uuid there); `undo` puts the host back after a later failure. A
    `long` action (a copy, a shutdown that waits for the guest) runs without the inventory lock,
    the objects in `holds` marked busy meanwhile (drivers.md §4)."""

    what: str  # "create volume d1 on lab1": named in errors and in the task
    host: str  # the host's name-label
    do: Callable[[], object]
    undo: Callable[[], None] | None = None
    then: Callable[[object, object], None] | None = None
    long: bool = False
    holds: list[Hold] = field(default_factory=list)
    # what cannot be undone once done (a finished live migration): it runs after every other
    # action of its transaction, so that nothing that can still fail comes after it
    final: bool = False


# --- live migration (drivers.md §3) -------------------------------------------------------------------
@dataclass(frozen=True)
class MigrationSpec:
    """One live migration as the engine decided it: the domain, and the engine's parameters."""

    uuid: str  # the domain (the VM's uuid)
    title: str  # the VM's name-label, for messages
    bandwidth: float  # bytes/s the memory stream may use (the engine's rate); 0: no limit
    downtime: float  # seconds: the downtime target
    uri: str = ""  # the migration stream's URI (tcp://ADDRESS); empty: the destination's own choice
    # storage motion: each pair a disk's volume as the source reads it and the new volume (made
    # on the destination beforehand) its data is copied into during the migration
    disks: tuple[tuple[VolumeSpec, VolumeSpec], ...] = ()


@dataclass(frozen=True)
class MigrationFigures:
    """What a finished migration measured (libvirt's completed-job statistics)."""

    total_time: float  # seconds from the start of the job to its end
    downtime: float | None  # seconds the guest was paused (None: the hypervisor does not say)
    bytes: int  # bytes sent over the stream
    memory: int  # bytes of guest memory the job covered
    rounds: int  # pre-copy iterations
    rate: float  # bytes/s at the end of the job
    wall_time: float  # seconds vmctl waited for the migration, connection set-up included
    storage_bytes: int = 0  # bytes of disk copied (storage motion)

    def as_dict(self) -> dict:
        return {
            "total-time": self.total_time,
            "downtime": self.downtime,
            "bytes": self.bytes,
            "memory": self.memory,
            "rounds": self.rounds,
            "rate": self.rate,
            "wall-time": self.wall_time,
            "storage-bytes": self.storage_bytes,
        }
