"""From the inventory to the engine: a :class:`~vmctl.engine.snapshot.PoolState` built from the rows
of one pool inside the command's transaction (engine.md §0–§1).

The snapshot is what every host choice reads: vm-start/vm-resume placement, vm-place, HA planning
and admission, host-fail restarts, and later migration, evacuation and rebalancing. Capacities and
charges follow :mod:`vmctl.capacity` (model.md §3.9) so that the engine, the derived fields and
db-check agree; SR visibility is an attached PBD (model.md §1.5); network availability is
:func:`vmctl.xenet.network_available` (model.md §1.8).

Only VMs that may run are included (templates and snapshots never run, model.md §2). Nothing here
writes; the commands apply the engine's plans themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from vmctl import capacity, operations, units
from vmctl.engine.snapshot import (
    HOLDING_STATES,
    GroupState,
    HostLoad,
    HostState,
    NetworkState,
    PoolState,
    SRState,
    VDIState,
    VMState,
    parse_version,
)
from vmctl.pools import CPU_VERDICT


def _float(text, default: float | None) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return default
    return v if v > 0 else default


def _int(text, default: int) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def _rate(text) -> int | None:
    if text is None:
        return None
    try:
        return units.parse_rate(str(text), "dirty-rate")
    except Exception:  # a malformed knob never breaks placement: fall back to the pool default
        return None


def cpu_levelling(pool: dict) -> bool:
    """``other-config:cpu-levelling`` [true] (engine.md §1)."""
    return str(pool["other-config"].get("cpu-levelling", "true")).lower() not in ("false", "no", "0")


class _Storage:
    """VBD → VDI → SR and VIF facts of some VMs, fetched once: of every VM of a pool
    (:meth:`of_every_vm`) or of a few (:meth:`of_vms`)."""

    def __init__(self) -> None:
        self.vdis: dict[str, dict] = {}
        self.vbds: dict[str, list[dict]] = defaultdict(list)
        self.vifs: dict[str, list[dict]] = defaultdict(list)

    @classmethod
    def of_every_vm(cls, txn, vm_uuids: set[str]) -> _Storage:
        """Reading every VDI, VBD and VIF row once (what a snapshot of every VM needs)."""
        st = cls()
        st.vdis = {d["uuid"]: d for d in txn.all("vdi")}
        for b in txn.all("vbd"):
            if b["vm"] in vm_uuids:
                st.vbds[b["vm"]].append(b)
        for f in txn.all("vif"):
            if f["vm"] in vm_uuids:
                st.vifs[f["vm"]].append(f)
        return st

    @classmethod
    def of_vms(cls, txn, vms: list[dict]) -> _Storage:
        """Reading only the rows of these VMs' VBDs, VIFs, VDIs and suspend VDIs."""
        st = cls()
        for vm in vms:
            u = vm["uuid"]
            st.vbds[u] = txn.select("vbd", vm=u)
            st.vifs[u] = txn.select("vif", vm=u)
            for d in [b["vdi"] for b in st.vbds[u]] + [vm["suspend-vdi"]]:
                row = txn.get("vdi", d) if d else None
                if row is not None:
                    st.vdis[d] = row
        return st


def _residence(power_state: str, resident_on: str, scheduled_on: str) -> dict:
    """resident_on and scheduled_on of a VMState from the row's fields: a VM has a resident host
    only while running or paused."""
    return {
        "resident_on": (resident_on or None) if power_state in HOLDING_STATES else None,
        "scheduled_on": scheduled_on or None,
    }


def vm_value(vm: dict, st: _Storage | None = None) -> VMState:
    """One VM row → :class:`VMState` (memory overhead per model.md §1.3)."""
    srs: set[str] = set()
    vdis: dict[str, VDIState] = {}
    nets: set[str] = set()
    if st is not None:
        for b in st.vbds.get(vm["uuid"], []):
            d = st.vdis.get(b["vdi"]) if b["vdi"] else None
            if d is None:
                continue  # an empty CD drive needs no SR
            srs.add(d["sr"])
            vdis[d["uuid"]] = VDIState(d["uuid"], d["sr"], d["virtual-size"], d["physical-utilisation"])
        if vm["suspend-vdi"]:
            d = st.vdis.get(vm["suspend-vdi"])
            if d is not None:
                srs.add(d["sr"])
                vdis[d["uuid"]] = VDIState(d["uuid"], d["sr"], d["virtual-size"], d["physical-utilisation"])
        nets = {f["network"] for f in st.vifs.get(vm["uuid"], []) if f["network"]}
    return VMState(
        uuid=vm["uuid"],
        name=vm["name-label"],
        power_state=vm["power-state"],
        **_residence(vm["power-state"], vm["resident-on"], vm["scheduled-to-be-resident-on"]),
        affinity=vm["affinity"] or None,
        vcpus=vm["vcpus"],
        memory_static_min=vm["memory-static-min"],
        memory_dynamic_min=vm["memory-dynamic-min"],
        memory_dynamic_max=vm["memory-dynamic-max"],
        memory_static_max=vm["memory-static-max"],
        memory_overhead=capacity.vm_overhead(vm),
        memory_reservation=vm["memory-reservation"],
        last_boot_cpu_vendor=vm["last-boot-cpu-vendor"],
        last_boot_cpu_flags=frozenset(vm["last-boot-cpu-flags"]),
        groups=tuple(sorted(vm["groups"])),
        ha_restart_priority=vm["ha-restart-priority"],
        order=vm["order"],
        # the engine moves no VM XAPI would not live-migrate: platform:nomigrate or nested-virt, or
        # blocked-operations holding pool_migrate (rebalancing honours both)
        immobile=operations.immobile(vm) or "pool_migrate" in vm["blocked-operations"],
        dirty_rate=_rate(vm["other-config"].get("dirty-rate")),
        srs=frozenset(srs),
        networks=frozenset(nets),
        vdis=tuple(vdis[k] for k in sorted(vdis)),
    )


class _Memo:
    """The engine's memo of one transaction (kept in txn.cache under this class): each pool's
    snapshot with the write count it is valid for, and the journal head read before the first
    snapshot (the stamp of the snapshots carried over)."""

    def __init__(self) -> None:
        self.snapshots: dict[str, tuple[PoolState, int]] = {}  # pool uuid -> (snapshot, txn.writes)
        self.journal_head: tuple[int, str] | None = None
        self.carry_registered = False
        # pool uuid -> (snapshot, its pool cpu-flags): a memoized snapshot's hosts never change
        # (sync_vm moves VMs only), so a run of boots intersects the hosts' flags once
        self.cpu_flags: dict[str, tuple[PoolState, frozenset[str]]] = {}

    def pool_cpu_flags(self, ps: PoolState) -> frozenset[str]:
        from vmctl.engine import snapshot

        hit = self.cpu_flags.get(ps.uuid)
        if hit is None or hit[0] is not ps:
            hit = self.cpu_flags[ps.uuid] = (ps, snapshot.pool_cpu_flags(ps))
        return hit[1]

    def current(self, txn, pool_uuid: str) -> PoolState | None:
        """The memoized snapshot while nothing was written since it was made."""
        hit = self.snapshots.get(pool_uuid)
        return hit[0] if hit is not None and hit[1] == txn.writes else None


def _memo(txn) -> _Memo:
    memo = txn.cache.get(_Memo)
    if memo is None:
        memo = txn.cache[_Memo] = _Memo()
    return memo  # type: ignore[return-value]


# Snapshots carried from one transaction to the next within this process (a batch run item by
# item, the Python API, a benchmark): (inventory, pool) -> (journal head, snapshot). Every
# committed change appends a journal entry, by this process or any other, so a snapshot is
# current exactly while the head it was stamped with is still the head. It lives as long as the
# process, across Store objects, because the API and batch open one per transaction.
_CARRIED: dict[tuple[str, str], tuple[tuple[int, str], PoolState]] = {}


def pool_state(txn, pool_uuid: str) -> PoolState:
    """The engine's snapshot of one pool, every VM included, as the inventory holds it now:
    built once per transaction and kept while nothing else is written (txn.writes), so a run of
    vm-starts does not rebuild it per VM; carried over to the next transaction of this process
    when it is still current then. Callers get a copy they may change."""
    memo = _memo(txn)
    ps = memo.current(txn, pool_uuid)
    if ps is None or ps.partial:
        ps = _carried(txn, pool_uuid, partial_ok=False)
        if ps is None:
            _stamp_before_reading(txn)
            ps = _build_pool_state(txn, pool_uuid)
        _remember(txn, ps)
    return ps.copy()


def placement_state(txn, pool_uuid: str, vm_uuids: Iterable[str]) -> PoolState:
    """The snapshot a placement of these VMs of the pool reads (vm-start, vm-resume, vm-place):
    the pool's snapshot when one is current, else a partial one (engine/snapshot.py) of every
    host with the loads the database sums over all the VMs, holding only these VMs, so that
    starting one VM does not read every VM row. HA admission (filter 11) plans with every VM:
    while it applies the snapshot is the whole one. Memoized and carried over like
    :func:`pool_state`; a partial one takes in the VMs later placements ask for. Callers get a
    copy they may change."""
    memo = _memo(txn)
    ps = memo.current(txn, pool_uuid)
    if ps is None:
        ps = _carried(txn, pool_uuid, partial_ok=True)
        if ps is None:
            settings = _pool_settings(txn.get("pool", pool_uuid))
            if settings.admission_control:
                return pool_state(txn, pool_uuid)
            _stamp_before_reading(txn)
            ps = _build_placement_state(txn, settings)
        _remember(txn, ps)
    if ps.partial:
        _take_in(txn, ps, vm_uuids)  # the memoized one: it stays valid, as nothing was written since
    return ps.copy()


def _stamp_before_reading(txn) -> None:
    if not txn.writes and not txn.store.dry_run:
        _head(txn)  # read before the rows, so the stamp is never newer than the snapshot


def _remember(txn, ps: PoolState) -> None:
    ps.loads()  # derive the per-host loads once: copies inherit them instead of recomputing
    memo = _memo(txn)
    memo.snapshots[ps.uuid] = (ps, txn.writes)
    if not memo.carry_registered and not txn.store.dry_run:
        memo.carry_registered = True
        txn.on_commit.append(lambda: _carry_over(txn))


def _head(txn) -> tuple[int, str]:
    memo = _memo(txn)
    if memo.journal_head is None:
        memo.journal_head = txn.journal_head()
    return memo.journal_head


def _carried(txn, pool_uuid: str, partial_ok: bool) -> PoolState | None:
    """A copy of the snapshot a previous transaction left, if the inventory has not changed
    since: nothing committed after it (same journal head) and nothing written yet by this one."""
    if txn.store.dry_run or txn.writes:
        return None
    hit = _CARRIED.get((txn.store.db, pool_uuid))
    if hit is None or hit[0] != _head(txn) or (hit[1].partial and not partial_ok):
        return None
    return hit[1].copy()


def _carry_over(txn) -> None:
    """After the transaction: keep its snapshots that are still valid, stamped with the journal
    head the inventory now has (the entry it appended, or the one it read); drop the others."""
    db = txn.store.db
    memo = _memo(txn)
    if txn.journal_entry is not None:
        head = txn.journal_entry
    elif not txn.dirty and memo.journal_head is not None:
        head = memo.journal_head
    else:  # changes committed without a journal entry, or rolled back: nothing is known
        head = None
    # (a copy of the keys: in the manager, other threads' transactions carry theirs meanwhile)
    for k in [k for k in list(_CARRIED) if k[0] == db]:
        _CARRIED.pop(k, None)
    if head is None or head[0] == 0:  # an empty journal identifies nothing: never carry on it
        return
    for pool_uuid in memo.snapshots:
        ps = memo.current(txn, pool_uuid)
        if ps is not None:
            _CARRIED[(db, pool_uuid)] = (head, ps)


def sync_vm(txn, vm: dict, writes_before: int) -> None:
    """Mirror one VM's own residence change (start, resume, shutdown, suspend...) into the
    memoized snapshot, when nothing else was written since it was last valid (`writes_before`):
    its disks, networks and groups are unchanged, so only its power state, host and boot CPU
    record move. (A partial snapshot without this VM goes stale instead.)"""
    memo = _memo(txn)
    hit = memo.snapshots.get(vm["pool"])
    if hit is None or hit[1] != writes_before:
        return
    ps = hit[0]
    old = ps.vms.get(vm["uuid"])
    if old is None:
        return
    fresh = vm_value(vm)
    ps.set_vm(replace(fresh, srs=old.srs, networks=old.networks, vdis=old.vdis))
    memo.snapshots[vm["pool"]] = (ps, txn.writes)


def _may_run(vm: dict) -> bool:
    """Templates and snapshots never run (model.md §2): no snapshot holds them."""
    return not vm["is-a-template"] and not vm["is-a-snapshot"]


def _pool_settings(p: dict) -> PoolState:
    """A snapshot of the pool's settings alone."""
    return PoolState(
        uuid=p["uuid"],
        name=p["name-label"],
        master=p["master"] or None,
        policy=p["placement-policy"],
        seed=p["placement-seed"],
        memory_policy=p["memory-overcommit-policy"],
        vcpu_ratio=p["vcpu-allocation-ratio"],
        master_bias=p["master-bias"],
        cpu_levelling=cpu_levelling(p),
        ha_enabled=p["ha-enabled"],
        ha_failures_to_tolerate=p["ha-host-failures-to-tolerate"],
        ha_allow_overcommit=p["ha-allow-overcommit"],
        ha_overcommitted=p["ha-overcommitted"],
        ha_plan_exact_limit=max(1, p["ha-plan-exact-limit"]),
        ha_plan_exists_for=p["ha-plan-exists-for"],
        migration_network=p["migration-network"] or None,
        migration_downtime=p["migration-downtime"],
        migration_stream_bandwidth=p["migration-stream-bandwidth"],
        default_dirty_rate=p["default-dirty-rate"],
        rebalance_policy=p["rebalance-policy"],
        other_config=dict(p["other-config"]),
    )


def _build_pool_state(txn, pool_uuid: str) -> PoolState:
    """The pool with every VM that may run, its disks and networks."""
    ps = _pool_settings(txn.get("pool", pool_uuid))
    vms = [v for v in txn.select("vm", pool=pool_uuid) if _may_run(v)]
    st = _Storage.of_every_vm(txn, {v["uuid"] for v in vms})
    _add_infrastructure(txn, ps, {f["network"] for fs in st.vifs.values() for f in fs if f["network"]})
    for v in sorted(vms, key=lambda v: v["uuid"]):
        ps.add_vm(vm_value(v, st))
    return ps


def _build_placement_state(txn, ps: PoolState) -> PoolState:
    """The partial snapshot of a pool (`ps`, its settings): every host, SR, network and group,
    the loads the database sums over every VM, and no VM yet (:func:`_take_in` adds them)."""
    from vmctl.store import loads as sums

    _add_infrastructure(txn, ps, sums.vif_networks(txn, ps.uuid))
    loads = {h: HostLoad() for h in ps.hosts}
    dynamic = ps.memory_policy != "none"
    for resident_on, scheduled_on, power_state, *v in sums.vm_load_sums(
        txn, ps.uuid, capacity.STATIC_MAX_PER_OVERHEAD_MIB
    ):
        # the hosts a VM of this group counts on, as for one VM (HostLoad, PoolState._apply)
        where = VMState("", power_state=power_state, **_residence(power_state, resident_on, scheduled_on))
        n, vcpus, static_max, dynamic_max, floor, units, p_n, p_vcpus, p_static_max, p_units = v
        overhead = capacity.overhead_of(n, vcpus, units)
        for host in where.load_hosts():
            ld = loads.setdefault(host, HostLoad())
            ld.count += n
            ld.vcpus += vcpus
            ld.mem_st += static_max + overhead
            ld.mem_max += dynamic_max + overhead
            ld.mem_min += floor + overhead
            ld.mem += (floor if dynamic else static_max) + overhead
            if host == where.resident_on and power_state in HOLDING_STATES:  # protection: resident host
                ld.prot_count += p_n
                ld.prot_vcpus += p_vcpus
                ld.prot_mem_st += p_static_max + capacity.overhead_of(p_n, p_vcpus, p_units)
    ps.set_counted_loads(loads, {})
    return ps


def _take_in(txn, ps: PoolState, vm_uuids: Iterable[str]) -> None:
    """Add to a partial snapshot the VMs it does not hold yet, with the counts of their groups."""
    rows = [txn.get("vm", u) for u in sorted(set(vm_uuids)) if u not in ps.vms]
    rows = [r for r in rows if r is not None and r["pool"] == ps.uuid and _may_run(r)]
    if not rows:
        return
    for g in sorted({g for r in rows for g in r["groups"]}):
        if not ps.has_group_counts(g):
            per_host: dict[str, int] = defaultdict(int)
            for m in txn.select_containing("vm", "groups", g):
                if m["pool"] == ps.uuid and _may_run(m):
                    for h in vm_value(m).load_hosts():
                        per_host[h] += 1
            ps.set_group_counts(g, per_host)
    st = _Storage.of_vms(txn, rows)
    for r in rows:
        ps.add_counted_vm(vm_value(r, st))


def _add_infrastructure(txn, ps: PoolState, vif_networks: set[str]) -> None:
    """The pool's SRs, networks, hosts and groups; `vif_networks`: the networks its VMs' VIFs
    use (the only ones whose availability on each host is asked, by filter 7 and HA agility)."""
    from vmctl import storage, xenet

    pool_uuid = ps.uuid
    hosts = sorted(txn.select("host", pool=pool_uuid), key=lambda h: h["uuid"])
    # SR visibility: an attached PBD (model.md §1.5)
    sr_hosts: dict[str, set[str]] = defaultdict(set)
    for pbd in txn.select("pbd", pool=pool_uuid):
        if pbd["currently-attached"]:
            sr_hosts[pbd["sr"]].add(pbd["host"])
    for sr in txn.select("sr", pool=pool_uuid):
        ps.add_sr(
            SRState(
                sr["uuid"],
                sr["name-label"],
                sr["shared"],
                frozenset(sr_hosts.get(sr["uuid"], ())),
                sr["physical-size"],
                storage.sr_utilisation(txn, sr["uuid"]),
            )
        )
    pifs = txn.select("pif", pool=pool_uuid)
    mgmt_nets = {pf["network"] for pf in pifs if pf["management"]}
    nets = {n["uuid"]: n for n in txn.select("network", pool=pool_uuid)}
    for n in nets.values():
        ps.add_network(
            NetworkState(
                n["uuid"],
                n["name-label"],
                _rate(n["other-config"].get("migration-bandwidth")),
                n["uuid"] in mgmt_nets,
            )
        )
    # Availability is only ever asked about the networks VMs use (filter 7, HA agility), so only
    # those are evaluated: each evaluation may read a host's switch rows.
    used = sorted(n for n in vif_networks if n in nets)
    speeds: dict[str, list[tuple[str, int | None]]] = defaultdict(list)
    for pf in pifs:
        speeds[pf["host"]].append((pf["network"], pf["speed"] or None))
    pool = txn.get("pool", pool_uuid)
    master = pool["master"]
    host_uuids = [h["uuid"] for h in hosts]
    where = {n: xenet.hosts_with_network(txn, nets[n], host_uuids) for n in used}
    for h in hosts:
        available = frozenset(n for n in used if h["uuid"] in where[n])
        ratio = _float(h["other-config"].get("vcpu-allocation-ratio"), None)
        ps.add_host(
            HostState(
                uuid=h["uuid"],
                name=h["name-label"],
                live=h["live"],
                enabled=h["enabled"],
                evacuating="evacuate" in h["current-operations"],
                cpu_count=h["cpu-count"],
                cpu_vendor=h["cpu-vendor"],
                cpu_flags=frozenset(h["cpu-flags"]),
                software_version=parse_version(h["software-version"]),
                memory_total=h["memory-total"],
                memory_overhead=h["memory-overhead"],
                memory_reserved=capacity.host_reserved(h),
                vcpu_ratio=ratio,
                srs=frozenset(s for s, hs in sr_hosts.items() if h["uuid"] in hs),
                networks=available,
                pif_speeds=tuple(sorted(speeds.get(h["uuid"], []), key=lambda x: (x[0], x[1] or 0))),
                is_master=h["uuid"] == master,
                other_config=tuple(sorted((str(k), str(v)) for k, v in h["other-config"].items())),
                cpu_compatible=None
                if pool["driver"] == "sim"
                else h["other-config"].get(CPU_VERDICT) != "false",
            )
        )
    for g in txn.select("vm-group", pool=pool_uuid):
        ps.add_group(GroupState(g["uuid"], g["name-label"], g["placement"], g["strict"]))


def pool_of_vm(txn, vm: dict) -> PoolState:
    return pool_state(txn, vm["pool"])


def levelled_flags(txn, vm: dict, host: dict) -> tuple[str, list[str]]:
    """(last-boot-cpu-vendor, last-boot-cpu-flags) for a boot on ``host`` (engine.md §1): the pool's
    cpu-flags ∩ the host's own with cpu-levelling on (the default), else the host's own."""
    from vmctl.derived import pool_cpu_flags

    pool = txn.get("pool", host["pool"])
    own = set(host["cpu-flags"])
    if not cpu_levelling(pool):
        return host["cpu-vendor"], sorted(own)
    memo = _memo(txn)
    ps = memo.current(txn, pool["uuid"])
    if ps is not None and pool["master"] in ps.hosts:
        # the memoized snapshot is current: its hosts give the same intersection without
        # reading every host row (both take the master's vendor)
        return host["cpu-vendor"], sorted(own & memo.pool_cpu_flags(ps))
    members = txn.select("host", pool=pool["uuid"])
    master = txn.get("host", pool["master"]) if pool["master"] else None
    return host["cpu-vendor"], sorted(own & set(pool_cpu_flags(members, master)))


def knob_int(pool: dict, key: str, default: int) -> int:
    return _int(pool["other-config"].get(key), default)
