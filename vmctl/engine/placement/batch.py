"""Batch placement (engine.md §2.3): many VMs against one state in one pass.

* **Items**: VMs linked by strict affinity groups (transitively, among the batch) form one item.
* **Classes**: items with equal demand and filter signature are interchangeable; the host-centric
  fill evaluates one representative per class, so a step costs O(classes), vectorised.
* **Order**: restart priority (HA restarts only), ``order``, decreasing dominant share, uuid. Soft
  group members go first, one by one. The spreading policies (``spread``, ``balanced``) then place
  item by item with the single-VM ranking on the evolving state (largest first: worst fit
  decreasing, so the loads end even); ``pack`` fills hosts one at a time (host-centric). Levels of
  equal (priority, order) are filled in turn, so a lower priority never takes room from a higher
  one.

Filter 11 (HA) is not run per step (a failure-set search per step would be prohibitive): the caller
runs one admission check on the final state, as evacuation does (engine.md §4.4), see
:attr:`BatchResult.ha_error`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import vmctl.engine.placement.filters as F
from vmctl.engine.placement.scheduler import Scheduler
from vmctl.engine.snapshot import BEST_EFFORT, RESTART, VMState
from vmctl.errors import VmctlError

PRIORITY_RANK = {RESTART: 0, BEST_EFFORT: 1}


@dataclass(slots=True)
class BatchResult:
    """placements: (vm uuid, host uuid) in decision order. failures: vm uuid → (code, params),
    the code of the filter that rejected the VM's item on most hosts. ha_error: the HA admission
    refusal on the final state, when HA admission applies and fails (nothing else is undone:
    the caller discards the scratch state)."""

    placements: list[tuple[str, str]] = field(default_factory=list)
    failures: dict[str, tuple[str, list]] = field(default_factory=dict)
    ha_error: VmctlError | None = None

    @property
    def hosts(self) -> dict[str, str]:
        return dict(self.placements)


@dataclass(slots=True)
class _Item:
    vms: tuple[VMState, ...]
    req: F.Request
    key: tuple  # batch order key
    dom: float
    uuid: str  # first member's uuid
    soft: bool


def _items(sched: Scheduler, vms: list[VMState], mode: str, force: bool, ha_order: bool) -> list[_Item]:
    pool = sched.pool
    uuids = {v.uuid for v in vms}
    parent = {u: u for u in uuids}

    def find(u: str) -> str:
        while parent[u] != u:
            parent[u] = parent[parent[u]]
            u = parent[u]
        return u

    # Members of the same strict affinity group (within the batch) are merged into one item.
    by_group: dict[str, list[str]] = {}
    for v in vms:
        for g in v.groups:
            grp = pool.groups.get(g)
            if grp is not None and grp.strict and grp.placement == "affinity":
                by_group.setdefault(g, []).append(v.uuid)
    for g in sorted(by_group):
        members = sorted(by_group[g])
        for u in members[1:]:
            a, b = find(members[0]), find(u)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[str, list[VMState]] = {}
    for v in sorted(vms, key=lambda v: v.uuid):
        groups.setdefault(find(v.uuid), []).append(v)

    t = sched.table
    usable = t.usable & t.not_evacuating
    n_usable = max(1, int(usable.sum()))
    mean_mem = float(t.mem_cap_f[usable].sum()) / n_usable or 1.0
    mean_vcpu = float(t.vcpu_cap_f[usable].sum()) / n_usable or 1.0
    items = []
    for root in sorted(groups):
        members = groups[root]
        req = sched.request(members, mode, force)
        dom = max(req.mem / mean_mem, req.vcpus / mean_vcpu)
        prio = min(PRIORITY_RANK.get(v.ha_restart_priority, 2) for v in members) if ha_order else 0
        order = min(v.order for v in members)
        items.append(
            _Item(
                tuple(members),
                req,
                (prio, order, -dom, members[0].uuid),
                dom,
                members[0].uuid,
                bool(req.soft_aff or req.soft_anti),
            )
        )
    items.sort(key=lambda it: it.key)
    return items


def place_batch(
    sched: Scheduler,
    vms: Iterable[str | VMState],
    *,
    mode: str = F.START,
    force: bool = False,
    exclude: Iterable[str] = (),
    ha: bool = True,
    ha_order: bool = False,
) -> BatchResult:
    """Place the VMs together on ``sched``'s pool (mutated: every placement is committed, so the
    caller passes a scheduler over a scratch copy for a dry run). ``ha_order`` sorts by restart
    priority first (HA restarts). ``exclude``: hosts not to use (an evacuated host)."""
    pool = sched.pool
    vlist = [pool.vms[v] if isinstance(v, str) else v for v in vms]
    res = BatchResult()
    if not vlist:
        return res
    exclude = tuple(exclude)
    items = _items(sched, vlist, mode, force, ha_order)
    soft = [it for it in items if it.soft]
    rest = [it for it in items if not it.soft]
    for it in soft:
        _place_soft(sched, it, exclude, res, mode)
    if not sched.consolidates:
        for it in rest:
            p = sched.place_request(it.req, exclude, ha=False)
            if p is None:
                _fail(sched, it, exclude, res)
            else:
                _commit(sched, it, p.host, res, mode)
    else:
        # Fill level by level so that priority and `order` are honoured across hosts.
        level: list[_Item] = []
        for it in rest:
            if level and it.key[:2] != level[0].key[:2]:
                _host_centric(sched, level, exclude, res, mode)
                level = []
            level.append(it)
        if level:
            _host_centric(sched, level, exclude, res, mode)
    if ha and sched.ha_active(True) and res.placements:
        from vmctl.engine import ha as ha_mod

        res.ha_error = ha_mod.admission_error(pool)
    return res


def _commit(sched: Scheduler, it: _Item, host: str, res: BatchResult, mode: str) -> None:
    for v in it.vms:
        if mode == F.MIGRATE:
            sched.commit_move(v.uuid, host)
        else:
            sched.commit(v.uuid, host)
        res.placements.append((v.uuid, host))


def _fail(sched: Scheduler, it: _Item, exclude: tuple[str, ...], res: BatchResult) -> None:
    """Report the code of the filter that rejected the item on most hosts (ties: filter order)."""
    t = sched.table
    fail = sched.first_failures(it.req)
    excl = {t.index[h] for h in exclude if h in t.index}
    counts: dict[int, list[int]] = {}
    for i in range(t.n):
        if i in excl:
            continue
        counts.setdefault(int(fail[i]), []).append(i)
    counts.pop(0, None)
    if not counts:
        code, params = "NO_HOSTS_AVAILABLE", [("vm", F.vm_ref(it.req.vm))]
    else:
        fi = max(sorted(counts), key=lambda k: len(counts[k]))
        code, params = F.BY_INDEX[fi].reason(t, it.req, counts[fi][0])
        # Per VM, a capacity code is re-derived against one representative host; fine for a summary.
    for v in it.vms:
        res.failures[v.uuid] = (code, params)


def _place_soft(sched: Scheduler, it: _Item, exclude: tuple[str, ...], res: BatchResult, mode: str) -> None:
    """Soft-group member: anti-affinity to the host with fewest members of its groups, affinity to
    the host holding most; ties by the §2.2 ranking."""
    import numpy as np

    import vmctl.engine.placement.weighers as W

    t = sched.table
    req = it.req
    ok = sched.feasible_mask(req, exclude)
    n_ok = int(ok.sum())
    if n_ok == 0:
        _fail(sched, it, exclude, res)
        return
    key = np.zeros(t.n, dtype=np.int64)
    for g in req.soft_anti:
        key += t.group_counts(g, req)
    for g in req.soft_aff:
        key -= t.group_counts(g, req)
    kmin = key[ok].min()
    cand = ok & (key == kmin)
    terms = W.score_terms(t, req, sched.policy, n_ok)
    _commit(sched, it, t.uuids[sched.best(req, cand, terms)], res, mode)


def _host_centric(
    sched: Scheduler, items: list[_Item], exclude: tuple[str, ...], res: BatchResult, mode: str
) -> None:
    """pack: fill the hosts one at a time, each with the remaining item that keeps the host's usage
    closest in direction to r, the mix of what is still to be placed on the hosts still open, so
    the items left at the end still fit together (fewer hosts than best fit: engine.md §7 P4)."""
    import numpy as np

    t = sched.table
    # Interchangeable classes: equal demand and filter signature.
    classes: dict[tuple, list[_Item]] = {}
    for it in items:
        r = it.req
        v = r.vm
        sig = (
            r.mem,
            r.mem_max,
            r.mem_st,
            r.vcpus,
            r.max_vcpus,
            r.srs,
            r.networks,
            v.affinity,
            (v.last_boot_cpu_vendor, v.last_boot_cpu_flags) if r.cpu_applies else None,
            r.source_version,
        )
        if r.strict_anti or r.strict_aff or len(it.vms) > 1:
            sig = sig + (it.uuid,)  # rules depend on the members: keep such items apart
        classes.setdefault(sig, []).append(it)
    reps = [sorted(c, key=lambda it: it.uuid) for c in classes.values()]
    reps.sort(key=lambda c: c[0].uuid)
    k = len(reps)
    c_mem = np.array([c[0].req.mem for c in reps], dtype=np.int64)
    c_memf = np.array([(c[0].req.mem_max if t.dynamic else c[0].req.mem) for c in reps], dtype=np.float64)
    c_vcpu = np.array([c[0].req.vcpus for c in reps], dtype=np.int64)
    c_dom = np.array([c[0].dom for c in reps], dtype=np.float64)
    c_left = np.array([len(c) for c in reps], dtype=np.int64)
    c_pos = [0] * k
    any_aff = any(it.req.vm.affinity for c in reps for it in c)
    has_rules = np.array([bool(c[0].req.strict_aff or c[0].req.strict_anti) for c in reps], dtype=bool)
    # Static feasibility (filters 1–7 and the per-VM pCPU check) per class over hosts.
    static = np.zeros((k, t.n), dtype=bool)
    for j, c in enumerate(reps):
        r = c[0].req
        ok = t.base_ok.copy()
        for f in F.SIGNATURE_FILTERS:  # the host-state filters are in base_ok
            m = f.mask(t, r)
            if m is not None:
                ok = ok & m
        ok = ok & (t.cpu_count >= r.max_vcpus)
        static[j] = ok
    # Class rank by uuid of its next item, for ties (larger dominant share first, then uuid).
    excl = {t.index[h] for h in exclude if h in t.index}
    usable = t.live & t.enabled & t.not_evacuating
    memload = t.mem_max if t.dynamic else t.mem
    host_keys = []
    for i in range(t.n):
        if i in excl or not usable[i]:
            continue
        ld = max(
            memload[i] / t.mem_cap_f[i] if t.mem_cap_f[i] > 0 else 1.0,
            t.vcpu[i] / t.vcpu_cap_f[i] if t.vcpu_cap_f[i] > 0 else 1.0,
        )
        host_keys.append((-ld, -int(t.mem_cap[i]), -int(t.vcpu_cap[i]), t.uuids[i], i))
    host_keys.sort()
    order_hosts = [hk[-1] for hk in host_keys]
    # r = (unplaced demand + load of open hosts) / capacity of open hosts.
    dem_mem = float((c_memf * c_left).sum())
    dem_vcpu = float((c_vcpu * c_left).sum())
    open_idx = np.array(order_hosts, dtype=np.int64)
    open_cap_mem = float(t.mem_cap_f[open_idx].sum()) if len(open_idx) else 0.0
    open_cap_vcpu = float(t.vcpu_cap_f[open_idx].sum()) if len(open_idx) else 0.0
    open_load_mem = float(memload[open_idx].sum()) if len(open_idx) else 0.0
    open_load_vcpu = float(t.vcpu[open_idx].sum()) if len(open_idx) else 0.0
    for i in order_hosts:
        if not c_left.any():
            break
        cap_m, cap_c = t.mem_cap[i], t.vcpu_cap[i]
        cap_mf, cap_cf = t.mem_cap_f[i], t.vcpu_cap_f[i]
        while True:
            fit = static[:, i] & (c_left > 0) & (t.mem[i] + c_mem <= cap_m) & (t.vcpu[i] + c_vcpu <= cap_c)
            if has_rules.any():
                for j in np.nonzero(fit & has_rules)[0]:
                    r = reps[j][c_pos[j]].req
                    rm = F.BY_NAME["rules"].mask(t, r)
                    if rm is not None and not rm[i]:
                        fit[j] = False
            cand = np.nonzero(fit)[0]
            if len(cand) == 0:
                break
            um = (memload[i] + c_memf[cand]) / cap_mf
            if t.dynamic:
                um = np.minimum(1.0, um)
            uc = (t.vcpu[i] + c_vcpu[cand]) / cap_cf
            rm_ = (dem_mem + open_load_mem) / open_cap_mem if open_cap_mem > 0 else 0.0
            rc_ = (dem_vcpu + open_load_vcpu) / open_cap_vcpu if open_cap_vcpu > 0 else 0.0
            rn = math.hypot(rm_, rc_) or 1.0
            norm = np.hypot(um, uc)
            cos = (um * rm_ + uc * rc_) / (norm * rn)
            metric = np.round(1.0 - cos, 4)
            if any_aff:
                # An item preferring this host (its affinity) goes first.
                aff = np.array([0 if reps[j][c_pos[j]].req.vm.affinity == t.uuids[i] else 1 for j in cand])
                keep = aff == aff.min()
                cand, metric = cand[keep], metric[keep]
            sel = cand[metric == metric.min()]
            if len(sel) == 1:
                pick = int(sel[0])
            else:  # ties: larger dominant share, then uuid of the class's next item
                pick = min(sel.tolist(), key=lambda j: (-c_dom[j], reps[j][c_pos[j]].uuid))
            it = reps[pick][c_pos[pick]]
            c_pos[pick] += 1
            c_left[pick] -= 1
            before_m, before_c = float(memload[i]), float(t.vcpu[i])
            _commit(sched, it, t.uuids[i], res, mode)
            dem_mem -= c_memf[pick]
            dem_vcpu -= c_vcpu[pick]
            open_load_mem += float(memload[i]) - before_m
            open_load_vcpu += float(t.vcpu[i]) - before_c
        # Host closed: it leaves the "open" pool used by the target ratio r.
        open_cap_mem -= cap_mf
        open_cap_vcpu -= cap_cf
        open_load_mem -= float(memload[i])
        open_load_vcpu -= float(t.vcpu[i])
    for j, c in enumerate(reps):
        for it in c[c_pos[j] :]:
            _fail(sched, it, exclude, res)


def batch_place(
    pool: Any,
    vms: Iterable[str],
    *,
    policy: str | None = None,
    seed: int | None = None,
    mode: str = F.START,
    force: bool = False,
    exclude: Iterable[str] = (),
    ha: bool = True,
    ha_order: bool = False,
) -> BatchResult:
    """Convenience: batch-place on ``pool`` itself (mutated). Pass ``pool.copy()`` for a dry run."""
    return place_batch(
        Scheduler(pool, policy, seed),
        list(vms),
        mode=mode,
        force=force,
        exclude=exclude,
        ha=ha,
        ha_order=ha_order,
    )
