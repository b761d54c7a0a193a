"""Interchangeable host classes and failure-set enumeration (engine.md §3.3 step 4).

A part of :class:`vmctl.engine.ha.Planner`: :class:`FailureSets` is a mixin reading the planner's
state (n, hosts, uuids, cap_mem, cap_vcpu, cpu_count, free_mem, free_vcpu, prot, danger,
group_hosts).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class FailureSets:
    """Which failure sets to pack, in danger order: all of them, or the most dangerous first."""

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
