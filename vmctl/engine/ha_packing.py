"""The HA restart packer (engine.md §3.2): first fit, best fit, then a capped depth-first search.

A part of :class:`vmctl.engine.ha.Planner`, kept here so that a reader looking for how one failure
set is packed finds it by name. :class:`Packer` is a mixin: it reads the planner's state (free_mem,
free_vcpu, cap_mem, cap_vcpu, uuids, ff_order, prot, sig_ok, strict, group_hosts,
any_strict_prot) and its per-host class cache (_cls_cache); the planner builds all of it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from vmctl.engine.snapshot import VMState

DFS_MAX_VMS = 16
DFS_NODE_CAP = 100_000


class ProtectedVM:
    """One protected VM as the planner sees it: demand at m_st, placement signature id, dominant
    share and strict groups (slots: there is one per protected VM of the pool)."""

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


class Packer:
    """Plan the restart of a failure set's protected VMs on the survivors (see the module)."""

    # ---- the packer (engine.md §3.2) -----------------------------------------------------------
    def _classes(self, i: int) -> tuple[dict[tuple, list], list[ProtectedVM]]:
        """Host i's protected VMs as interchangeable blocks (same signature and demand, no strict
        group): key → [dom, smallest uuid, VMs]; plus the VMs with strict groups."""
        cached = self._cls_cache.get(i)
        if cached is not None and cached[0] is self.prot[i]:
            return cached[1], cached[2]
        blocks: dict[tuple, list] = {}
        grouped: list[ProtectedVM] = []
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
        grouped: list[ProtectedVM] = []
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

    def _groups_ok(self, x: ProtectedVM, h: int, gcount: dict[str, dict[int, int]], fset: set[int]) -> bool:
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
        grouped: list[ProtectedVM],
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

    def _best_fit(self, vms: list[ProtectedVM], surv: list[int], fset: set[int]) -> PackResult:
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

    def _search(self, vms: list[ProtectedVM], surv: list[int], fset: set[int]) -> PackResult | None:
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
