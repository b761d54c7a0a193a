"""Concurrency caps and waves of migrations (engine.md §4.3).

A plan (evacuation, rebalance) is an ordered list of moves. A real executor runs it as a sequence
of waves; within a wave moves run concurrently and share their hosts' migration links, which sets
each move's rate and therefore its duration. This module cuts a plan into waves for every width w
the caps allow and keeps the width with the smallest predicted makespan.

Caps and costs (overrides from the pool's other-config `migration-cap-host|network|sr`; the host
cap may also be overridden per host in the host's own other-config):

=========================  =====================  ==========  ==========================
resource                   cap                    live move   with storage motion
=========================  =====================  ==========  ==========================
host (source, destination) 8                      1           4
a host's migration link    4 below 10 Gbit/s, 8   1           1
SR                         128                    1 per SR    16 on source and target SR
=========================  =====================  ==========  ==========================

Decisions where the spec is silent: a move also waits for the next wave when it moves a VM that
an earlier move of the same wave moves (rebalancing may move a VM twice); a plan's waves start
from idle caps (migrations already in flight are expected to finish first; `admit_migration`
counts them for a single `vm-migrate`); when some move cannot converge at any width, the widths
with the fewest non-converging moves compete.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vmctl.engine import migration as mg
from vmctl.errors import VmctlError

if TYPE_CHECKING:
    from vmctl.engine.snapshot import PoolState, VMState

HOST_CAP = 8
LINK_CAP_SLOW = 4
LINK_CAP_FAST = 8
FAST_LINK_MBIT = 10_000
SR_CAP = 128
HOST_COST_LIVE = 1
HOST_COST_STORAGE = 4
LINK_COST = 1
SR_COST_LIVE = 1
SR_COST_STORAGE = 16


@dataclass(frozen=True)
class MoveSpec:
    """What the wave cutter needs to know about one planned migration.

    memory, dirty_rate, limits: the §4.2 inputs. stream_bandwidth: B_s. link_src, link_dst: the
    link rates L of the two hosts' migration PIFs (inf when unknown). held_srs: SRs holding VDIs
    that stay where they are (cost 1 each); moved_srs: source SRs of VDIs moved by storage motion
    and target_sr their target (cost 16 each); storage_bytes: Σ physical-utilisation moved.
    """

    vm: str
    src: str
    dst: str
    memory: float
    dirty_rate: float
    limits: mg.Limits = mg.Limits()
    stream_bandwidth: float = mg.DEFAULT_STREAM_BANDWIDTH
    link_src: float = math.inf
    link_dst: float = math.inf
    held_srs: tuple[str, ...] = ()
    moved_srs: tuple[str, ...] = ()
    target_sr: str | None = None
    storage_bytes: float = 0.0

    @property
    def storage_motion(self) -> bool:
        return self.target_sr is not None

    def costs(self) -> dict[tuple[str, str], int]:
        """Resource → units this move takes while it runs."""
        hc = HOST_COST_STORAGE if self.storage_motion else HOST_COST_LIVE
        out: dict[tuple[str, str], int] = {}

        def take(key: tuple[str, str], n: int) -> None:
            # One move never pays twice for one resource (e.g. an SR both held and targeted).
            out[key] = max(out.get(key, 0), n)

        take(("host", self.src), hc)
        take(("host", self.dst), hc)
        take(("link", self.src), LINK_COST)
        take(("link", self.dst), LINK_COST)
        for sr in self.held_srs:
            take(("sr", sr), SR_COST_LIVE)
        for sr in self.moved_srs:
            take(("sr", sr), SR_COST_STORAGE)
        if self.target_sr is not None:
            take(("sr", self.target_sr), SR_COST_STORAGE)
        return out

    def solo(self) -> mg.Prediction:
        """The prediction when this move runs alone."""
        rate = mg.migration_rate(self.stream_bandwidth, self.link_src, 1, self.link_dst, 1)
        return mg.predict(self.memory, self.dirty_rate, rate, self.limits, self.storage_bytes)


@dataclass(frozen=True)
class Caps:
    """Caps per resource: host caps per host (default `host`), link caps per host (default
    `link`), one SR cap."""

    host: int = HOST_CAP
    link: int = LINK_CAP_FAST
    sr: int = SR_CAP
    host_overrides: Mapping[str, int] = field(default_factory=dict)
    link_overrides: Mapping[str, int] = field(default_factory=dict)

    def cap(self, resource: tuple[str, str]) -> int:
        kind, key = resource
        if kind == "host":
            return self.host_overrides.get(key, self.host)
        if kind == "link":
            return self.link_overrides.get(key, self.link)
        return self.sr


def _int_knob(cfg: Mapping | None, key: str) -> int | None:
    if not cfg or key not in cfg:
        return None
    try:
        v = int(float(cfg[key]))
    except (TypeError, ValueError):
        return None
    return v if v >= 1 else None


def caps_for(pool: PoolState, network: str | None = None) -> Caps:
    """The caps of `pool` for migrations over `network` (resolved as §4.3 says)."""
    net = mg.resolve_network(pool, network)
    host_cap = _int_knob(pool.other_config, "migration-cap-host") or HOST_CAP
    link_override = _int_knob(pool.other_config, "migration-cap-network")
    sr_cap = _int_knob(pool.other_config, "migration-cap-sr") or SR_CAP
    hosts: dict[str, int] = {}
    links: dict[str, int] = {}
    for uuid in pool.host_uuids():
        h = pool.hosts[uuid]
        own = _int_knob(dict(h.other_config), "migration-cap-host")
        if own is not None:
            hosts[uuid] = own
        if link_override is not None:
            links[uuid] = link_override
        else:
            speed = h.pif_speed(net) if net else None
            # unknown speed: the link does not limit the rate, so treat it as fast
            links[uuid] = LINK_CAP_SLOW if speed and speed < FAST_LINK_MBIT else LINK_CAP_FAST
    return Caps(host=host_cap, link=LINK_CAP_FAST, sr=sr_cap, host_overrides=hosts, link_overrides=links)


def move_spec(
    pool: PoolState,
    vm: VMState,
    dst: str,
    *,
    network: str | None = None,
    bandwidth: float | None = None,
    downtime: float | None = None,
    storage_map: Mapping[str, str] | None = None,
) -> MoveSpec:
    """A :class:`MoveSpec` for moving `vm` from its resident host to `dst`. `storage_map` maps
    VDI uuid → target SR for storage motion (VDIs not in it stay)."""
    net = mg.resolve_network(pool, network)
    storage_map = storage_map or {}
    moved = sorted({d.sr for d in vm.vdis if d.uuid in storage_map})
    targets = sorted({storage_map[d.uuid] for d in vm.vdis if d.uuid in storage_map})
    held = sorted(set(vm.srs) - set(moved))
    src = vm.resident_on or ""
    return MoveSpec(
        vm=vm.uuid,
        src=src,
        dst=dst,
        memory=mg.vm_memory(vm),
        dirty_rate=mg.vm_dirty_rate(pool, vm),
        limits=mg.vm_limits(pool, downtime),
        stream_bandwidth=mg.pool_stream_bandwidth(pool, net, bandwidth),
        link_src=mg.host_link_rate(pool, src, net) if src in pool.hosts else math.inf,
        link_dst=mg.host_link_rate(pool, dst, net),
        held_srs=tuple(held),
        moved_srs=tuple(moved),
        target_sr=targets[0] if targets else None,
        storage_bytes=float(sum(d.physical_utilisation for d in vm.vdis if d.uuid in storage_map)),
    )


def in_flight_usage(pool: PoolState) -> dict[tuple[str, str], int]:
    """Cap units held by migrations already in flight (running VMs scheduled on another host);
    counted as live moves, since the snapshot does not record storage motion."""
    usage: dict[tuple[str, str], int] = {}
    for uuid in sorted(pool.vms):
        v = pool.vms[uuid]
        if v.holds_resources and v.scheduled_on and v.scheduled_on != v.resident_on:
            spec = MoveSpec(
                vm=v.uuid,
                src=v.resident_on or "",
                dst=v.scheduled_on,
                memory=0.0,
                dirty_rate=0.0,
                held_srs=tuple(sorted(v.srs)),
            )
            for r, c in spec.costs().items():
                usage[r] = usage.get(r, 0) + c
    return usage


def check_caps(move: MoveSpec, caps: Caps, usage: Mapping[tuple[str, str], int] | None = None) -> None:
    """Raise `TOO_MANY_MIGRATIONS` (resource, in-use, cap) if `move` cannot start now."""
    usage = usage or {}
    for r in sorted(move.costs()):
        c = move.costs()[r]
        used = usage.get(r, 0)
        if used + c > caps.cap(r):
            raise VmctlError(
                "TOO_MANY_MIGRATIONS",
                "Too many migrations use this resource at once",
                [("resource", f"{r[0]}:{r[1]}"), ("in-use", used), ("cap", caps.cap(r))],
            )


# --- waves ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduledMove:
    index: int  # position in the plan
    wave: int  # 1-based
    rate: float
    prediction: mg.Prediction


@dataclass(frozen=True)
class Schedule:
    """The chosen cut: `waves` holds plan indices; `moves[i]` the scheduling of plan move i."""

    width: int
    waves: tuple[tuple[int, ...], ...]
    wave_times: tuple[float, ...]
    makespan: float
    moves: tuple[ScheduledMove, ...]
    all_converge: bool
    widths: tuple[tuple[int, float, int], ...]  # (w, makespan, non-converging moves) per width tried

    @property
    def bytes(self) -> float:
        return sum(m.prediction.total_bytes for m in self.moves)


def cut(moves: Sequence[MoveSpec], width: int, caps: Caps) -> list[list[int]]:
    """Greedy consecutive cut into waves of at most `width` moves respecting every cap and the
    dependency rule (a move whose destination is an earlier move's source, or that moves the
    same VM again, waits for the next wave)."""
    costs = [m.costs() for m in moves]
    for i, c in enumerate(costs):
        for r in sorted(c):
            if c[r] > caps.cap(r):
                check_caps(moves[i], caps)  # raises with the offending resource
    return _cut_from(_natural_ends(moves, _needs(costs, caps)), width)


def _needs(
    costs: list[dict[tuple[str, str], int]], caps: Caps
) -> list[list[tuple[tuple[str, str], int, int]]]:
    """(resource, units, cap) per move, so that cutting is plain arithmetic."""
    return [[(r, n, caps.cap(r)) for r, n in c.items()] for c in costs]


def _natural_ends(moves: Sequence[MoveSpec], need: list[list[tuple[tuple[str, str], int, int]]]) -> list[int]:
    """ends[j]: where a wave starting at move j stops when only caps and dependencies close it
    (exclusive). Whether a move fits depends only on the earlier moves of its wave, so with a
    width w the wave starting at j is exactly [j, min(j + w, ends[j]))."""
    n = len(moves)
    ends = [n] * n
    for j in range(n):
        usage: dict[tuple[str, str], int] = {}
        sources: set[str] = set()
        vms: set[str] = set()
        k = j
        while k < n:
            mv = moves[k]
            if k > j and (
                mv.dst in sources or mv.vm in vms or any(usage.get(r, 0) + u > cap for r, u, cap in need[k])
            ):
                break
            for r, u, _ in need[k]:
                usage[r] = usage.get(r, 0) + u
            sources.add(mv.src)
            vms.add(mv.vm)
            k += 1
        ends[j] = k
    return ends


def _cut_from(ends: list[int], width: int) -> list[list[int]]:
    waves: list[list[int]] = []
    j, n = 0, len(ends)
    while j < n:
        e = min(j + width, ends[j])
        waves.append(list(range(j, e)))
        j = e
    return waves


def _rates(moves: Sequence[MoveSpec], wave: Sequence[int]) -> dict[int, float]:
    """Each move's R in its wave: k counts the wave's migrations on each host's link."""
    share: dict[str, int] = {}
    for i in wave:
        for h in {moves[i].src, moves[i].dst}:
            share[h] = share.get(h, 0) + 1
    return {
        i: mg.migration_rate(
            moves[i].stream_bandwidth,
            moves[i].link_src,
            share[moves[i].src],
            moves[i].link_dst,
            share[moves[i].dst],
        )
        for i in wave
    }


def schedule(moves: Sequence[MoveSpec], caps: Caps | None = None, max_width: int | None = None) -> Schedule:
    """Cut `moves` (in plan order) into waves for every width w = 1 … W and keep the width with the
    smallest makespan among those where every move converges (ties: smaller w).

    W is the largest width the caps allow: once no wave of the cut at width w reaches w moves,
    caps and dependencies alone closed every wave, so larger widths give the same cut.
    When some move cannot converge at any width (it does not converge even alone), the widths
    with the fewest non-converging moves compete instead.
    """
    caps = caps or Caps()
    if not moves:
        return Schedule(0, (), (), 0.0, (), True, ())
    costs = [m.costs() for m in moves]
    for i, c in enumerate(costs):
        for r in sorted(c):
            if c[r] > caps.cap(r):
                check_caps(moves[i], caps)
    cache: list[dict[float, mg.Prediction]] = [{} for _ in moves]
    ends = _natural_ends(moves, _needs(costs, caps))
    wave_cache: dict[tuple[int, int], tuple[float, int, dict[int, float]]] = {}

    def pred(i: int, rate: float) -> mg.Prediction:
        p = cache[i].get(rate)
        if p is None:
            m = moves[i]
            p = cache[i][rate] = mg.predict(
                m.memory, m.dirty_rate, rate, m.limits, m.storage_bytes, with_hints=False
            )
        return p

    limit = max_width if max_width is not None else len(moves)
    best: tuple | None = None
    tried: list[tuple[int, float, int]] = []
    w = 1
    while w <= limit:
        waves = _cut_from(ends, w)
        times: list[float] = []
        bad = 0
        per: dict[int, tuple[int, float]] = {}
        for n, wave in enumerate(waves, start=1):
            key = (wave[0], len(wave))
            hit = wave_cache.get(key)
            if hit is None:
                rates = _rates(moves, wave)
                t, b = 0.0, 0
                for i in wave:
                    p = pred(i, rates[i])
                    t = max(t, p.total_time)
                    b += not p.converges
                hit = wave_cache[key] = (t, b, rates)
            t, b, rates = hit
            bad += b
            for i in wave:
                per[i] = (n, rates[i])
            times.append(t)
        makespan = math.fsum(times)
        tried.append((w, makespan, bad))
        key = (bad, round(makespan, 9), w)
        if best is None or key < best[0]:
            best = (key, w, waves, times, per, makespan)
        if max(len(x) for x in waves) < w:
            break
        w += 1
    assert best is not None
    _, w, waves, times, per, makespan = best
    scheduled = []
    for i in range(len(moves)):
        n, rate = per[i]
        m = moves[i]
        scheduled.append(
            ScheduledMove(i, n, rate, mg.predict(m.memory, m.dirty_rate, rate, m.limits, m.storage_bytes))
        )
    return Schedule(
        width=w,
        waves=tuple(tuple(x) for x in waves),
        wave_times=tuple(times),
        makespan=makespan,
        moves=tuple(scheduled),
        all_converge=best[0][0] == 0,
        widths=tuple(tried),
    )


# --- one migration (vm-migrate, checks 4 and 5 of engine.md §4.1) ---------------------------------


def link_shares(pool: PoolState, host: str) -> int:
    """Migrations in flight on `host`'s migration link (as source or destination)."""
    n = 0
    for uuid in sorted(pool.vms):
        v = pool.vms[uuid]
        if v.holds_resources and v.scheduled_on and v.scheduled_on != v.resident_on:
            n += host in (v.resident_on, v.scheduled_on)
    return n


def admit_migration(
    pool: PoolState,
    vm: str,
    dst: str,
    *,
    network: str | None = None,
    bandwidth: float | None = None,
    downtime: float | None = None,
    vdi_map: Mapping[str, str] | None = None,
    force: bool = False,
) -> tuple[MoveSpec, mg.Prediction]:
    """`vm-migrate`'s concurrency check (`TOO_MANY_MIGRATIONS` resource, in-use, cap) against the
    migrations already in flight, then its prediction at the rate it would get now (sharing the
    links with them) and the convergence check (`MIGRATION_WOULD_NOT_CONVERGE`
    predicted-downtime, downtime-target, required-bandwidth), skipped with `force`."""
    spec = move_spec(
        pool, pool.vms[vm], dst, network=network, bandwidth=bandwidth, downtime=downtime, storage_map=vdi_map
    )
    check_caps(spec, caps_for(pool, network), in_flight_usage(pool))
    rate = mg.migration_rate(
        spec.stream_bandwidth,
        spec.link_src,
        link_shares(pool, spec.src) + 1,
        spec.link_dst,
        link_shares(pool, dst) + 1,
    )
    pred = mg.predict(spec.memory, spec.dirty_rate, rate, spec.limits, spec.storage_bytes)
    if not force:
        err = mg.convergence_error(pred)
        if err is not None:
            raise err
    return spec, pred
