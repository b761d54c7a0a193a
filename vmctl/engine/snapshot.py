"""The engine's in-memory, database-free model of one pool (engine.md §1).

Every engine function (placement, HA, migration, evacuation, rebalancing) takes a
:class:`PoolState`. The command layer builds one inside its transaction from the inventory; the
benchmark builds one from a trace. Nothing here touches the store, the clock or a global RNG.

Conventions
-----------
* Units are bytes, vCPUs, bytes/s and seconds (engine.md §0).
* :class:`HostState`, :class:`VMState`, :class:`GroupState`, :class:`SRState` and
  :class:`NetworkState` are frozen values. A change is made by replacing the value in the pool's
  dict (``dataclasses.replace``) through the :class:`PoolState` mutators, which keep the derived
  per-host loads up to date incrementally. Because the values are immutable, :meth:`PoolState.copy`
  only copies the dicts (pointers), so a scratch copy for a dry run, an HA failure set or a what-if
  costs O(objects) pointer copies and no deep copy.
* Dict order is never relied on for a decision: whenever an order matters the engine sorts by uuid
  (or by an explicit key). :meth:`PoolState.host_uuids` gives the canonical host order.
"""

from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass, field, fields, replace

# Power states (model.md §2). Running and paused VMs hold resources on their resident host.
RUNNING = "running"
PAUSED = "paused"
HALTED = "halted"
SUSPENDED = "suspended"
HOLDING_STATES = frozenset((RUNNING, PAUSED))

# Pool policies.
POLICIES = ("pack", "spread", "balanced")
MEMORY_POLICIES = ("none", "dynamic")

# HA restart priorities (engine.md §3.1).
RESTART = "restart"
BEST_EFFORT = "best-effort"
NO_RESTART = "no-restart"


@dataclass(frozen=True, slots=True)
class HostState:
    """One host as the engine sees it (engine.md §1, model.md §1.2).

    uuid, name: identity; name is the host's name-label, used only in messages and reports.
    live: the host is up (false after host-fail / host-declare-dead).
    enabled: the host accepts new VMs (false after host-disable).
    evacuating: ``current-operations`` holds ``evacuate`` (filter 3).
    cpu_count: logical CPUs (``cpu-count``).
    cpu_vendor, cpu_flags: for the cpu filter (live migration, resume) and CPU levelling.
    software_version: ``software-version`` parsed to a tuple of ints, compared numerically (filter 5).
    memory_total, memory_overhead: bytes; ``memory_reserved`` is ``other-config:memory-reserved`` [0].
    vcpu_ratio: the host's ``other-config:vcpu-allocation-ratio``, or None for the pool's ratio.
    srs: uuids of the SRs with a currently-attached PBD on this host (filter 6).
    networks: uuids of the networks available on this host (model.md §1.8; filter 7).
    pif_speeds: (network uuid, speed in Mbit/s or None when unknown) per PIF, sorted by network uuid;
        used for the migration link rate (engine.md §4.3).
    is_master: this host is the pool master (master penalty, engine.md §2.2).
    other_config: the host's remaining other-config keys, as (key, value) pairs sorted by key.
    cpu_compatible: on a real pool, whether the host can run the pool master's CPU (the driver's
        CPU comparison when it joined): the cpu filter then asks only this, since a guest's CPU
        there is the hypervisor's default model, not the host's flags; None: vendor and flags.
    """

    uuid: str
    name: str = ""
    live: bool = True
    enabled: bool = True
    evacuating: bool = False
    cpu_count: int = 1
    cpu_vendor: str = "GenuineIntel"
    cpu_flags: frozenset[str] = frozenset()
    software_version: tuple[int, ...] = (1, 0, 0)
    memory_total: int = 0
    memory_overhead: int = 0
    memory_reserved: int = 0
    vcpu_ratio: float | None = None
    srs: frozenset[str] = frozenset()
    networks: frozenset[str] = frozenset()
    pif_speeds: tuple[tuple[str, int | None], ...] = ()
    is_master: bool = False
    other_config: tuple[tuple[str, str], ...] = ()
    cpu_compatible: bool | None = None

    @property
    def memory_capacity(self) -> int:
        """``A_h = memory-total − memory-overhead − other-config:memory-reserved`` (engine.md §1)."""
        return self.memory_total - self.memory_overhead - self.memory_reserved

    def vcpu_capacity(self, pool_ratio: float) -> int:
        """``V_h = floor(cpu-count × ρ_h)``, ρ_h the host's ratio, else the pool's."""
        ratio = self.vcpu_ratio if self.vcpu_ratio is not None else pool_ratio
        # A tiny epsilon keeps e.g. 3 × (1/3)-style float products from flooring one short.
        return int(self.cpu_count * ratio + 1e-9)

    def pif_speed(self, network: str) -> int | None:
        """Speed in Mbit/s of this host's PIF on ``network``; None when unknown or absent."""
        for net, speed in self.pif_speeds:
            if net == network:
                return speed
        return None

    def has_pif(self, network: str) -> bool:
        return any(net == network for net, _ in self.pif_speeds)


@dataclass(frozen=True, slots=True)
class VDIState:
    """One VDI a VM uses, for storage motion (engine.md §4.2) and HA agility (§3.1)."""

    uuid: str
    sr: str
    virtual_size: int = 0
    physical_utilisation: int = 0


@dataclass(frozen=True, slots=True)
class VMState:
    """One VM as the engine sees it (engine.md §1, model.md §1.3).

    uuid, name: identity (name = name-label, for reports).
    power_state: ``running``, ``paused``, ``halted`` or ``suspended``.
    resident_on: host uuid while running or paused, else None.
    scheduled_on: ``scheduled-to-be-resident-on``: the target of a start or migration in flight, else
        None. A running VM with both fields set is migrating and counts on both hosts (engine.md §1).
    affinity: preferred host uuid, or None.
    vcpus: ``c(v)``.
    memory_static_min ≤ memory_dynamic_min ≤ memory_dynamic_max ≤ memory_static_max: bytes.
    memory_overhead: bytes (model.md §1.3 formula, computed by the caller).
    memory_reservation: bytes (vSphere-style guarantee).
    last_boot_cpu_vendor, last_boot_cpu_flags: recorded at the last boot (cpu filter, engine.md §1).
    groups: uuids of the VM groups it belongs to, sorted.
    ha_restart_priority: ``restart``, ``best-effort`` or ``no-restart``.
    order: batch and restart order [0].
    immobile: not to be live-migrated: ``platform:nomigrate`` or ``platform:nested-virt`` true (or
        1), or ``pool_migrate`` in its ``blocked-operations``.
    dirty_rate: ``other-config:dirty-rate`` in bytes/s, or None for the pool's default.
    srs: uuids of the SRs holding the VM's VDIs (empty CD drives excluded) and its suspend VDI.
    networks: uuids of the networks of its VIFs.
    vdis: the VDIs behind its VBDs (and suspend VDI), with sizes, sorted by uuid; storage motion.
    """

    uuid: str
    name: str = ""
    power_state: str = HALTED
    resident_on: str | None = None
    scheduled_on: str | None = None
    affinity: str | None = None
    vcpus: int = 1
    memory_static_min: int = 0
    memory_dynamic_min: int = 0
    memory_dynamic_max: int = 0
    memory_static_max: int = 0
    memory_overhead: int = 0
    memory_reservation: int = 0
    last_boot_cpu_vendor: str = ""
    last_boot_cpu_flags: frozenset[str] = frozenset()
    groups: tuple[str, ...] = ()
    ha_restart_priority: str = NO_RESTART
    order: int = 0
    immobile: bool = False
    dirty_rate: int | None = None
    srs: frozenset[str] = frozenset()
    networks: frozenset[str] = frozenset()
    vdis: tuple[VDIState, ...] = ()

    # ---- memory demand (engine.md §1) -------------------------------------------------------
    @property
    def m_st(self) -> int:
        """static-max + overhead: the full boot size (HA planning, tier 0)."""
        return self.memory_static_max + self.memory_overhead

    @property
    def m_max(self) -> int:
        """dynamic-max + overhead (tier 1, the balloon ceiling)."""
        return self.memory_dynamic_max + self.memory_overhead

    @property
    def m_min(self) -> int:
        """max(dynamic-min, reservation) + overhead: the hard need under ``dynamic``."""
        return max(self.memory_dynamic_min, self.memory_reservation) + self.memory_overhead

    def m(self, memory_policy: str) -> int:
        """``m(v)``: the charge checked by the memory filter under the pool's policy."""
        return self.m_st if memory_policy == "none" else self.m_min

    @property
    def holds_resources(self) -> bool:
        """Running or paused with a resident host."""
        return self.power_state in HOLDING_STATES and self.resident_on is not None

    @property
    def protected(self) -> bool:
        """HA-protected: running or paused with priority ``restart`` (engine.md §3.1)."""
        return self.holds_resources and self.ha_restart_priority == RESTART

    def load_hosts(self) -> tuple[str, ...]:
        """Hosts this VM loads (engine.md §1): its resident host while running or paused, and its
        scheduled host (a start or migration in flight), each once."""
        res = self.resident_on if self.power_state in HOLDING_STATES else None
        sch = self.scheduled_on
        if res is None:
            return (sch,) if sch is not None else ()
        if sch is None or sch == res:
            return (res,)
        return (res, sch)


_VM_FIELDS = tuple(f.name for f in fields(VMState))
_VM_POS = {name: i for i, name in enumerate(_VM_FIELDS)}
_vm_values = operator.attrgetter(*_VM_FIELDS)


def evolve_vm(vm: VMState, **changes: object) -> VMState:
    """``dataclasses.replace`` for VMState, several times faster (hot path of every placement)."""
    vals = list(_vm_values(vm))
    for k, v in changes.items():
        vals[_VM_POS[k]] = v
    return VMState(*vals)


@dataclass(frozen=True, slots=True)
class GroupState:
    """A VM group (model.md §1.4). placement: ``normal`` | ``affinity`` | ``anti-affinity``."""

    uuid: str
    name: str = ""
    placement: str = "normal"
    strict: bool = False


@dataclass(frozen=True, slots=True)
class SRState:
    """An SR (model.md §1.5): ``shared``, the hosts with a currently-attached PBD, sizes."""

    uuid: str
    name: str = ""
    shared: bool = False
    hosts: frozenset[str] = frozenset()
    physical_size: int = 0
    physical_utilisation: int = 0


@dataclass(frozen=True, slots=True)
class NetworkState:
    """A network: ``migration_bandwidth`` is ``other-config:migration-bandwidth`` (bytes/s) or None;
    ``management`` marks the management network (the default migration network, engine.md §4.3)."""

    uuid: str
    name: str = ""
    migration_bandwidth: int | None = None
    management: bool = False


class HostLoad:
    """Derived load of one host (engine.md §1): sums over the VMs counted on it.

    mem: Σ m(v) under the pool's memory policy; mem_min, mem_max, mem_st: Σ m_min, m_max, m_st;
    vcpus: Σ c(v); count: number of VMs counted; prot_*: the same for protected VMs resident here
    (HA, engine.md §3).
    """

    __slots__ = (
        "mem",
        "mem_min",
        "mem_max",
        "mem_st",
        "vcpus",
        "count",
        "prot_mem_st",
        "prot_vcpus",
        "prot_count",
    )

    def __init__(self) -> None:
        self.mem = self.mem_min = self.mem_max = self.mem_st = 0
        self.vcpus = self.count = 0
        self.prot_mem_st = self.prot_vcpus = self.prot_count = 0

    def copy(self) -> HostLoad:
        other = HostLoad.__new__(HostLoad)
        other.mem, other.mem_min, other.mem_max, other.mem_st = (
            self.mem,
            self.mem_min,
            self.mem_max,
            self.mem_st,
        )
        other.vcpus, other.count = self.vcpus, self.count
        other.prot_mem_st, other.prot_vcpus, other.prot_count = (
            self.prot_mem_st,
            self.prot_vcpus,
            self.prot_count,
        )
        return other

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (
            f"HostLoad(mem={self.mem}, mem_min={self.mem_min}, mem_max={self.mem_max}, "
            f"mem_st={self.mem_st}, vcpus={self.vcpus}, count={self.count})"
        )


@dataclass(slots=True)
class PoolState:
    """One pool: settings, hosts, VMs, groups, SRs and networks, plus derived per-host loads.

    Settings (engine.md §1, model.md §1.1; defaults in brackets):
    uuid, name: identity. master: uuid of the master host or None.
    policy: ``placement-policy`` [balanced]. seed: ``placement-seed`` [0].
    memory_policy: ``memory-overcommit-policy`` [none]. vcpu_ratio: ``vcpu-allocation-ratio`` [4.0].
    master_bias: [true]. cpu_levelling: ``other-config:cpu-levelling`` [true].
    ha_enabled, ha_failures_to_tolerate [1], ha_allow_overcommit [false], ha_overcommitted [false],
    ha_plan_exact_limit [200000], ha_plan_exists_for [0].
    migration_network: network uuid or None (management network). migration_downtime: seconds [0.3].
    migration_stream_bandwidth: bytes/s [128 MiB/s]. default_dirty_rate: bytes/s [32 MiB/s].
    rebalance_policy: [spread].
    other_config: tuning knobs (``placement-skew-weight``, ``placement-group-weight``,
        ``placement-master-penalty``, ``migration-*``, ``rebalance-*``, ``pack-max-load``...), read
        with :meth:`knob`.
    hosts, vms, groups, srs, networks: uuid → value. Mutate through the methods below so the
    derived loads stay right.

    A *partial* snapshot (``partial``, made by :meth:`set_counted_loads`) holds every host, SR,
    network and group but only the VMs a placement decides about: its per-host loads and group
    counts were summed by the inventory over all the pool's VMs instead of derived from ``vms``.
    Placement (a scheduler over the hosts' loads, deciding for VMs it holds) reads nothing else,
    so it decides on a partial snapshot exactly as on the full one; what needs every VM (HA
    planning, evacuation, rebalancing, ``vms_on``) refuses one.
    """

    uuid: str
    name: str = ""
    master: str | None = None
    policy: str = "balanced"
    seed: int = 0
    memory_policy: str = "none"
    vcpu_ratio: float = 4.0
    master_bias: bool = True
    cpu_levelling: bool = True
    ha_enabled: bool = False
    ha_failures_to_tolerate: int = 1
    ha_allow_overcommit: bool = False
    ha_overcommitted: bool = False
    ha_plan_exact_limit: int = 200000
    ha_plan_exists_for: int = 0
    migration_network: str | None = None
    migration_downtime: float = 0.3
    migration_stream_bandwidth: int = 128 * 1024 * 1024
    default_dirty_rate: int = 32 * 1024 * 1024
    rebalance_policy: str = "spread"
    other_config: dict[str, str] = field(default_factory=dict)
    hosts: dict[str, HostState] = field(default_factory=dict)
    vms: dict[str, VMState] = field(default_factory=dict)
    groups: dict[str, GroupState] = field(default_factory=dict)
    srs: dict[str, SRState] = field(default_factory=dict)
    networks: dict[str, NetworkState] = field(default_factory=dict)
    # Derived, built lazily by _ensure_derived(); None means "stale, rebuild".
    _loads: dict[str, HostLoad] | None = field(default=None, repr=False, compare=False)
    # group uuid -> host uuid -> number of the group's members counted on that host.
    _group_hosts: dict[str, dict[str, int]] | None = field(default=None, repr=False, compare=False)
    # Copy-on-write of the loads: after copy() both states share their HostLoad objects, and a
    # state copies one before changing it; None means this state owns them all.
    _owned: set[str] | None = field(default=None, repr=False, compare=False)
    # True once the loads were given rather than derived (see the class docstring).
    partial: bool = field(default=False, compare=False)

    # ---- construction helpers --------------------------------------------------------------
    def add_host(self, host: HostState) -> None:
        self.hosts[host.uuid] = host
        if host.is_master:
            self.master = host.uuid
        if self._loads is not None:
            self._loads.setdefault(host.uuid, HostLoad())

    def add_vm(self, vm: VMState) -> None:
        if vm.uuid in self.vms:
            self._unload(self.vms[vm.uuid])
        self.vms[vm.uuid] = vm
        self._load(vm)

    def add_group(self, group: GroupState) -> None:
        self.groups[group.uuid] = group

    def add_sr(self, sr: SRState) -> None:
        self.srs[sr.uuid] = sr

    def add_network(self, net: NetworkState) -> None:
        self.networks[net.uuid] = net

    # ---- settings ---------------------------------------------------------------------------
    def knob(self, key: str, default: float) -> float:
        """A numeric ``other-config`` tuning knob, ``default`` when absent or unparsable."""
        raw = self.other_config.get(key)
        if raw is None:
            return default
        try:
            return float(raw)
        except (TypeError, ValueError):
            return default

    @property
    def admission_control(self) -> bool:
        """HA admission (placement filter 11, engine.md §3.4) applies: HA enabled, overcommit
        neither allowed nor already the case."""
        return self.ha_enabled and not self.ha_allow_overcommit and not self.ha_overcommitted

    # ---- canonical orders -------------------------------------------------------------------
    def host_uuids(self) -> list[str]:
        """All host uuids, sorted: the canonical order (never dict order)."""
        return sorted(self.hosts)

    def usable_hosts(self) -> list[HostState]:
        """Live, enabled hosts, sorted by uuid."""
        return [self.hosts[u] for u in sorted(self.hosts) if self.hosts[u].live and self.hosts[u].enabled]

    def vms_on(self, host: str) -> list[VMState]:
        """VMs counted on ``host`` (resident running/paused, or scheduled there), sorted by uuid."""
        self._require_every_vm("vms_on")
        return sorted((v for v in self.vms.values() if host in v.load_hosts()), key=lambda v: v.uuid)

    def resident_vms(self, host: str) -> list[VMState]:
        """Running or paused VMs resident on ``host``, sorted by uuid."""
        self._require_every_vm("resident_vms")
        return sorted(
            (v for v in self.vms.values() if v.holds_resources and v.resident_on == host),
            key=lambda v: v.uuid,
        )

    # ---- capacity and loads (engine.md §1) --------------------------------------------------
    def mem_capacity(self, host: str) -> int:
        return self.hosts[host].memory_capacity

    def vcpu_capacity(self, host: str) -> int:
        return self.hosts[host].vcpu_capacity(self.vcpu_ratio)

    def m(self, vm: VMState) -> int:
        """``m(v)`` under this pool's memory policy."""
        return vm.m(self.memory_policy)

    def loads(self) -> dict[str, HostLoad]:
        """host uuid → :class:`HostLoad` (every host present). Do not mutate the result."""
        self._ensure_derived()
        assert self._loads is not None
        return self._loads

    def load(self, host: str) -> HostLoad:
        return self.loads()[host]

    def free_memory(self, host: str) -> int:
        """Capacity minus Σ m(load) under the pool policy (memory-free, model.md §3.9)."""
        return self.mem_capacity(host) - self.load(host).mem

    def free_vcpus(self, host: str) -> int:
        return self.vcpu_capacity(host) - self.load(host).vcpus

    def group_hosts(self, group: str) -> dict[str, int]:
        """host uuid → number of the group's members counted there (running, paused or in flight).
        Do not mutate the result."""
        self._ensure_derived()
        assert self._group_hosts is not None
        if self.partial and group not in self._group_hosts:
            raise KeyError(f"the partial snapshot has no counts of group {group}")
        return self._group_hosts.get(group, {})

    def has_group_counts(self, group: str) -> bool:
        """Whether :meth:`group_hosts` knows ``group`` (always, unless the snapshot is partial)."""
        return not self.partial or (self._group_hosts is not None and group in self._group_hosts)

    def group_members(self, group: str) -> list[VMState]:
        """All VMs of a group (any power state), sorted by uuid."""
        self._require_every_vm("group_members")
        return sorted((v for v in self.vms.values() if group in v.groups), key=lambda v: v.uuid)

    def invalidate(self) -> None:
        """Forget derived data; call after changing ``hosts``/``vms`` directly instead of through
        the mutators (e.g. after changing ``memory_policy``)."""
        self._require_every_vm("invalidate")
        self._loads = None
        self._group_hosts = None
        self._owned = None

    # ---- partial snapshots -------------------------------------------------------------------
    def set_counted_loads(self, loads: dict[str, HostLoad], group_hosts: dict[str, dict[str, int]]) -> None:
        """Make this a partial snapshot: ``loads`` (host uuid → load, every host present) and
        ``group_hosts`` (group → host → members counted there, for the groups of the VMs it will
        hold) count every VM of the pool, as the inventory summed them. Call it before adding
        VMs, which then go in with :meth:`add_counted_vm`."""
        assert not self.vms, "a partial snapshot gets its VMs after its loads"
        self.partial = True
        self._loads = loads
        self._group_hosts = group_hosts
        self._owned = None

    def add_counted_vm(self, vm: VMState) -> None:
        """Add to a partial snapshot a VM its loads already count, as it is in the inventory
        they were summed from; the counts of its groups must be known (:meth:`set_group_counts`)."""
        assert self.partial and vm.uuid not in self.vms
        assert all(self.has_group_counts(g) for g in vm.groups), "group counts first"
        self.vms[vm.uuid] = vm

    def set_group_counts(self, group: str, per_host: dict[str, int]) -> None:
        """A partial snapshot's counts of one more group (host → members counted there)."""
        assert self.partial and self._group_hosts is not None and group not in self._group_hosts
        self._group_hosts[group] = {h: n for h, n in per_host.items() if n}

    def _require_every_vm(self, what: str) -> None:
        if self.partial:
            raise RuntimeError(f"{what} needs every VM of the pool; this snapshot is partial")

    # ---- mutators (keep derived data incremental) --------------------------------------------
    def set_host(self, host: HostState) -> None:
        """Replace a host value (e.g. ``replace(h, live=False)``)."""
        self.hosts[host.uuid] = host
        if host.is_master:
            self.master = host.uuid
        if self._loads is not None:
            self._loads.setdefault(host.uuid, HostLoad())

    def update_host(self, uuid: str, **changes: object) -> HostState:
        host = replace(self.hosts[uuid], **changes)
        self.set_host(host)
        return host

    def set_vm(self, vm: VMState) -> None:
        """Replace a VM value, moving its load accordingly."""
        old = self.vms.get(vm.uuid)
        if old is not None:
            self._unload(old)
        self.vms[vm.uuid] = vm
        self._load(vm)

    def update_vm(self, uuid: str, **changes: object) -> VMState:
        vm = evolve_vm(self.vms[uuid], **changes)
        self.set_vm(vm)
        return vm

    def start_on(self, vm: str, host: str) -> VMState:
        """Record a placement decision: the VM runs on ``host`` (starts, restarts, batch steps)."""
        return self.update_vm(vm, power_state=RUNNING, resident_on=host, scheduled_on=None)

    def move_to(self, vm: str, host: str) -> VMState:
        """Record a completed migration of a running or paused VM to ``host``."""
        return self.update_vm(vm, resident_on=host, scheduled_on=None)

    def halt(self, vm: str) -> VMState:
        """The VM holds nothing any more (failed host, shutdown)."""
        return self.update_vm(vm, power_state=HALTED, resident_on=None, scheduled_on=None)

    def remove_vm(self, vm: str) -> None:
        old = self.vms.pop(vm)
        self._unload(old)

    def copy(self) -> PoolState:
        """A cheap independent copy: values are immutable, so only containers are copied."""
        other = PoolState(
            uuid=self.uuid,
            name=self.name,
            master=self.master,
            policy=self.policy,
            seed=self.seed,
            memory_policy=self.memory_policy,
            vcpu_ratio=self.vcpu_ratio,
            master_bias=self.master_bias,
            cpu_levelling=self.cpu_levelling,
            ha_enabled=self.ha_enabled,
            ha_failures_to_tolerate=self.ha_failures_to_tolerate,
            ha_allow_overcommit=self.ha_allow_overcommit,
            ha_overcommitted=self.ha_overcommitted,
            ha_plan_exact_limit=self.ha_plan_exact_limit,
            ha_plan_exists_for=self.ha_plan_exists_for,
            migration_network=self.migration_network,
            migration_downtime=self.migration_downtime,
            migration_stream_bandwidth=self.migration_stream_bandwidth,
            default_dirty_rate=self.default_dirty_rate,
            rebalance_policy=self.rebalance_policy,
            other_config=dict(self.other_config),
            hosts=dict(self.hosts),
            vms=dict(self.vms),
            groups=dict(self.groups),
            srs=dict(self.srs),
            networks=dict(self.networks),
            partial=self.partial,
        )
        if self._loads is not None:
            # shared until one side changes a host's load (see _apply)
            other._loads = dict(self._loads)
            other._owned = set()
            self._owned = set()
        if self._group_hosts is not None:
            other._group_hosts = {g: dict(m) for g, m in self._group_hosts.items()}
        return other

    # ---- internals ----------------------------------------------------------------------------
    def _ensure_derived(self) -> None:
        if self._loads is not None and self._group_hosts is not None:
            return
        self._require_every_vm("deriving the loads")
        self._loads = {h: HostLoad() for h in self.hosts}
        self._owned = None
        self._group_hosts = {}
        for uuid in sorted(self.vms):
            self._apply(self.vms[uuid], 1)

    def _load(self, vm: VMState) -> None:
        if self._loads is not None:
            self._apply(vm, 1)

    def _unload(self, vm: VMState) -> None:
        if self._loads is not None:
            self._apply(vm, -1)

    def _apply(self, vm: VMState, sign: int) -> None:
        hosts = vm.load_hosts()
        if not hosts:
            return
        assert self._loads is not None and self._group_hosts is not None
        m_st = vm.m_st
        m_min = vm.m_min
        m_max = vm.m_max
        mem = m_st if self.memory_policy == "none" else m_min
        prot = vm.ha_restart_priority == RESTART and vm.power_state in HOLDING_STATES
        for h in hosts:
            ld = self._loads.get(h)
            if ld is None:
                ld = self._loads[h] = HostLoad()
                if self._owned is not None:
                    self._owned.add(h)
            elif self._owned is not None and h not in self._owned:
                ld = self._loads[h] = ld.copy()
                self._owned.add(h)
            ld.mem += sign * mem
            ld.mem_min += sign * m_min
            ld.mem_max += sign * m_max
            ld.mem_st += sign * m_st
            ld.vcpus += sign * vm.vcpus
            ld.count += sign
            # Protection is a property of the resident host: the HA planner restarts what fails there.
            if prot and h == vm.resident_on:
                ld.prot_mem_st += sign * m_st
                ld.prot_vcpus += sign * vm.vcpus
                ld.prot_count += sign
            for g in vm.groups:
                per = self._group_hosts.setdefault(g, {})
                n = per.get(h, 0) + sign
                if n:
                    per[h] = n
                else:
                    per.pop(h, None)


def pool_cpu_flags(pool: PoolState) -> frozenset[str]:
    """The pool's ``cpu-flags`` (model.md §1.1): the intersection of its hosts' flags; with mixed
    vendors, of the hosts sharing the master's vendor."""
    hosts = [pool.hosts[u] for u in sorted(pool.hosts)]
    if not hosts:
        return frozenset()
    vendor = pool.hosts[pool.master].cpu_vendor if pool.master in pool.hosts else hosts[0].cpu_vendor
    same = [h.cpu_flags for h in hosts if h.cpu_vendor == vendor] or [hosts[0].cpu_flags]
    return frozenset.intersection(*same)


def boot_cpu(pool: PoolState, host: str) -> tuple[str, frozenset[str]]:
    """What a start or reboot on ``host`` records as ``last-boot-cpu-vendor``/``-flags`` (engine.md
    §1 CPU levelling): with ``cpu-levelling`` the pool's flags ∩ the host's, else the host's."""
    h = pool.hosts[host]
    if not pool.cpu_levelling:
        return h.cpu_vendor, h.cpu_flags
    return h.cpu_vendor, pool_cpu_flags(pool) & h.cpu_flags


def parse_version(text: str) -> tuple[int, ...]:
    """``software-version`` → tuple of ints for numeric comparison (model.md §1.2); non-numeric
    parts count as 0 so a malformed version never raises inside the engine."""
    parts = []
    for p in str(text).split("."):
        try:
            parts.append(int(p))
        except ValueError:
            parts.append(0)
    return tuple(parts)


def tie_key(seed: int, vm_uuid: str, host_uuid: str) -> bytes:
    """``tk(h)``: the first 8 bytes of SHA-256("<seed>:<vm-uuid>:<host-uuid>") (engine.md §0)."""
    return hashlib.sha256(f"{seed}:{vm_uuid}:{host_uuid}".encode()).digest()[:8]
