"""Evacuation planning (engine.md §4.4), a pure function of a pool snapshot.

Steps: (1) the VMs to move and the ones that cannot (immobile, storage only H reaches);
(2) batch placement (§2.3) onto the other hosts through filters 1–10 in migration mode, then one
HA admission check on the final state with H removed from the survivors; (3) a refusal naming
every blocking VM; (4) the schedule: moves by predicted solo time (descending), then uuid, cut
into waves (§4.3). Applying the plan (step 5) is the command's job: every move's VM gets
`resident-on` = its `to` host (:func:`apply_plan` does it on a snapshot).

Decisions where the spec is silent: the refusal lists every blocking VM, immobile ones and VMs
needing an SR only H reaches included, so `host-evacuate` and
`host-get-vms-which-prevent-evacuation` agree; `sr=` must name a shared SR (`INVALID_VALUE`);
during planning H is disabled and marked evacuating in the scratch copy, which both keeps VMs
off it and removes it from the HA survivors; the `memory` column is m(v).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from vmctl.engine import migration as mg
from vmctl.engine import waves as wv
from vmctl.engine.snapshot import PoolState, VMState
from vmctl.errors import Ref, VmctlError

if TYPE_CHECKING:  # pragma: no cover
    from vmctl.engine.placement.scheduler import Scheduler

CANNOT_EVACUATE = "CANNOT_EVACUATE_HOST"
# The fields of a plan's rows (EvacuationPlan.rows()), in the order tables and CSV show them.
MOVE_FIELDS = ("wave", "vm", "name-label", "to", "memory", "bytes", "time", "downtime")
_SIZE_PARAMS = {"needed", "available", "requested", "maximum"}


@dataclass(frozen=True)
class EvacuationMove:
    wave: int
    vm: str
    name: str
    src: str
    dst: str
    memory: int  # m(v)
    bytes: float  # memory bytes + storage bytes at the rate of its wave
    time: float
    downtime: float
    converges: bool
    storage_motion: bool
    prediction: mg.Prediction

    def row(self) -> dict:
        return {
            "wave": self.wave,
            "vm": self.vm,
            "name-label": self.name,
            "to": self.dst,
            "memory": self.memory,
            "bytes": self.bytes,
            "time": self.time,
            "downtime": self.downtime,
        }


@dataclass(frozen=True)
class EvacuationPlan:
    """The plan: `moves` in schedule order (the order the waves run), `schedule` the cut.
    `storage_map` maps moved VDIs to their target SR (storage motion with `sr=`)."""

    host: str
    policy: str
    moves: tuple[EvacuationMove, ...]
    schedule: wv.Schedule
    storage_map: dict[str, str]

    @property
    def makespan(self) -> float:
        return self.schedule.makespan

    @property
    def width(self) -> int:
        return self.schedule.width

    @property
    def waves(self) -> int:
        return len(self.schedule.waves)

    @property
    def bytes(self) -> float:
        return sum(m.bytes for m in self.moves)

    @property
    def targets(self) -> dict[str, str]:
        """vm uuid → destination host uuid (what the command applies)."""
        return {m.vm: m.dst for m in self.moves}

    def rows(self) -> list[dict]:
        return [m.row() for m in self.moves]

    def footer(self) -> str:
        """`31 VMs, 5 waves (width 6), makespan 4m12s, 812 GiB`."""
        from vmctl.units import humanise_duration, humanise_size

        n = len(self.moves)
        return (
            f"{n} VM{'s' if n != 1 else ''}, {self.waves} wave{'s' if self.waves != 1 else ''} "
            f"(width {self.width}), makespan {humanise_duration(self.makespan)}, "
            f"{humanise_size(int(round(self.bytes)))}"
        )

    def as_json(self) -> dict:
        return {
            "host": self.host,
            "policy": self.policy,
            "moves": self.rows(),
            "vms": len(self.moves),
            "waves": self.waves,
            "width": self.width,
            "makespan": self.makespan,
            "bytes": self.bytes,
            "all-converge": self.schedule.all_converge,
        }


@dataclass(frozen=True)
class Blocker:
    """One reason the evacuation is refused: a VM (or the pool, for an HA refusal)."""

    cls: str  # "vm" or "pool"
    uuid: str
    name: str
    code: str
    params: tuple[tuple[str, Any], ...]

    @property
    def reason(self) -> str:
        """`CODE,param,…` as host-get-vms-which-prevent-evacuation prints it."""
        return ",".join([self.code] + [_plain(v) for _, v in self.params])

    def line(self) -> str:
        """`CODE key=value …` for the CANNOT_EVACUATE_HOST lines."""
        return " ".join([self.code] + [f"{k}={_human(k, v)}" for k, v in self.params])

    def row(self) -> dict:
        return {"uuid": self.uuid, "name-label": self.name, "reason": self.reason}


def _plain(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ";".join(_plain(x) for x in v)
    return v.uuid if isinstance(v, Ref) else str(v)


def _human(key: str, v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(_human(key, x) for x in v)
    if isinstance(v, Ref):
        return v.name or v.uuid
    if key in _SIZE_PARAMS and isinstance(v, int):
        from vmctl.units import humanise_size

        return humanise_size(v)
    return str(v)


# --- step 1 ---------------------------------------------------------------------------------------


def _sr_hosts(pool: PoolState, sr: str) -> frozenset[str]:
    s = pool.srs.get(sr)
    if s is not None:
        return s.hosts
    return frozenset(h.uuid for h in pool.hosts.values() if sr in h.srs)


def local_srs(pool: PoolState, vm: VMState, host: str) -> list[str]:
    """SRs of the VM that no host other than `host` can reach."""
    return sorted(sr for sr in vm.srs if not (_sr_hosts(pool, sr) - {host}))


def vms_to_move(pool: PoolState, host: str) -> list[VMState]:
    """Running or paused VMs resident on `host`, by uuid; halted and suspended VMs stay."""
    # the cheap field test first: this scans every VM of the pool
    return sorted(
        (v for v in pool.vms.values() if v.resident_on == host and v.holds_resources), key=lambda v: v.uuid
    )


def _storage_target(pool: PoolState, sr: str | None) -> str | None:
    if sr is None:
        return None
    s = pool.srs.get(sr)
    if s is None or not s.shared:
        raise VmctlError(
            "INVALID_VALUE", "sr= must name a shared SR of the pool", [("name", "sr"), ("value", sr)]
        )
    return sr


def has_targets(pool: PoolState, host: str) -> bool:
    """Whether any other host could take a VM at all: XAPI's evacuation considers the other
    enabled hosts whose version is not older than H's (xapi_host.compute_evacuation_plan_no_wlb);
    without one, every VM's reason is NO_HOSTS_AVAILABLE."""
    version = pool.hosts[host].software_version
    return any(h.enabled and h.software_version >= version for u, h in pool.hosts.items() if u != host)


def _check(
    pool: PoolState, host: str, target_sr: str | None, skip: frozenset[str] = frozenset()
) -> tuple[list[VMState], list[Blocker], dict]:
    """Step 1: (movable VMs, blockers, storage map). VMs in `skip` are left out (the command
    found their own reason already)."""
    movable: list[VMState] = []
    blockers: list[Blocker] = []
    smap: dict[str, str] = {}
    targets = has_targets(pool, host)
    for vm in vms_to_move(pool, host):
        if vm.uuid in skip:
            continue
        ref = Ref("vm", vm.uuid, vm.name or None)
        if not targets:
            blockers.append(Blocker("vm", vm.uuid, vm.name, "NO_HOSTS_AVAILABLE", (("vm", ref),)))
            continue
        if vm.immobile:
            blockers.append(Blocker("vm", vm.uuid, vm.name, "VM_IS_IMMOBILE", (("vm", ref),)))
            continue
        local = local_srs(pool, vm, host)
        if local:
            movable_vdis = [d for d in vm.vdis if d.sr in local]
            covered = {d.sr for d in movable_vdis}
            if target_sr is None or covered != set(local):
                # without sr= (or for an SR whose VDIs are not described) it cannot leave
                s = pool.srs.get(local[0])
                blockers.append(
                    Blocker(
                        "vm",
                        vm.uuid,
                        vm.name,
                        "VM_REQUIRES_SR",
                        (("vm", ref), ("sr", Ref("sr", local[0], s.name if s and s.name else None))),
                    )
                )
                continue
            for d in movable_vdis:
                smap[d.uuid] = target_sr
        movable.append(vm)
    return movable, blockers, smap


# --- steps 2-4 ------------------------------------------------------------------------------------


def _ha_error(pool: PoolState, sched: Scheduler) -> VmctlError | None:
    if not sched.ha_active(True):
        return None
    try:
        from vmctl.engine import ha
    except ImportError:  # pragma: no cover - the HA module ships with the engine
        return None
    return ha.admission_error(pool)


def _analyse(
    pool: PoolState,
    host: str,
    policy: str | None,
    sr: str | None,
    seed: int | None,
    ha: bool,
    skip: frozenset[str] = frozenset(),
) -> tuple[list[Blocker], dict[str, str], dict[str, str], PoolState]:
    """Steps 1–3 on a scratch copy: (blockers, vm → destination, storage map, scratch pool)."""
    import vmctl.engine.placement.filters as F
    from vmctl.engine.placement.batch import place_batch
    from vmctl.engine.placement.scheduler import Scheduler

    if host not in pool.hosts:
        raise VmctlError("UUID_INVALID", params=[("class", "host"), ("uuid", host)])
    target_sr = _storage_target(pool, sr)
    movable, blockers, smap = _check(pool, host, target_sr, skip)
    scratch = pool.copy()
    # Storage motion: in the scratch copy the moved VDIs already sit on the target SR, so the
    # storage filter checks the destination against where the disks will be.
    for vm in movable:
        if any(d.uuid in smap for d in vm.vdis):
            from vmctl.engine.placement.scheduler import required_srs

            vdis = tuple(replace(d, sr=smap[d.uuid]) if d.uuid in smap else d for d in vm.vdis)
            scratch.set_vm(replace(vm, srs=required_srs(vm, smap), vdis=vdis))
    sched = Scheduler(scratch, policy, seed)
    # H leaves the survivors: no VM may land there and the HA check must not count on it.
    h = scratch.hosts[host]
    sched.set_host(replace(h, enabled=False, evacuating=True))
    res = place_batch(sched, [v.uuid for v in movable], mode=F.MIGRATE, exclude=(host,), ha=False)
    for vm in movable:
        if vm.uuid in res.failures:
            code, params = res.failures[vm.uuid]
            blockers.append(Blocker("vm", vm.uuid, vm.name, code, tuple(params)))
    blockers.sort(key=lambda b: (b.name, b.uuid))
    if not blockers and ha:
        err = _ha_error(scratch, sched)
        if err is not None:
            blockers.append(Blocker("pool", pool.uuid, pool.name, err.code, tuple(err.params)))
    return blockers, res.hosts, smap, scratch


def vms_preventing_evacuation(
    pool: PoolState,
    host: str,
    *,
    policy: str | None = None,
    sr: str | None = None,
    seed: int | None = None,
    ha: bool = True,
    skip: frozenset[str] = frozenset(),
) -> list[Blocker]:
    """`host-get-vms-which-prevent-evacuation`: steps 1–3 only; empty when H can be evacuated. An HA
    refusal is one row naming the pool. VMs in `skip` are not considered (the caller reports
    them)."""
    return _analyse(pool, host, policy, sr, seed, ha, skip)[0]


def refusal(pool: PoolState, host: str, blockers: list[Blocker]) -> VmctlError:
    """`CANNOT_EVACUATE_HOST` with one `<vm name-label>: CODE params` line per blocking VM. The
    structured blockers ride along as `err.blockers` and `err.json_params`."""
    h = pool.hosts[host]
    label = h.name or h.uuid
    params = [(b.name or b.uuid, b.line()) for b in blockers]
    n = len(blockers)
    err = VmctlError(
        CANNOT_EVACUATE,
        f"host {label} cannot be evacuated: {n} VM{'s' if n != 1 else ''} without a target",
        params=params,
    )
    err.blockers = blockers  # type: ignore[attr-defined]
    err.json_params = {
        "host": host,
        "vms": [  # type: ignore[attr-defined]
            {
                "vm": b.uuid,
                "name-label": b.name,
                "code": b.code,
                "params": {k: _plain(v) for k, v in b.params},
            }
            for b in blockers
        ],
    }
    return err


def plan_evacuation(
    pool: PoolState,
    host: str,
    *,
    policy: str | None = None,
    network: str | None = None,
    sr: str | None = None,
    seed: int | None = None,
    bandwidth: float | None = None,
    downtime: float | None = None,
    ha: bool = True,
    skip: frozenset[str] = frozenset(),
    max_width: int | None = None,
) -> EvacuationPlan:
    """Plan `host-evacuate host=H` on a snapshot (not modified). `max_width` bounds the number
    of migrations of a wave (xe's batch-size), below what the caps allow.

    Raises `CANNOT_EVACUATE_HOST` (per-VM lines) when a VM has no target, or the HA module's
    `HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN` when the final state breaks the failover plan.
    """
    blockers, hosts, smap, _ = _analyse(pool, host, policy, sr, seed, ha, skip)
    vm_blockers = [b for b in blockers if b.cls == "vm"]
    if vm_blockers:
        raise refusal(pool, host, vm_blockers)
    if blockers:
        b = blockers[0]
        raise VmctlError(b.code, params=list(b.params))
    specs: list[wv.MoveSpec] = []
    for uuid in sorted(hosts):
        vm = pool.vms[uuid]
        vsm = {d.uuid: smap[d.uuid] for d in vm.vdis if d.uuid in smap}
        specs.append(
            wv.move_spec(
                pool,
                vm,
                hosts[uuid],
                network=network,
                bandwidth=bandwidth,
                downtime=downtime,
                storage_map=vsm,
            )
        )
    # Longest first so the slowest moves overlap; uuid for determinism.
    solo = {s.vm: s.solo().total_time for s in specs}
    specs.sort(key=lambda s: (-round(solo[s.vm], 9), s.vm))
    sched = wv.schedule(specs, wv.caps_for(pool, network), max_width=max_width)
    moves = []
    for s, sm in zip(specs, sched.moves):
        vm = pool.vms[s.vm]
        p = sm.prediction
        moves.append(
            EvacuationMove(
                wave=sm.wave,
                vm=s.vm,
                name=vm.name,
                src=host,
                dst=s.dst,
                memory=pool.m(vm),
                bytes=p.total_bytes,
                time=p.total_time,
                downtime=p.downtime,
                converges=p.converges,
                storage_motion=s.storage_motion,
                prediction=p,
            )
        )
    return EvacuationPlan(
        host=host,
        policy=policy or pool.policy,
        moves=tuple(moves),
        schedule=sched,
        storage_map=dict(sorted(smap.items())),
    )


def apply_plan(pool: PoolState, plan: EvacuationPlan) -> None:
    """Record a plan in a snapshot (what the command writes to the inventory): each moved VM is
    resident on its destination; storage-moved VDIs sit on their target SR."""
    for m in plan.moves:
        vm = pool.vms[m.vm]
        if plan.storage_map and any(d.uuid in plan.storage_map for d in vm.vdis):
            from vmctl.engine.placement.scheduler import required_srs

            vdis = tuple(
                replace(d, sr=plan.storage_map[d.uuid]) if d.uuid in plan.storage_map else d for d in vm.vdis
            )
            vm = replace(vm, srs=required_srs(vm, plan.storage_map), vdis=vdis)
        pool.set_vm(replace(vm, resident_on=m.dst, scheduled_on=None))
