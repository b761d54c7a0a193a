"""High availability planning (engine.md §3): failure sets, the restart packer, plan-exists(r),
maximum failures to tolerate and admission control. The failover plan (the restart procedure,
which places through the scheduler) is in :mod:`vmctl.engine.failover`.

Model. A failure set F is r live enabled hosts failing together; the survivors are the other live
enabled hosts. A plan for F puts every protected VM of F (running or paused, priority ``restart``)
on the survivors through filters 6–10, with the survivors' own VMs staying. Every VM counts at
``m_st`` (full boot memory) whatever the memory policy.

Everything here is pure: functions take a :class:`PoolState` and never modify it (scratch copies
are used for hypothetical states). Work limits count evaluations, never time.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vmctl.engine.ha_packing import Packer, ProtectedVM
from vmctl.engine.ha_packing import PackResult as PackResult
from vmctl.engine.ha_quick import QuickTests
from vmctl.engine.ha_sets import FailureSets
from vmctl.engine.placement.filters import HA_CODE as HA_CODE
from vmctl.engine.snapshot import RESTART, PoolState, VMState
from vmctl.errors import Ref, VmctlError


# ---------------------------------------------------------------------------------------------------
# The planner: per-host free vectors at m_st and the protected VMs, built once per snapshot.
# ---------------------------------------------------------------------------------------------------
class Planner(Packer, QuickTests, FailureSets):
    """HA planning state for one snapshot.

    Its parts live in their own units, one module each, and read the state built here: the
    restart packer (:class:`~vmctl.engine.ha_packing.Packer`), the quick necessary and sufficient
    tests with the class-slot tables (:class:`~vmctl.engine.ha_quick.QuickTests`), and the
    interchangeable host classes and failure-set enumeration
    (:class:`~vmctl.engine.ha_sets.FailureSets`). Mixins rather than separate objects: the packer's
    inner loops read this state directly, so the split costs no indirection on the hot path.

    hosts: the live enabled hosts in uuid order. free_mem / free_vcpu: capacity minus the m_st and
    vCPU load of each host. prot[i]: its protected VMs, sorted by decreasing dominant share, uuid.
    """

    def __init__(self, pool: PoolState, priorities: dict[str, str] | None = None) -> None:
        self.pool = pool
        prio = priorities or {}
        self.hosts = [h for h in pool.usable_hosts()]
        self.uuids = [h.uuid for h in self.hosts]
        self.index = {u: i for i, u in enumerate(self.uuids)}
        n = self.n = len(self.hosts)
        loads = pool.loads()
        self.cap_mem = [h.memory_capacity for h in self.hosts]
        self.cap_vcpu = [h.vcpu_capacity(pool.vcpu_ratio) for h in self.hosts]
        self.cpu_count = [h.cpu_count for h in self.hosts]
        self.free_mem = [self.cap_mem[i] - loads[u].mem_st for i, u in enumerate(self.uuids)]
        self.free_vcpu = [self.cap_vcpu[i] - loads[u].vcpus for i, u in enumerate(self.uuids)]
        mean_mem = (sum(self.cap_mem) / n) if n else 1.0
        mean_vcpu = (sum(self.cap_vcpu) / n) if n else 1.0
        self.mean_mem = mean_mem or 1.0
        self.mean_vcpu = mean_vcpu or 1.0
        # Strict groups (rules filter): which groups matter for restarts.
        strict = {
            g.uuid: g.placement
            for g in pool.groups.values()
            if g.strict and g.placement in ("affinity", "anti-affinity")
        }
        self.strict = strict
        # Placement signatures (SRs, networks, vCPU count): host compatibility per signature.
        self._sig_ids: dict[tuple, int] = {}
        self.sig_ok: list[list[bool]] = []
        self.prot: list[list[ProtectedVM]] = [[] for _ in range(n)]
        self.any_strict_prot = False
        self.all_agile = True
        for vm in sorted(pool.vms.values(), key=lambda v: v.uuid):
            if not vm.holds_resources or vm.resident_on not in self.index:
                continue
            if prio.get(vm.uuid, vm.ha_restart_priority) != RESTART:
                continue
            self.prot[self.index[vm.resident_on]].append(self._entry(vm))
        for lst in self.prot:
            lst.sort(key=lambda x: (-x.dom, x.uuid))
        self.prot_mem = [sum(x.mem for x in lst) for lst in self.prot]
        self.prot_vcpu = [sum(x.vcpu for x in lst) for lst in self.prot]
        self.prot_count = [len(lst) for lst in self.prot]
        self.danger = [sum(x.dom for x in lst) for lst in self.prot]
        self.total_prot = sum(self.prot_count)
        # Survivor order for first fit: free memory (descending) at the start, then uuid.
        self.ff_order = sorted(range(n), key=lambda i: (-self.free_mem[i], self.uuids[i]))
        # Running members of strict groups per host (for the rules filter on survivors).
        self.group_hosts: dict[str, dict[int, int]] = {}
        for g in strict:
            per: dict[int, int] = {}
            for h, c in pool.group_hosts(g).items():
                if h in self.index:
                    per[self.index[h]] = c
            self.group_hosts[g] = per
        self.evaluations = 0
        self._cls_cache: dict[int, tuple] = {}
        self._plan_cache: dict[int, tuple | None] = {}
        self._slot_cache: list | None = None

    def _entry(self, vm: VMState) -> ProtectedVM:
        key = (vm.srs, vm.networks, vm.vcpus)
        sid = self._sig_ids.get(key)
        if sid is None:
            sid = self._sig_ids[key] = len(self.sig_ok)
            ok = [
                vm.srs <= h.srs and vm.networks <= h.networks and vm.vcpus <= h.cpu_count for h in self.hosts
            ]
            self.sig_ok.append(ok)
            if not all(ok):
                self.all_agile = False
        groups = tuple(g for g in vm.groups if g in self.strict)
        if groups:
            self.any_strict_prot = True
        dom = max(vm.m_st / self.mean_mem, vm.vcpus / self.mean_vcpu)
        return ProtectedVM(vm, dom, sid, groups)

    def derive(
        self,
        add: Iterable[tuple[VMState, str]] = (),
        remove: Iterable[VMState] = (),
        priorities: dict[str, str] | None = None,
    ) -> Planner:
        """A planner for a hypothetical state without rebuilding from the pool: ``remove`` VMs
        (their current load and protection go), then ``add`` (VM value, host) pairs — a start,
        or the arrival half of a migration. O(hosts) instead of O(VMs): admission control."""
        new = copy.copy(self)
        new.free_mem = self.free_mem[:]
        new.free_vcpu = self.free_vcpu[:]
        new.prot = self.prot[:]
        new.sig_ok = self.sig_ok[:]
        new._sig_ids = dict(self._sig_ids)
        new.group_hosts = {g: dict(per) for g, per in self.group_hosts.items()}
        new.evaluations = 0
        new._cls_cache = dict(self._cls_cache)
        new._plan_cache = {}
        new._slot_cache = None
        new.base = self
        new.added_prot: set[int] = set()
        new.decreased: set[int] = set()
        new.changed: set[int] = set()
        prio = priorities or {}
        touched: set[int] = set()
        for vm in remove:
            for h in vm.load_hosts():
                i = new.index.get(h)
                if i is None:
                    continue
                new.free_mem[i] += vm.m_st
                new.free_vcpu[i] += vm.vcpus
                new.changed.add(i)
                for g in vm.groups:
                    if g in new.group_hosts:
                        new.group_hosts[g][i] = new.group_hosts[g].get(i, 0) - 1
                if any(x.uuid == vm.uuid for x in new.prot[i]):
                    new.prot[i] = [x for x in new.prot[i] if x.uuid != vm.uuid]
                    touched.add(i)
        for vm, h in add:
            i = new.index.get(h)
            if i is None:
                continue
            new.free_mem[i] -= vm.m_st
            new.free_vcpu[i] -= vm.vcpus
            new.decreased.add(i)
            new.changed.add(i)
            for g in vm.groups:
                if g in new.group_hosts:
                    new.group_hosts[g][i] = new.group_hosts[g].get(i, 0) + 1
            if prio.get(vm.uuid, vm.ha_restart_priority) == RESTART:
                new.prot[i] = sorted(new.prot[i] + [new._entry(vm)], key=lambda x: (-x.dom, x.uuid))
                touched.add(i)
                new.added_prot.add(i)
        if touched:
            new.prot_mem = self.prot_mem[:]
            new.prot_vcpu = self.prot_vcpu[:]
            new.prot_count = self.prot_count[:]
            new.danger = self.danger[:]
            for i in touched:
                lst = new.prot[i]
                new.prot_mem[i] = sum(x.mem for x in lst)
                new.prot_vcpu[i] = sum(x.vcpu for x in lst)
                new.prot_count[i] = len(lst)
                new.danger[i] = sum(x.dom for x in lst)
            new.total_prot = sum(new.prot_count)
        new.ff_order = sorted(range(new.n), key=lambda i: (-new.free_mem[i], new.uuids[i]))
        return new

    # ---- per-failure-set plan cache (admission control) -----------------------------------------
    def plan_cache(self, r: int, limit: int) -> tuple | None:
        """For admission checks against this (unchanging) state: every failure set of size r with
        the survivor capacity its first-fit plan uses, indexed by host. Built once by an exact
        enumeration; None when not applicable (interchangeable hosts, E(r) above ``limit``, or a
        set without a plan). A cached plan stays valid in a changed state as long as the failed
        hosts' protected VMs are unchanged and every survivor it uses still has that much room."""
        if r in self._plan_cache:
            return self._plan_cache[r]
        out = None
        classes = self.host_classes()
        if all(len(c) == 1 for c in classes) and Planner.count_sets([1] * len(classes), r) <= limit:
            usage: dict[tuple[int, ...], dict[int, tuple[int, int]] | None] = {}
            containing: dict[int, list[tuple[int, ...]]] = {}
            using: dict[int, list[tuple[int, ...]]] = {}
            ok = True
            for _, _, hosts in self.all_sets(classes, r):
                res = self.pack(hosts, usage=True)
                if not res.ok:
                    ok = False
                    break
                usage[hosts] = res.usage  # None when best fit or the search found the plan
                for h in hosts:
                    containing.setdefault(h, []).append(hosts)
                for h in res.usage or ():
                    using.setdefault(h, []).append(hosts)
            if ok:
                out = (usage, containing, using)
        self._plan_cache[r] = out
        return out


# ---------------------------------------------------------------------------------------------------
# plan-exists(r) and maximum failures (engine.md §3.3)
# ---------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class PlanCheck:
    """Answer of plan-exists(r). exists: true only when proven. method: ``trivial`` |
    ``necessary`` | ``sufficient`` | ``exact`` | ``approximate``. witness: failed host uuids of a
    set without a plan; vm: a protected VM of it left without a target. evaluations: packings."""

    r: int
    exists: bool
    method: str
    witness: list[str] = field(default_factory=list)
    vm: str | None = None
    evaluations: int = 0

    @property
    def exact(self) -> bool:
        return self.method != "approximate"


def _incremental(pl: Planner, r: int, limit: int) -> PlanCheck | None:
    """plan-exists(r) for a derived planner from its base's plan cache: only the failure sets whose
    cached plan a change may break are packed again. None when the cache does not apply."""
    base = getattr(pl, "base", None)
    if base is None or base.n != pl.n or pl.any_strict_prot or base.any_strict_prot or base.group_hosts:
        return None  # strict groups make plans depend on more than capacities: pack afresh
    cache = base.plan_cache(r, limit)
    if cache is None:
        return None
    usage, containing, using = cache
    redo: set[tuple[int, ...]] = set()
    for h in pl.added_prot:
        redo.update(containing.get(h, ()))
    for h in pl.decreased:
        fm, fv = pl.free_mem[h], pl.free_vcpu[h]
        for f in using.get(h, ()):
            u = usage[f]
            if u is None or h in f:
                continue
            um, uv = u[h]
            if um > fm or uv > fv:
                redo.add(f)
    redo.update(f for f, u in usage.items() if u is None)
    ev0 = pl.evaluations
    order = sorted(
        redo, key=lambda f: (-round(sum(pl.danger[i] for i in f), 12), sorted(pl.uuids[i] for i in f))
    )
    for f in order:
        res = pl.pack(f)
        if not res.ok:
            return PlanCheck(
                r, False, "exact", sorted(pl.uuids[i] for i in f), res.unplaced, pl.evaluations - ev0
            )
    return PlanCheck(r, True, "exact", evaluations=pl.evaluations - ev0)


def plan_exists(
    pool: PoolState,
    r: int,
    *,
    planner: Planner | None = None,
    quick: bool = True,
    limit: int | None = None,
    priorities: dict[str, str] | None = None,
) -> PlanCheck:
    """Does every failure set of ``r`` live enabled hosts have a plan? ``quick`` enables the
    necessary and sufficient tests (the benchmark disables them to time the enumeration). A
    planner made by :meth:`Planner.derive` reuses its base's per-failure-set plans (admission)."""
    pl = planner or Planner(pool, priorities)
    limit = pool.ha_plan_exact_limit if limit is None else limit
    ev0 = pl.evaluations
    if r <= 0:
        return PlanCheck(r, True, "trivial")
    if r >= pl.n:
        if pl.total_prot:
            return PlanCheck(r, False, "trivial", witness=list(pl.uuids))
        return PlanCheck(r, True, "trivial")
    if pl.total_prot == 0:
        return PlanCheck(r, True, "trivial")
    if quick:
        w = pl.necessary_fails(r)
        if w is not None:
            vm = next((x.uuid for i in w for x in pl.prot[i]), None)
            return PlanCheck(r, False, "necessary", [pl.uuids[i] for i in w], vm)
    suff = pl.sufficient_holds(r) or pl.class_slots_hold(r)
    if quick and suff:
        return PlanCheck(r, True, "sufficient")
    if quick:
        inc = _incremental(pl, r, limit)
        if inc is not None:
            return inc
    classes = pl.host_classes()
    e = Planner.count_sets([len(c) for c in classes], r)
    if e <= limit:
        for _, _, hosts in pl.all_sets(classes, r):
            res = pl.pack(hosts)
            if not res.ok:
                return PlanCheck(
                    r, False, "exact", sorted(pl.uuids[i] for i in hosts), res.unplaced, pl.evaluations - ev0
                )
        return PlanCheck(r, True, "exact", evaluations=pl.evaluations - ev0)
    for hosts in pl.dangerous_sets(classes, r, limit):
        res = pl.pack(hosts)
        if not res.ok:
            return PlanCheck(
                r,
                False,
                "approximate",
                sorted(pl.uuids[i] for i in hosts),
                res.unplaced,
                pl.evaluations - ev0,
            )
    # Never optimistic: without the sufficient test's proof there is no plan.
    return PlanCheck(r, suff, "approximate", evaluations=pl.evaluations - ev0)


@dataclass(slots=True)
class MaxFailures:
    """``pool-ha-compute-max-host-failures-to-tolerate``: max (largest proven r), upper_bound
    (smallest r failing the necessary test, minus one), method per r, witness (hosts of a failing
    set for max + 1, when found), evaluations (packings)."""

    max: int
    upper_bound: int
    method: dict[int, str]
    witness: list[str]
    evaluations: int
    checks: list[PlanCheck] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "max": self.max,
            "upper-bound": self.upper_bound,
            "method": {
                str(r): ("exact" if m != "approximate" else "approximate")
                for r, m in sorted(self.method.items())
            },
            "witness": list(self.witness),
            "evaluations": self.evaluations,
        }


def upper_bound(pool: PoolState, planner: Planner | None = None) -> int:
    pl = planner or Planner(pool)
    if pl.total_prot == 0:
        return max(0, pl.n - 1)
    for r in range(1, pl.n + 1):
        if r >= pl.n or pl.necessary_fails(r) is not None:
            return r - 1
    return pl.n - 1  # pragma: no cover


def max_failures(
    pool: PoolState,
    *,
    priorities: dict[str, str] | None = None,
    quick: bool = True,
    limit: int | None = None,
    max_r: int | None = None,
) -> MaxFailures:
    """Scan r = 1, 2, … until plan-exists(r) is false or unproven, or r reaches live hosts − 1.
    ``priorities`` (vm uuid → priority) answers the hypothetical question without changing
    ``pool``; ``max_r`` stops the scan early (a caller that only needs "at least k")."""
    pl = Planner(pool, priorities)
    ub = upper_bound(pool, pl)
    best = 0
    methods: dict[int, str] = {}
    checks: list[PlanCheck] = []
    witness: list[str] = []
    top = max(0, pl.n - 1)
    if max_r is not None:
        top = min(top, max_r)
    r = 1
    while r <= top:
        chk = plan_exists(pool, r, planner=pl, quick=quick, limit=limit)
        checks.append(chk)
        methods[r] = chk.method
        if not chk.exists:
            witness = chk.witness
            break
        best = r
        r += 1
    return MaxFailures(best, ub, methods, witness, pl.evaluations, checks)


# ---------------------------------------------------------------------------------------------------
# Admission control (engine.md §3.4)
# ---------------------------------------------------------------------------------------------------
def admission_applies(pool: PoolState) -> bool:
    return pool.admission_control


def admission_error(
    pool: PoolState, target: int | None = None, planner: Planner | None = None
) -> VmctlError | None:
    """Check the (hypothetical) state ``pool`` (or ``planner``, a derived planner of it): None when
    a plan for the target exists, else ``HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN`` with params
    failures-to-tolerate, failure-set (witness hosts) and vm (a protected VM left without a
    target). The caller decides whether admission applies (see :func:`admission_applies`)."""
    r = pool.ha_failures_to_tolerate if target is None else target
    chk = plan_exists(pool, r, planner=planner)
    if chk.exists:
        return None
    hosts = [Ref("host", u, pool.hosts[u].name or None) for u in chk.witness if u in pool.hosts]
    params: list[tuple[str, Any]] = [("failures-to-tolerate", r), ("failure-set", hosts)]
    if chk.vm is not None:
        vm = pool.vms.get(chk.vm)
        params.append(("vm", Ref("vm", chk.vm, vm.name or None if vm else None)))
    err = VmctlError(HA_CODE, params=params)
    err.check = chk  # type: ignore[attr-defined]
    return err


def check_change(
    pool: PoolState,
    *,
    start: dict[str, str] | None = None,
    move: dict[str, str] | None = None,
    priorities: dict[str, str] | None = None,
    disable: Iterable[str] = (),
    vm_updates: Iterable[VMState] = (),
    target: int | None = None,
    planner: Planner | None = None,
) -> VmctlError | None:
    """Admission check (§3.4) of a hypothetical change: ``start`` (vm → host: start or resume),
    ``move`` (vm → host: migration), ``priorities`` (vm → priority), ``disable`` (hosts leaving
    the survivors: host-disable, host-evacuate), ``vm_updates`` (replaced VM values, e.g. a grown
    VM), ``target`` (a raised failures-to-tolerate). ``planner``: a Planner of ``pool`` to derive
    from (reuse it across many checks). Returns None when admitted or when admission does not
    apply. ``pool`` is never modified."""
    if not admission_applies(pool):
        return None
    disable = sorted(set(disable))
    if disable:
        scratch = pool.copy()
        for vm, host in sorted((start or {}).items()):
            scratch.start_on(vm, host)
        for vm, host in sorted((move or {}).items()):
            scratch.move_to(vm, host)
        for vm, p in sorted((priorities or {}).items()):
            scratch.update_vm(vm, ha_restart_priority=p)
        for v in vm_updates:
            scratch.set_vm(v)
        for h in disable:
            scratch.update_host(h, enabled=False)
        return admission_error(scratch, target)
    base = planner or Planner(pool)
    add: list[tuple[VMState, str]] = []
    remove: list[VMState] = []
    prio = dict(priorities or {})
    for vm, host in sorted((start or {}).items()):
        remove.append(pool.vms[vm])
        add.append((pool.vms[vm], host))
    for vm, host in sorted((move or {}).items()):
        remove.append(pool.vms[vm])
        add.append((pool.vms[vm], host))
    for vm in sorted(prio):
        if vm in (start or {}) or vm in (move or {}):
            continue
        v = pool.vms[vm]
        if v.holds_resources:
            remove.append(v)
            add.append((v, v.resident_on))  # type: ignore[arg-type]
    for v in vm_updates:
        remove.append(pool.vms[v.uuid])
        if v.holds_resources:
            add.append((v, v.resident_on))  # type: ignore[arg-type]
    return admission_error(pool, target, base.derive(add, remove, prio))


def placement_rejection(
    pool: PoolState, vms: list[str], host: str, planner: Planner | None = None
) -> VmctlError | None:
    """Filter 11 for the scheduler: would the plan survive these VMs starting (or moving) on host?"""
    if not admission_applies(pool):
        return None
    base = planner or Planner(pool)
    vs = [pool.vms[v] for v in vms]
    return admission_error(pool, None, base.derive([(v, host) for v in vs], vs))


def recompute_status(pool: PoolState) -> tuple[bool, int]:
    """After a committed change while HA is enabled: (ha_overcommitted, ha_plan_exists_for)."""
    target = pool.ha_failures_to_tolerate
    if plan_exists(pool, target).exists:
        return False, target
    best = 0
    pl = Planner(pool)
    for r in range(1, target):
        if not plan_exists(pool, r, planner=pl).exists:
            break
        best = r
    return True, best
