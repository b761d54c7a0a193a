"""Baselines and the independent checker for the migration suites (engine.md §8.2).

Plain per-host Python loops, deliberately simple and independent of the engine: they read the
snapshot's plain fields and apply the same feasibility rules (capacity, pCPUs, storage, network,
CPU and version for migrations, strict rules) so that every engine chooses within the same feasible
sets. Nothing here imports NumPy or the engine's placement code.

* ``wfd_evacuate``: evacuation by memory only, largest VM first onto the host with the most free
  memory.
* ``greedy_rebalance``: the single best move by σ reduction, no cost term, the engine's stop rule
  (max σ_d ≤ σ*, or no move reduces the metric by ε) and move limit.
* ``check_evacuation``: capacity, strict-rule and cap violations of an evacuation plan, recomputed
  from the VMs, after every wave and at the end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

RUNNING_OR_PAUSED = ("running", "paused")
EPS = 1e-4


# --- shared feasibility (plain loops) ----------------------------------------------------------------


class _Hosts:
    """Per-host capacity and load, as plain dicts."""

    def __init__(self, pool, hosts: list[str]) -> None:
        self.pool = pool
        self.hosts = hosts
        self.cap_m = {
            h: pool.hosts[h].memory_total - pool.hosts[h].memory_overhead - pool.hosts[h].memory_reserved
            for h in hosts
        }
        self.cap_c = {
            h: int(pool.hosts[h].cpu_count * (pool.hosts[h].vcpu_ratio or pool.vcpu_ratio) + 1e-9)
            for h in hosts
        }
        self.mem = {h: 0 for h in hosts}
        self.cpu = {h: 0 for h in hosts}
        self.members: dict[tuple[str, str], int] = {}  # (group, host) → running members
        for v in pool.vms.values():
            for h in _load_hosts(v):
                if h in self.mem:
                    self.mem[h] += demand_m(pool, v)
                    self.cpu[h] += v.vcpus
                    for g in v.groups:
                        self.members[(g, h)] = self.members.get((g, h), 0) + 1

    def fits(self, v, h: str, src: str | None) -> bool:
        pool = self.pool
        host = pool.hosts[h]
        if h == src or not host.live or not host.enabled or host.evacuating:
            return False
        if v.vcpus > host.cpu_count:
            return False
        if self.mem[h] + demand_m(pool, v) > self.cap_m[h] or self.cpu[h] + v.vcpus > self.cap_c[h]:
            return False
        if not v.srs <= host.srs or not v.networks <= host.networks:
            return False
        if host.cpu_vendor != v.last_boot_cpu_vendor or not v.last_boot_cpu_flags <= host.cpu_flags:
            return False
        if src is not None and host.software_version < pool.hosts[src].software_version:
            return False
        for g in v.groups:
            grp = pool.groups.get(g)
            if grp is None or not grp.strict:
                continue
            if grp.placement == "anti-affinity" and self.members.get((g, h), 0) > 0:
                return False
            if grp.placement == "affinity":
                return False  # baselines never split or move affinity members
        return True

    def move(self, v, src: str, dst: str) -> None:
        m = demand_m(self.pool, v)
        for h, sign in ((src, -1), (dst, 1)):
            if h in self.mem:
                self.mem[h] += sign * m
                self.cpu[h] += sign * v.vcpus
                for g in v.groups:
                    self.members[(g, h)] = self.members.get((g, h), 0) + sign


def _load_hosts(v) -> list[str]:
    out = []
    if v.power_state in RUNNING_OR_PAUSED and v.resident_on:
        out.append(v.resident_on)
    if v.scheduled_on and v.scheduled_on not in out:
        out.append(v.scheduled_on)
    return out


def demand_m(pool, v) -> int:
    if pool.memory_policy == "none":
        return v.memory_static_max + v.memory_overhead
    return max(v.memory_dynamic_min, v.memory_reservation) + v.memory_overhead


# --- wfd-evacuate -------------------------------------------------------------------------------------


@dataclass
class WfdResult:
    ok: bool
    targets: dict[str, str] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def wfd_evacuate(pool, host: str) -> WfdResult:
    """Largest VM (memory) first onto the feasible host with the most free memory (ties: uuid)."""
    others = [h for h in sorted(pool.hosts) if h != host]
    st = _Hosts(pool, others)
    vms = sorted(
        (v for v in pool.vms.values() if v.power_state in RUNNING_OR_PAUSED and v.resident_on == host),
        key=lambda v: (-demand_m(pool, v), v.uuid),
    )
    res = WfdResult(ok=True)
    for v in vms:
        if v.immobile:
            res.ok = False
            res.failed.append(v.uuid)
            continue
        best = None
        for h in others:
            if st.fits(v, h, host):
                free = st.cap_m[h] - st.mem[h]
                if best is None or free > best[0]:
                    best = (free, h)
        if best is None:
            res.ok = False
            res.failed.append(v.uuid)
            continue
        res.targets[v.uuid] = best[1]
        st.move(v, host, best[1])
    return res


# --- greedy-rebalance --------------------------------------------------------------------------------


@dataclass
class GreedyResult:
    moves: list[tuple[str, str, str]]  # (vm, from, to)
    bytes: float
    sigma_before: tuple[float, float]
    sigma_after: tuple[float, float]
    stop: str


def _sigma(values: list[float]) -> float:
    n = len(values)
    mu = sum(values) / n
    return math.sqrt(max(0.0, sum((x - mu) ** 2 for x in values) / n))


def greedy_rebalance(
    pool, *, threshold: int = 3, max_moves: int | None = None, bytes_of=None, eps: float = EPS
) -> GreedyResult:
    """Each step takes the single move with the largest reduction of σ_memory + σ_vcpu (no cost),
    among running VMs of the live enabled hosts, until max σ_d ≤ σ*, no move reduces the sum by
    at least ε, or the move limit. ``bytes_of(vm, src, dst)`` prices the moves for the report."""
    hosts = [h for h in sorted(pool.hosts) if pool.hosts[h].live and pool.hosts[h].enabled]
    n = len(hosts)
    st = _Hosts(pool, hosts)
    target = math.inf if threshold <= 1 else (5 - threshold) * 0.1 / math.sqrt(max(1, n))
    where = {
        v.uuid: v.resident_on
        for v in pool.vms.values()
        if v.power_state == "running" and v.resident_on in st.mem and not v.immobile and not v.scheduled_on
    }
    on: dict[str, list[str]] = {h: [] for h in hosts}
    for u in sorted(where):
        on[where[u]].append(u)

    def loads() -> tuple[list[float], list[float]]:
        return ([st.mem[h] / st.cap_m[h] for h in hosts], [st.cpu[h] / st.cap_c[h] for h in hosts])

    lm, lc = loads()
    before = (_sigma(lm), _sigma(lc))
    moves: list[tuple[str, str, str]] = []
    total_bytes = 0.0
    stop = "target-reached"
    while True:
        lm, lc = loads()
        sm, sc = _sigma(lm), _sigma(lc)
        if max(sm, sc) <= target:
            break
        if max_moves is not None and len(moves) >= max_moves:
            stop = "max-moves"
            break
        s1m, s1c = sum(lm), sum(lc)
        s2m, s2c = sum(x * x for x in lm), sum(x * x for x in lc)
        best = None
        for si, s in enumerate(hosts):
            seen = set()
            for u in on[s]:
                v = pool.vms[u]
                key = (v.vcpus, demand_m(pool, v), v.srs, v.networks, v.groups)
                if key in seen:  # an identical VM on the same host gives the same moves
                    continue
                seen.add(key)
                xm_s = demand_m(pool, v) / st.cap_m[s]
                xc_s = v.vcpus / st.cap_c[s]
                for ti, t in enumerate(hosts):
                    if t == s or not st.fits(v, t, s):
                        continue
                    xm_t = demand_m(pool, v) / st.cap_m[t]
                    xc_t = v.vcpus / st.cap_c[t]
                    m1 = s1m - xm_s + xm_t
                    m2 = s2m - lm[si] ** 2 + (lm[si] - xm_s) ** 2 - lm[ti] ** 2 + (lm[ti] + xm_t) ** 2
                    c1 = s1c - xc_s + xc_t
                    c2 = s2c - lc[si] ** 2 + (lc[si] - xc_s) ** 2 - lc[ti] ** 2 + (lc[ti] + xc_t) ** 2
                    new = math.sqrt(max(0.0, m2 / n - (m1 / n) ** 2)) + math.sqrt(
                        max(0.0, c2 / n - (c1 / n) ** 2)
                    )
                    gain = round(sm + sc - new, 9)
                    cand = (-gain, u, t)
                    if best is None or cand < best:
                        best = cand
        if best is None or -best[0] < eps:
            stop = "no-qualifying-move"
            break
        _, u, t = best
        v = pool.vms[u]
        s = where[u]
        st.move(v, s, t)
        on[s].remove(u)
        on[t].append(u)
        on[t].sort()
        where[u] = t
        moves.append((u, s, t))
        if bytes_of is not None:
            total_bytes += bytes_of(v, s, t)
    lm, lc = loads()
    return GreedyResult(moves, total_bytes, before, (_sigma(lm), _sigma(lc)), stop)


# --- the independent evacuation checker -------------------------------------------------------------


def _violations(pool, where: dict[str, str], affinity: bool) -> list[str]:
    out = []
    mem: dict[str, int] = {}
    cpu: dict[str, int] = {}
    members: dict[str, list[str]] = {}
    for v in pool.vms.values():
        h = where.get(v.uuid, v.resident_on if v.power_state in RUNNING_OR_PAUSED else None)
        if h is None:
            continue
        mem[h] = mem.get(h, 0) + demand_m(pool, v)
        cpu[h] = cpu.get(h, 0) + v.vcpus
        if v.vcpus > pool.hosts[h].cpu_count:
            out.append(f"pcpus:{v.uuid}")
        for g in v.groups:
            members.setdefault(g, []).append(h)
    for h in sorted(mem):
        host = pool.hosts[h]
        if mem[h] > host.memory_total - host.memory_overhead - host.memory_reserved:
            out.append(f"memory:{h}")
        if cpu[h] > int(host.cpu_count * (host.vcpu_ratio or pool.vcpu_ratio) + 1e-9):
            out.append(f"vcpu:{h}")
    for g in sorted(members):
        grp = pool.groups.get(g)
        if grp is None or not grp.strict:
            continue
        hs = members[g]
        if grp.placement == "anti-affinity" and len(hs) != len(set(hs)):
            out.append(f"anti-affinity:{g}")
        if affinity and grp.placement == "affinity" and len(set(hs)) > 1:
            out.append(f"affinity:{g}")
    return out


def check_evacuation(
    pool, host: str, moves: list[tuple[int, str, str, bool]], storage_map: dict[str, str] | None = None
) -> list[str]:
    """Violations of a plan given as (wave, vm, destination, storage motion) rows: capacity and
    strict rules after every wave and at the end (affinity only at the end, since an item's
    members may travel in different waves), caps within every wave, and completeness."""
    storage_map = storage_map or {}
    out: list[str] = []
    to_move = {
        v.uuid for v in pool.vms.values() if v.power_state in RUNNING_OR_PAUSED and v.resident_on == host
    }
    planned = {vm for _, vm, _, _ in moves}
    if planned != to_move:
        out.append("incomplete")
    where: dict[str, str] = {}
    for wave in sorted({w for w, _, _, _ in moves}):
        rows = [r for r in moves if r[0] == wave]
        host_use: dict[str, int] = {}
        link_use: dict[str, int] = {}
        sr_use: dict[str, int] = {}
        for _, vm, dst, storage in rows:
            v = pool.vms[vm]
            if dst == host:
                out.append(f"to-source:{vm}")
            for h in (host, dst):
                host_use[h] = host_use.get(h, 0) + (4 if storage else 1)
                link_use[h] = link_use.get(h, 0) + 1
            moved = {d.sr for d in v.vdis if d.uuid in storage_map}
            for sr in v.srs:
                sr_use[sr] = sr_use.get(sr, 0) + (16 if sr in moved else 1)
            for t in {storage_map[d.uuid] for d in v.vdis if d.uuid in storage_map}:
                sr_use[t] = sr_use.get(t, 0) + 16
        net = pool.migration_network or next(
            (n for n in sorted(pool.networks) if pool.networks[n].management), None
        )
        for h, u in sorted(host_use.items()):
            if u > 8:
                out.append(f"cap-host:{wave}:{h}")
        for h, u in sorted(link_use.items()):
            speed = pool.hosts[h].pif_speed(net) if net else None
            if u > (4 if speed and speed < 10_000 else 8):
                out.append(f"cap-link:{wave}:{h}")
        for s, u in sorted(sr_use.items()):
            if u > 128:
                out.append(f"cap-sr:{wave}:{s}")
        for _, vm, dst, _ in rows:
            where[vm] = dst
        out.extend(f"wave{wave}:{x}" for x in _violations(pool, where, affinity=False))
    out.extend(_violations(pool, where, affinity=True))
    return out
