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

import bisect
import copy
import heapq
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmctl.engine.snapshot import RESTART, PoolState, VMState
from vmctl.errors import Ref, VmctlError

DFS_MAX_VMS = 16
DFS_NODE_CAP = 100_000
#: The code of admission control and of filter 11 (the placement filters list it with theirs).
HA_CODE = "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN"


# ---------------------------------------------------------------------------------------------------
# The planner: per-host free vectors at m_st and the protected VMs, built once per snapshot.
# ---------------------------------------------------------------------------------------------------
class _VM:
    __slots__ = ("uuid", "mem", "vcpu", "sig", "dom", "groups", "vm")

    def __init__(self, vm: VMState, dom: float, sig: int, groups: tuple[str, ...]) -> None:
        self.uuid = vm.uuid
        self.mem = vm.m_st
        self.vcpu = vm.vcpus
        self.sig = sig
        self.dom = dom
        self.groups = groups
        self.vm = vm


@dataclass(slots=True)
class PackResult:
    """ok: every protected VM of the failure set has a target. assignment: vm uuid → host uuid
    (what was placed). unplaced: the first protected VM left without a target (None when ok).
    method: ``first-fit`` | ``best-fit`` | ``search`` | ``none``."""

    ok: bool
    assignment: dict[str, str]
    unplaced: str | None
    method: str
    usage: dict[int, tuple[int, int]] | None = None  # survivor index → (memory, vCPUs) the plan uses


class Planner:
    """HA planning state for one snapshot.

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
        self.prot: list[list[_VM]] = [[] for _ in range(n)]
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

    def _entry(self, vm: VMState) -> _VM:
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
        return _VM(vm, dom, sid, groups)

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

    # ---- the packer (engine.md §3.2) -----------------------------------------------------------
    def _classes(self, i: int) -> tuple[dict[tuple, list], list[_VM]]:
        """Host i's protected VMs as interchangeable blocks (same signature and demand, no strict
        group): key → [dom, smallest uuid, VMs]; plus the VMs with strict groups."""
        cached = self._cls_cache.get(i)
        if cached is not None and cached[0] is self.prot[i]:
            return cached[1], cached[2]
        blocks: dict[tuple, list] = {}
        grouped: list[_VM] = []
        for x in self.prot[i]:  # sorted by (-dom, uuid): a block's first VM has its smallest uuid
            if x.groups:
                grouped.append(x)
                continue
            key = (x.sig, x.mem, x.vcpu)
            e = blocks.get(key)
            if e is None:
                blocks[key] = [x.dom, x.uuid, [x]]
            else:
                e[2].append(x)
        self._cls_cache[i] = (self.prot[i], blocks, grouped)
        return blocks, grouped

    def pack(self, failed: Sequence[int], assign: bool = False, usage: bool = False) -> PackResult:
        """Plan the restart of the protected VMs of ``failed`` (host indices) on the survivors:
        first fit, then best fit, then (≤ 16 VMs) a capped depth-first search. ``assign``: also
        return the VM → host assignment (plan-exists does not need it)."""
        self.evaluations += 1
        fset = set(failed)
        merged: dict[tuple, list] = {}
        grouped: list[_VM] = []
        for i in failed:
            blocks, g = self._classes(i)
            grouped.extend(g)
            for key, (dom, u0, xs) in blocks.items():
                m = merged.get(key)
                if m is None:
                    merged[key] = [dom, u0, [xs], len(xs)]
                else:
                    if u0 < m[1]:
                        m[1] = u0
                    m[2].append(xs)
                    m[3] += len(xs)
        if not merged and not grouped:
            return PackResult(True, {}, None, "none")
        surv = [i for i in self.ff_order if i not in fset]
        res = self._first_fit(merged, grouped, surv, fset, assign, usage)
        if res.ok:
            return res
        vms = sorted((x for i in failed for x in self.prot[i]), key=lambda x: (-x.dom, x.uuid))
        bf = self._best_fit(vms, surv, fset)
        if bf.ok:
            return bf
        if len(vms) <= DFS_MAX_VMS:
            ds = self._search(vms, surv, fset)
            if ds is not None:
                return ds
        return res

    def _groups_ok(self, x: _VM, h: int, gcount: dict[str, dict[int, int]], fset: set[int]) -> bool:
        for g in x.groups:
            per = gcount[g]
            if self.strict[g] == "affinity":
                for j, c in per.items():
                    if c > 0 and j != h and j not in fset:
                        return False
            elif per.get(h, 0) > 0:
                return False
        return True

    def _gcount(self, fset: set[int]) -> dict[str, dict[int, int]] | None:
        if not self.any_strict_prot:
            return None
        out: dict[str, dict[int, int]] = {}
        for g, per in self.group_hosts.items():
            out[g] = {j: c for j, c in per.items() if j not in fset}
        return out

    def _first_fit(
        self,
        merged: dict[tuple, list],
        grouped: list[_VM],
        surv: list[int],
        fset: set[int],
        assign: bool,
        usage: bool = False,
    ) -> PackResult:
        """First fit in decreasing dominant share, then smallest uuid. Interchangeable VMs form one
        block placed in bulk (per-VM first fit fills the first host that fits, then the next), so
        a failure set costs O(blocks × survivors), not O(VMs × survivors)."""
        fm = self.free_mem[:]
        fv = self.free_vcpu[:]
        gcount = self._gcount(fset) if grouped else None
        items: list[tuple] = [(-dom, u0, key, lists, n) for key, (dom, u0, lists, n) in merged.items()]
        items.extend((-x.dom, x.uuid, None, x, 1) for x in grouped)
        items.sort(key=lambda t: (t[0], t[1]))
        out: dict[str, str] = {}
        uuids = self.uuids
        for _, _, key, payload, count in items:
            if key is None:  # a VM with strict groups: one by one, rules checked
                x = payload
                ok_sig = self.sig_ok[x.sig]
                for h in surv:
                    if (
                        ok_sig[h]
                        and fm[h] >= x.mem
                        and fv[h] >= x.vcpu
                        and (gcount is None or self._groups_ok(x, h, gcount, fset))
                    ):
                        fm[h] -= x.mem
                        fv[h] -= x.vcpu
                        if gcount is not None:
                            for g in x.groups:
                                gcount[g][h] = gcount[g].get(h, 0) + 1
                        if assign:
                            out[x.uuid] = uuids[h]
                        break
                else:
                    return PackResult(False, out, x.uuid, "first-fit")
                continue
            sig, mem, vcpu = key
            left = count
            ok_sig = self.sig_ok[sig]
            order = None
            if assign:
                order = sorted((x for xs in payload for x in xs), key=lambda x: x.uuid)
            for h in surv:
                if not ok_sig[h]:
                    continue
                a = fm[h] // mem if mem else left
                if a <= 0:
                    continue
                b = fv[h] // vcpu if vcpu else left
                if b <= 0:
                    continue
                cap = left if left < a else a
                if b < cap:
                    cap = b
                if order is not None:
                    for x in order[count - left : count - left + cap]:
                        out[x.uuid] = uuids[h]
                fm[h] -= cap * mem
                fv[h] -= cap * vcpu
                left -= cap
                if left == 0:
                    break
            if left:
                rest = sorted((x for xs in payload for x in xs), key=lambda x: x.uuid)
                return PackResult(False, out, rest[count - left].uuid, "first-fit")
        used = None
        if usage:
            bm, bv = self.free_mem, self.free_vcpu
            used = {h: (bm[h] - fm[h], bv[h] - fv[h]) for h in surv if fm[h] != bm[h] or fv[h] != bv[h]}
        return PackResult(True, out, None, "first-fit", used)

    def _best_fit(self, vms: list[_VM], surv: list[int], fset: set[int]) -> PackResult:
        fm = self.free_mem[:]
        fv = self.free_vcpu[:]
        gcount = self._gcount(fset)
        assign: dict[str, str] = {}
        for x in vms:
            ok_sig = self.sig_ok[x.sig]
            best = None
            for h in surv:
                if not ok_sig[h] or fm[h] < x.mem or fv[h] < x.vcpu:
                    continue
                if gcount is not None and x.groups and not self._groups_ok(x, h, gcount, fset):
                    continue
                um = 1.0 - (fm[h] - x.mem) / self.cap_mem[h] if self.cap_mem[h] else 1.0
                uc = 1.0 - (fv[h] - x.vcpu) / self.cap_vcpu[h] if self.cap_vcpu[h] else 1.0
                key = (round(math.hypot(1.0 - um, 1.0 - uc), 12), self.uuids[h])
                if best is None or key < best[0]:
                    best = (key, h)
            if best is None:
                return PackResult(False, assign, x.uuid, "best-fit")
            h = best[1]
            fm[h] -= x.mem
            fv[h] -= x.vcpu
            if gcount is not None:
                for g in x.groups:
                    gcount[g][h] = gcount[g].get(h, 0) + 1
            assign[x.uuid] = self.uuids[h]
        return PackResult(True, assign, None, "best-fit")

    def _search(self, vms: list[_VM], surv: list[int], fset: set[int]) -> PackResult | None:
        """Depth-first search, skipping survivors symmetric to one already tried at the node;
        capped at DFS_NODE_CAP nodes (reaching the cap counts as no plan)."""
        fm = self.free_mem[:]
        fv = self.free_vcpu[:]
        gcount = self._gcount(fset)
        assign: list[int] = [-1] * len(vms)
        nodes = 0

        def rec(k: int) -> bool:
            nonlocal nodes
            if k == len(vms):
                return True
            x = vms[k]
            seen: set[tuple] = set()
            ok_sig = self.sig_ok[x.sig]
            for h in surv:
                nodes += 1
                if nodes > DFS_NODE_CAP:
                    return False
                if not ok_sig[h] or fm[h] < x.mem or fv[h] < x.vcpu:
                    continue
                if gcount is not None and x.groups and not self._groups_ok(x, h, gcount, fset):
                    continue
                sym = (fm[h], fv[h], tuple(ok[h] for ok in self.sig_ok), self.cap_mem[h], self.cap_vcpu[h])
                if gcount is None or not x.groups:
                    if sym in seen:
                        continue
                    seen.add(sym)
                fm[h] -= x.mem
                fv[h] -= x.vcpu
                if gcount is not None:
                    for g in x.groups:
                        gcount[g][h] = gcount[g].get(h, 0) + 1
                assign[k] = h
                if rec(k + 1):
                    return True
                fm[h] += x.mem
                fv[h] += x.vcpu
                if gcount is not None:
                    for g in x.groups:
                        gcount[g][h] -= 1
                if nodes > DFS_NODE_CAP:
                    return False
            return False

        if rec(0):
            return PackResult(
                True, {vms[k].uuid: self.uuids[h] for k, h in enumerate(assign)}, None, "search"
            )
        return None

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

    # ---- quick tests (engine.md §3.3 steps 2 and 3) ----------------------------------------------
    def necessary_fails(self, r: int) -> list[int] | None:
        """Exact necessary test: a witness (host indices) when it proves no plan, else None."""
        n = self.n
        if r <= 0 or r > n:
            return None
        dims = ((self.prot_mem, self.free_mem), (self.prot_vcpu, self.free_vcpu))
        for prot, free in dims:
            total_free = sum(free)
            order = sorted(range(n), key=lambda i: (-(prot[i] + free[i]), self.uuids[i]))
            top = order[:r]
            if sum(prot[i] for i in top) > total_free - sum(free[i] for i in top):
                return sorted(top, key=lambda i: self.uuids[i])
        return None

    def sufficient_holds(self, r: int) -> bool:
        """Slot test: true proves that every failure set of size r has a plan."""
        if self.any_strict_prot or not self.all_agile:
            return False
        if self.total_prot == 0:
            return True
        slot_m = max((x.mem for lst in self.prot for x in lst), default=0)
        slot_c = max((x.vcpu for lst in self.prot for x in lst), default=0)
        slots = []
        for i in range(self.n):
            s = []
            if slot_m > 0:
                s.append(max(0, self.free_mem[i]) // slot_m)
            if slot_c > 0:
                s.append(max(0, self.free_vcpu[i]) // slot_c)
            slots.append(min(s) if s else 0)
        counts = sorted(self.prot_count, reverse=True)
        top_slots = sorted(slots, reverse=True)
        return sum(counts[:r]) <= sum(slots) - sum(top_slots[:r])

    def class_slots_hold(self, r: int) -> bool:
        """A stronger sufficient test (sound; no strict group may hold protected VMs). Demand
        classes (equal memory, vCPUs and placement signature) are placed one after the other in
        decreasing dominant share. A compatible survivor offers ``min_d ⌊free_d / size_d⌋`` slots
        of class c, and every earlier VM placed anywhere removes at most ``max_d ⌈its_d / size_d⌉``
        of them. If, for every class, the compatible hosts' slots minus the r largest of them
        cover the r largest per-host needs (own count plus the slots earlier VMs may take), every
        failure set of size r has a plan. The single slot of engine.md §3.3 sizes every VM as the
        largest and needs every VM agile, which proves nothing on pools such as C96 (a few very
        large VMs among many small ones, 5% of VMs on a network only half the hosts have)."""
        if self.any_strict_prot:
            return False
        if self.total_prot == 0:
            return True
        if self._slot_cache is None:
            self._slot_cache = self._derived_slot_tables() or self._class_slot_tables()
        for t in self._slot_cache[1]:
            ss, ns = t[2], t[3]
            top_s = sum(ss[-r:]) if r else 0
            top_n = sum(ns[-r:]) if r else 0
            if top_n > t[4] - top_s:
                return False
        return True

    def _class_keys(self) -> list[tuple[int, int, int]]:
        return sorted(
            {(x.mem, x.vcpu, x.sig) for lst in self.prot for x in lst},
            key=lambda k: (-max(k[0] / self.mean_mem, k[1] / self.mean_vcpu), -k[0], -k[1], k[2]),
        )

    def _host_counts(self, h: int) -> dict[tuple[int, int, int], int]:
        c: dict[tuple[int, int, int], int] = {}
        for x in self.prot[h]:
            key = (x.mem, x.vcpu, x.sig)
            c[key] = c.get(key, 0) + 1
        return c

    def _host_values(self, keys: list, ci: int, h: int, c: dict) -> tuple[int | None, int]:
        """(slots of class ci on host h, or None when incompatible; need of host h)."""
        mc, cc, sig = keys[ci]
        slot = None
        if self.sig_ok[sig][h]:
            big = 1 << 62
            fm, fv = max(0, self.free_mem[h]), max(0, self.free_vcpu[h])
            slot = min(fm // mc if mc else big, fv // cc if cc else big)
        q = c.get(keys[ci], 0)
        for e in keys[:ci]:
            k = c.get(e, 0)
            if k:
                q += k * max(-(-e[0] // mc) if mc else 0, -(-e[1] // cc) if cc else 0)
        return slot, q

    def _class_slot_tables(self) -> tuple[list, list]:
        """(class keys, per class [slots per host, needs per host, slots ascending, needs
        ascending, total slots])."""
        keys = self._class_keys()
        counts = [self._host_counts(h) for h in range(self.n)]
        tables = []
        for ci in range(len(keys)):
            slots: list[int | None] = []
            need: list[int] = []
            for h in range(self.n):
                sl, q = self._host_values(keys, ci, h, counts[h])
                slots.append(sl)
                need.append(q)
            ss = sorted(v for v in slots if v is not None)
            tables.append([slots, need, ss, sorted(need), sum(ss)])
        return keys, tables

    def _derived_slot_tables(self) -> tuple[list, list] | None:
        """The tables of a derived planner from its base's, recomputing only the changed hosts
        (admission checks: one or two hosts), or None when that is not possible."""
        base = getattr(self, "base", None)
        if base is None or len(self.changed) > 8 or base.any_strict_prot:
            return None
        if base._slot_cache is None:
            base._slot_cache = base._class_slot_tables()
        keys, btables = base._slot_cache
        if self._class_keys() != keys:
            return None
        tables = []
        counts = {h: self._host_counts(h) for h in self.changed}
        for ci, (slots, need, ss, ns, total) in enumerate(btables):
            slots = slots[:]
            need = need[:]
            ss = ss[:]
            ns = ns[:]
            for h in self.changed:
                sl, q = self._host_values(keys, ci, h, counts[h])
                if slots[h] is not None:
                    del ss[bisect.bisect_left(ss, slots[h])]
                    total -= slots[h]
                if sl is not None:
                    bisect.insort(ss, sl)
                    total += sl
                del ns[bisect.bisect_left(ns, need[h])]
                bisect.insort(ns, q)
                slots[h], need[h] = sl, q
            tables.append([slots, need, ss, ns, total])
        return keys, tables

    # ---- interchangeable classes and failure-set enumeration -----------------------------------
    def host_classes(self) -> list[list[int]]:
        """Hosts with equal capacity, load and multiset of protected demands and no strict-group
        member are interchangeable; others are singleton classes. Sorted by danger (descending),
        then first uuid; members in uuid order."""
        classes: dict[tuple, list[int]] = {}
        member_of_strict = set()
        for per in self.group_hosts.values():
            member_of_strict.update(j for j, c in per.items() if c > 0)
        for i in range(self.n):
            h = self.hosts[i]
            if i in member_of_strict:
                key: tuple = ("single", self.uuids[i])
            else:
                key = (
                    self.cap_mem[i],
                    self.cap_vcpu[i],
                    self.cpu_count[i],
                    self.free_mem[i],
                    self.free_vcpu[i],
                    h.srs,
                    h.networks,
                    tuple(sorted((x.mem, x.vcpu, x.sig) for x in self.prot[i])),
                )
            classes.setdefault(key, []).append(i)
        out = [sorted(c, key=lambda i: self.uuids[i]) for c in classes.values()]
        out.sort(key=lambda c: (-self.danger[c[0]], self.uuids[c[0]]))
        return out

    @staticmethod
    def count_sets(sizes: list[int], r: int) -> int:
        """E(r): multisets of r classes with per-class bounds (polynomial coefficient)."""
        poly = [1] + [0] * r
        for s in sizes:
            new = [0] * (r + 1)
            for k in range(r + 1):
                if poly[k]:
                    for j in range(0, min(s, r - k) + 1):
                        new[k + j] += poly[k]
            poly = new
        return poly[r]

    def all_sets(
        self, classes: list[list[int]], r: int
    ) -> list[tuple[float, tuple[str, ...], tuple[int, ...]]]:
        """Every failure set of size r (one representative per class multiset), in danger order."""
        out: list[tuple[float, tuple[str, ...], tuple[int, ...]]] = []
        sizes = [len(c) for c in classes]
        m = len(classes)
        chosen: list[int] = []

        def emit() -> None:
            hosts = tuple(chosen)
            danger = sum(self.danger[i] for i in hosts)
            out.append((-round(danger, 12), tuple(sorted(self.uuids[i] for i in hosts)), hosts))

        # Recursion over "which class next", so the depth is at most r (not the class count).
        def rec(start: int, left: int) -> None:
            for ci in range(start, m):
                for k in range(1, min(sizes[ci], left) + 1):
                    chosen.extend(classes[ci][:k])
                    if left == k:
                        emit()
                    else:
                        rec(ci + 1, left - k)
                    del chosen[len(chosen) - k :]

        rec(0, r)
        out.sort()
        return out

    def dangerous_sets(self, classes: list[list[int]], r: int, limit: int) -> Iterable[tuple[int, ...]]:
        """The ``limit`` most dangerous failure sets, generated best-first (never all of them).
        A set is a non-decreasing sequence of class indices within the class sizes; classes are
        sorted by danger so incrementing an index never increases the danger."""
        sizes = [len(c) for c in classes]
        m = len(classes)
        start: list[int] = []
        for ci in range(m):
            start.extend([ci] * min(sizes[ci], r - len(start)))
            if len(start) == r:
                break
        if len(start) < r:
            return
        w = [self.danger[c[0]] for c in classes]

        def hosts_of(seq: tuple[int, ...]) -> tuple[int, ...]:
            out: list[int] = []
            k = 0
            while k < len(seq):
                j = k
                while j < len(seq) and seq[j] == seq[k]:
                    j += 1
                out.extend(classes[seq[k]][: j - k])
                k = j
            return tuple(out)

        def key(seq: tuple[int, ...]) -> tuple:
            hs = hosts_of(seq)
            return (-round(sum(w[c] for c in seq), 12), tuple(sorted(self.uuids[i] for i in hs)))

        s0 = tuple(start)
        heap = [(key(s0), s0)]
        seen = {s0}
        produced = 0
        while heap and produced < limit:
            _, seq = heapq.heappop(heap)
            yield hosts_of(seq)
            produced += 1
            for j in range(r):
                nxt = list(seq)
                nxt[j] += 1
                if nxt[j] >= m or (j + 1 < r and nxt[j] > nxt[j + 1]):
                    continue
                t = tuple(nxt)
                if t in seen or t.count(nxt[j]) > sizes[nxt[j]]:
                    continue
                seen.add(t)
                heapq.heappush(heap, (key(t), t))


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
    return pool.ha_enabled and not pool.ha_allow_overcommit and not pool.ha_overcommitted


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
