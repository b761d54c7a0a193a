"""The quick tests of plan-exists(r) (engine.md §3.3 steps 2 and 3), with the class-slot tables.

A part of :class:`vmctl.engine.ha.Planner`: :class:`QuickTests` is a mixin reading the planner's
state (n, uuids, free_mem, free_vcpu, prot, prot_mem, prot_vcpu, prot_count, sig_ok, mean_mem,
mean_vcpu, total_prot, any_strict_prot, all_agile) and, for a derived planner, base and changed;
it caches the class-slot tables in _slot_cache.
"""

from __future__ import annotations

import bisect


class QuickTests:
    """Necessary test (a witness proves no plan) and two sufficient tests (see the module)."""

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
