"""Benchmark scenarios (engine.md §8.4): inventories built from the trace, derived entirely from
the seed (uuids included), so the same seed gives byte-identical inventories."""

from __future__ import annotations

import hashlib
import math
import random
import uuid as _uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench import trace
from vmctl.engine.snapshot import GroupState, HostState, NetworkState, PoolState, SRState, VMState

GiB = 1024**3
NS = _uuid.UUID("6f1c3a52-0d55-4b8e-9a51-6c2f0e4b7d10")  # namespace of benchmark uuids

SKUS = ((16, 96), (24, 144), (32, 192))  # S1/S2 host SKUs: cores, GiB
PRIORITY_MIX = (("restart", 0.5), ("best-effort", 0.25), ("no-restart", 0.25))


_NS_BYTES = NS.bytes


def make_uuid(seed: int, kind: str, n: int) -> str:
    """uuid5(NS, "<seed>:<kind>:<n>"), computed without building UUID objects (hot in replays)."""
    h = bytearray(hashlib.sha1(_NS_BYTES + f"{seed}:{kind}:{n}".encode()).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


@dataclass
class Scenario:
    """A built scenario. ``host_order``: the inventory (creation) order the Nova-like baselines
    walk; ``vm_order``: the VMs in arrival order; ``lb``: the lower bound of §7 when meaningful."""

    name: str
    seed: int
    pool: PoolState
    host_order: list[str]
    vm_order: list[str]
    lb: int | None = None
    info: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Demand:
    vcpus: int
    memory: int  # flavor memory (static max), bytes


def demands_of(arrivals: list[trace.Arrival]) -> list[Demand]:
    return [Demand(a.flavor.vcpus, a.flavor.memory) for a in arrivals]


def draw_w(peak: list[trace.Arrival], n: int, seed: int) -> list[trace.Arrival]:
    """W(N): N draws with replacement by random.Random(seed + 1).randrange, kept in snapshot order
    (sorted by snapshot index, so the sequence keeps the trace's arrival order)."""
    rng = random.Random(seed + 1)
    idx = sorted(rng.randrange(len(peak)) for _ in range(n))
    return [peak[i] for i in idx]


_TRACE_CACHE: dict[tuple, list[trace.Arrival]] = {}


def arrivals(trace_dir: Path | str | None, seed: int) -> list[trace.Arrival]:
    key = (str(trace_dir), seed)
    if key not in _TRACE_CACHE:
        _TRACE_CACHE[key] = trace.load(trace_dir, seed)
    return _TRACE_CACHE[key]


def peak(trace_dir: Path | str | None, seed: int, lines: int | None = None) -> list[trace.Arrival]:
    arr = arrivals(trace_dir, seed)
    if lines is not None:
        last = trace.FIRST_T + (lines - 1) * trace.STEP
        arr = [a for a in arr if a.t <= last]
    return trace.peak_snapshot(arr)[1]


def build_pool(
    seed: int,
    hosts: list[tuple[int, int]],
    demands: list[Demand],
    *,
    ratio: float = 4.0,
    policy: str = "balanced",
    priorities: bool = False,
    tolerance: int = 1,
    name: str = "bench",
) -> Scenario:
    """The common inventory of §8.4: one pool, one shared SR holding every VDI, a local SR per host,
    one 10 Gbit/s network on all hosts, a second network on every other host used by 5% of the
    VMs, 10% of the VMs in soft anti-affinity groups of 3–5; VMs halted, in ``demands`` order."""
    p = PoolState(
        uuid=make_uuid(seed, "pool", 0),
        name=name,
        policy=policy,
        seed=0,
        vcpu_ratio=ratio,
        ha_failures_to_tolerate=tolerance,
    )
    net0 = make_uuid(seed, "network", 0)
    net1 = make_uuid(seed, "network", 1)
    shared = make_uuid(seed, "sr", 0)
    p.add_network(NetworkState(uuid=net0, name="net0", management=True))
    p.add_network(NetworkState(uuid=net1, name="net1"))
    host_order: list[str] = []
    for i, (cores, gib) in enumerate(hosts):
        hu = make_uuid(seed, "host", i)
        local = make_uuid(seed, "local-sr", i)
        p.add_sr(SRState(uuid=local, name=f"local{i}", hosts=frozenset({hu})))
        nets = frozenset({net0, net1}) if i % 2 == 0 else frozenset({net0})
        speeds = tuple(sorted((n, 10_000) for n in nets))
        p.add_host(
            HostState(
                uuid=hu,
                name=f"h{i:04d}",
                cpu_count=cores,
                memory_total=gib * GiB,
                srs=frozenset({shared, local}),
                networks=nets,
                pif_speeds=speeds,
                is_master=(i == 0),
            )
        )
        host_order.append(hu)
    p.add_sr(SRState(uuid=shared, name="shared", shared=True, hosts=frozenset(host_order)))
    n = len(demands)
    rng = random.Random(seed + 2)
    second = set(rng.sample(range(n), round(0.05 * n))) if n else set()
    grng = random.Random(seed + 3)
    grouped = sorted(grng.sample(range(n), round(0.10 * n))) if n else []
    grng.shuffle(grouped)
    group_of: dict[int, str] = {}
    k = g = 0
    while k < len(grouped):
        size = grng.randint(3, 5)
        gu = make_uuid(seed, "group", g)
        p.add_group(GroupState(uuid=gu, name=f"anti{g}", placement="anti-affinity", strict=False))
        for j in grouped[k : k + size]:
            group_of[j] = gu
        k += size
        g += 1
    prng = random.Random(seed + 4)
    vm_order = []
    for j, d in enumerate(demands):
        vu = make_uuid(seed, "vm", j)
        prio = "no-restart"
        if priorities:
            x = prng.random()
            prio = "restart" if x < 0.5 else "best-effort" if x < 0.75 else "no-restart"
        m = d.memory
        p.add_vm(
            VMState(
                uuid=vu,
                name=f"vm{j:06d}",
                vcpus=d.vcpus,
                memory_static_min=m,
                memory_dynamic_min=m,
                memory_dynamic_max=m,
                memory_static_max=m,
                memory_overhead=trace.memory_overhead(d.vcpus, m),
                groups=(group_of[j],) if j in group_of else (),
                ha_restart_priority=prio,
                srs=frozenset({shared}),
                networks=frozenset({net0, net1}) if j in second else frozenset({net0}),
                last_boot_cpu_vendor="GenuineIntel",
            )
        )
        vm_order.append(vu)
    return Scenario(name, seed, p, host_order, vm_order)


def lower_bound(demands: list[tuple[int, int]], caps: list[tuple[int, int]]) -> int:
    """§7: identical hosts ⌈Σ/cap⌉ per dimension; mixed hosts, the smallest k whose k largest
    capacities cover the demand; maximised over dimensions. demands/caps: (memory, vcpus)."""
    best = 0
    for d in range(2):
        total = sum(x[d] for x in demands)
        cs = sorted((c[d] for c in caps), reverse=True)
        acc = 0
        k = 0
        while acc < total and k < len(cs):
            acc += cs[k]
            k += 1
        if acc < total:
            k = len(cs) + math.ceil((total - acc) / cs[0]) if cs else 0
        best = max(best, k)
    return best


def s_scenario(
    seed: int, hosts: int, n_vms: int, trace_dir=None, priorities: bool = False, name: str = "S1"
) -> Scenario:
    pk = peak(trace_dir, seed)
    w = draw_w(pk, n_vms, seed)
    sc = build_pool(
        seed,
        [SKUS[i % 3] for i in range(hosts)],
        demands_of(w),
        priorities=priorities,
        tolerance=1,
        name=name,
    )
    return sc


def s1(seed: int, trace_dir=None, ci: bool = False) -> Scenario:
    return s_scenario(
        seed, 100 if ci else 1000, 1500 if ci else 15000, trace_dir, name="ci-S1" if ci else "S1"
    )


def s2(seed: int, trace_dir=None) -> Scenario:
    return s_scenario(seed, 2500, 40000, trace_dir, priorities=True, name="S2")


def c96(seed: int, trace_dir=None, ci: bool = False, place: bool = True) -> Scenario:
    """96 hosts of 96 cores (ratio 4.0) and 1,024 GiB, W(10,000) placed by ``spread``; priorities
    50/25/25; failure tolerance 2. ``ci``: 24 hosts and W(2,500)."""
    from vmctl.engine.placement import Scheduler

    hosts, n = (24, 2500) if ci else (96, 10000)
    pk = peak(trace_dir, seed)
    w = draw_w(pk, n, seed)
    sc = build_pool(
        seed,
        [(96, 1024)] * hosts,
        demands_of(w),
        priorities=True,
        tolerance=2,
        name="ci-C96" if ci else "C96",
        policy="spread",
    )
    if place:
        s = Scheduler(sc.pool, policy="spread")
        for vu in sc.vm_order:
            pl = s.place_request(s.request(sc.pool.vms[vu]), ha=False)
            if pl is not None:
                s.commit(vu, pl.host)
    return sc
