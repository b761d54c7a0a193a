"""Rebalancing a pool by live migrations (engine.md §5).

The planner works on a scratch copy of the snapshot through a placement
:class:`~vmctl.engine.placement.scheduler.Scheduler`, whose arrays it reads (loads, capacities)
and whose filters it uses: candidate destinations are screened with vectorised masks (filters 1–7
cached per class and source, 8–9 over all candidates at once, 10 for items with strict groups),
and the one move taken at each step is re-checked with the scheduler's own filters 1–10 and
filter 11 (HA), so every planned move passes filters 1–11 exactly as an explicit `vm-migrate`
target would.

Imbalance metric: L_{h,d} = load/capacity over the scope's N hosts (memory at m(v)); σ_d the
population standard deviation; I = Σ_d w_d·σ_d, plus α·mean_h skew(L_h) under `balanced`.
Moving demand a from s to t changes only L_s and L_t, so with the centred sums S1_d = Σ(L − μ)
and S2_d = Σ(L − μ)² kept per dimension, the σ after any move is a closed form in O(D).

Decisions where the spec is silent:

* Only running VMs move (paused ones count as load but stay); immobile VMs and VMs with a
  migration in flight stay too.
* bytes(v) is the pre-copy prediction at the move's solo rate min(B_s, L_src, L_dst), which is
  B_s on links of 10 Gbit/s and more; a move predicted not to converge is never planned, since
  `vm-migrate` would refuse it.
* max-moves counts migrations (an item of k VMs counts k); mandatory moves count towards it but
  are never cut by it.
* Mandatory moves: for a strict anti-affinity group, the member with the smallest uuid stays on
  each host and the others move; a split strict affinity item gathers on the host holding most of
  it (ties: uuid); an overloaded host sheds the item with the best gain until it fits. Each goes
  to the destination with the best gain passing filters 1–11 (no cost test).
* `pack`: hosts are tried by increasing max_d L (then uuid); items leave by decreasing dominant
  share (then uuid) for the non-empty receiver with the smallest ‖1 − u'‖ (then uuid).

Exchange steps (a departure from §5, which only has single moves): when the single-move loop
stops above the target because no single move qualifies, the plan is made again from the start
with exchange steps among the candidates, and kept if it reaches the target or ends lower by the
loop's own measure (metric plus κ·bytes/ΣA). An exchange moves item A from a source s to a host t and one or two items
of t back to s; it is scored like a move, ΔI of the whole step against the cost of all its bytes,
must pass the same test (ΔI ≥ ε and ΔI > cost) and is taken when its score beats the best single
move's. Why: with two resources, single moves stall once the hosts' deviations point against
every VM shape (memory-heavy hosts short of vCPUs and the reverse); a memory-heavy VM out and
one or two vCPU-heavy VMs back corrects exactly that for little more than one move's bytes. On
the C96 benchmark from a random placement the single-move loop stops at σ_memory 0.028 against a
target of 0.0204; with exchanges it reaches the target in fewer moves and bytes than
`greedy-rebalance`. Every move of an exchange passes filters 1–11 on the state the previous one
leaves; the step's moves share its `step` number, gain and cost, and are flagged `exchange`.
Items of strict groups never take part in exchanges.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmctl.engine import migration as mg
from vmctl.engine import waves as wv
from vmctl.engine.snapshot import RUNNING, PoolState, VMState
from vmctl.errors import VmctlError

if TYPE_CHECKING:  # pragma: no cover
    from vmctl.engine.placement.scheduler import Scheduler

ROUND = 9
# The fields of a plan's rows (RebalancePlan.rows()), in the order tables and CSV show them.
MOVE_FIELDS = (
    "step",
    "vm",
    "name-label",
    "from",
    "to",
    "memory",
    "gain",
    "cost",
    "sigma-memory",
    "sigma-vcpu",
    "time",
)
_HEAD = 16  # candidates materialised per step; the rest is only walked when filter 11 refuses
_SOURCES = 8  # sources tried at once in exchange steps (the most deviating ones)
_PARTNERS = 8  # hosts paired with each of them
_CLASSES = 12  # classes of a host taking part in its exchanges (those best aligned with its excess)
DEFAULT_THRESHOLD = 3
DEFAULT_MAX_MOVES = 50
DEFAULT_MIN_GAIN = 1e-4  # ε, other-config:rebalance-min-gain
DEFAULT_COST_WEIGHT = 1.0  # κ, other-config:rebalance-cost-weight
DEFAULT_PACK_MAX_LOAD = 0.85  # other-config:pack-max-load
DEFAULT_SKEW_WEIGHT = 2.0  # α, other-config:placement-skew-weight (shared with §2.2)
POLICIES = ("spread", "balanced", "pack")

STOP_TARGET = "target-reached"
STOP_MAX_MOVES = "max-moves"
STOP_NO_MOVE = "no-qualifying-move"
STOP_MANDATORY_ONLY = "threshold-1"
STOP_PACKED = "nothing-more-to-free"


@dataclass(frozen=True)
class RebalanceMove:
    """One migration of the plan. Items (a strict affinity group moving as one) give one move per
    member with the same `step`; `gain` and `cost` are the item's."""

    step: int
    vm: str
    name: str
    src: str
    dst: str
    memory: int  # m(v)
    bytes: float  # predicted memory + storage bytes (solo rate)
    gain: float
    cost: float
    mandatory: str | None  # None, "rule" or "overload"
    sigma_memory: float  # σ after the step
    sigma_vcpu: float
    time: float = 0.0  # total-time at the rate it gets in its wave
    wave: int = 0
    exchange: bool = False  # one of the moves of an exchange step (see _Planner.greedy)

    def as_dict(self) -> dict:
        return {
            "step": self.step,
            "vm": self.vm,
            "name-label": self.name,
            "from": self.src,
            "to": self.dst,
            "memory": self.memory,
            "bytes": self.bytes,
            "gain": self.gain,
            "cost": self.cost,
            "mandatory": self.mandatory,
            "exchange": self.exchange,
            "sigma-memory": self.sigma_memory,
            "sigma-vcpu": self.sigma_vcpu,
            "time": self.time,
            "wave": self.wave,
        }


@dataclass(frozen=True)
class RebalancePlan:
    policy: str
    threshold: int
    target: float  # σ*
    max_moves: int | None
    sigma_before: dict[str, float]
    sigma_after: dict[str, float]
    metric_before: float
    metric_after: float
    moves: tuple[RebalanceMove, ...]
    stop_reason: str
    schedule: wv.Schedule | None = None
    freed_hosts: tuple[str, ...] = ()
    unresolved: tuple[tuple[str, str], ...] = ()  # (vm uuid, reason) of mandatory moves not possible
    evaluations: int = 0  # candidate (item, destination) pairs scored

    @property
    def bytes(self) -> float:
        return math.fsum(m.bytes for m in self.moves)

    @property
    def steps(self) -> int:
        return self.moves[-1].step if self.moves else 0

    @property
    def makespan(self) -> float:
        return self.schedule.makespan if self.schedule else 0.0

    @property
    def waves(self) -> int:
        return len(self.schedule.waves) if self.schedule else 0

    def rows(self) -> list[dict]:
        """The plan table (engine.md §5), in order."""
        return [
            {
                "step": m.step,
                "vm": m.vm,
                "name-label": m.name,
                "from": m.src,
                "to": m.dst,
                "memory": m.memory,
                "gain": m.gain,
                "cost": m.cost,
                "sigma-memory": m.sigma_memory,
                "sigma-vcpu": m.sigma_vcpu,
                "time": m.time,
            }
            for m in self.moves
        ]

    def summary(self) -> dict:
        return {
            "sigma-before": dict(self.sigma_before),
            "sigma-after": dict(self.sigma_after),
            "moves": len(self.moves),
            "bytes": self.bytes,
            "waves": self.waves,
            "makespan": self.makespan,
            "freed-hosts": list(self.freed_hosts),
            "stop-reason": self.stop_reason,
        }

    def as_json(self) -> dict:
        """`-f json`: {policy, threshold, target, sigma-before, sigma-after, moves: [...]} plus the
        footer figures."""
        return {
            "policy": self.policy,
            "threshold": self.threshold,
            "target": self.target,
            "sigma-before": dict(self.sigma_before),
            "sigma-after": dict(self.sigma_after),
            "moves": [m.as_dict() for m in self.moves],
            "bytes": self.bytes,
            "waves": self.waves,
            "makespan": self.makespan,
            "freed-hosts": list(self.freed_hosts),
            "stop-reason": self.stop_reason,
            "unresolved": [{"vm": v, "reason": r} for v, r in self.unresolved],
        }


def target_sigma(threshold: int, n_hosts: int) -> float:
    """σ* = (5 − threshold) × 0.1 / √N for thresholds 2–5; threshold 1 has no target (∞)."""
    if threshold <= 1:
        return math.inf
    return (5 - threshold) * 0.1 / math.sqrt(max(1, n_hosts))


# --- the metric -----------------------------------------------------------------------------------


@dataclass
class _Metric:
    """Metric parameters and the per-host normalised loads of the scope."""

    weights: tuple[float, float]
    alpha: float  # 0 unless balanced
    g: tuple[float, float]  # demand mix, unit length


def _skew(lm: Any, lc: Any, g: tuple[float, float]) -> Any:
    """1 − cos(L, g); an empty host has no direction and counts 0."""
    import numpy as np

    norm = np.hypot(lm, lc)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = (lm * g[0] + lc * g[1]) / norm
    return 1.0 - np.where(norm > 0, cos, 1.0)


def sigmas(lm: Any, lc: Any) -> tuple[float, float]:
    import numpy as np

    return float(np.std(lm)), float(np.std(lc))


def metric(lm: Any, lc: Any, met: _Metric) -> float:
    sm, sc = sigmas(lm, lc)
    value = met.weights[0] * sm + met.weights[1] * sc
    if met.alpha:
        value += met.alpha * float(_skew(lm, lc, met.g).mean())
    return value


# --- items and classes ----------------------------------------------------------------------------


@dataclass
class _Item:
    members: tuple[str, ...]  # sorted VM uuids; the first is the representative
    host: str
    mem: int
    vcpus: int
    key: tuple  # interchangeability class


def _strict_components(pool: PoolState, vms: Sequence[VMState]) -> dict[str, tuple[str, ...]]:
    """VM uuid → the members of its strict-affinity item (VMs linked through shared strict
    affinity groups, among `vms`)."""
    strict_aff = {g for g, grp in pool.groups.items() if grp.strict and grp.placement == "affinity"}
    parent: dict[str, str] = {v.uuid: v.uuid for v in vms}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first: dict[str, str] = {}
    for v in sorted(vms, key=lambda v: v.uuid):
        for g in v.groups:
            if g in strict_aff:
                if g in first:
                    a, b = find(first[g]), find(v.uuid)
                    if a != b:
                        parent[max(a, b)] = min(a, b)
                else:
                    first[g] = v.uuid
    comps: dict[str, list[str]] = {}
    for v in sorted(vms, key=lambda v: v.uuid):
        comps.setdefault(find(v.uuid), []).append(v.uuid)
    return {u: tuple(m) for m in comps.values() for u in m}


def _class_key(pool: PoolState, vm: VMState) -> tuple:
    """VMs with equal demand, equal migration cost and equal filter signature are
    interchangeable: moving either gives the same gain, cost and feasibility. Soft groups do not
    enter rebalancing, so only strict groups are part of the signature."""
    strict = tuple(g for g in vm.groups if (grp := pool.groups.get(g)) is not None and grp.strict)
    # frozensets are hashable and compare by content: keys are only hashed, never ordered
    return (
        pool.m(vm),
        vm.vcpus,
        vm.memory_dynamic_max,
        vm.dirty_rate,
        vm.srs,
        vm.networks,
        vm.last_boot_cpu_vendor,
        vm.last_boot_cpu_flags,
        strict,
    )


@dataclass
class _Block:
    """Scoring arrays for a list of items (K rows) over all hosts (n columns)."""

    items: list[_Item]
    am: Any
    ac: Any
    src: Any
    static: Any  # K × n: filters 1–7, pCPUs, not the source, converging
    bytes: Any  # K × n
    strict: list[int]  # rows whose rules filter must be evaluated on the current state


# --- the planner ----------------------------------------------------------------------------------


class _Planner:
    def __init__(
        self,
        pool: PoolState,
        policy: str,
        threshold: int,
        max_moves: int | None,
        network: str | None,
        bandwidth: float | None,
        ha: bool,
        initial: tuple | None = None,
    ) -> None:
        import numpy as np

        from vmctl.engine.placement.scheduler import Scheduler

        self.np = np
        self.pool = pool.copy()
        self.policy = policy
        self.threshold = threshold
        self.max_moves = max_moves
        self.ha = ha
        self.sched: Scheduler = Scheduler(self.pool)
        t = self.sched.table
        self.t = t
        self.scope_hosts = [h.uuid for h in self.pool.usable_hosts()]
        self.scope = np.zeros(t.n, dtype=bool)
        for h in self.scope_hosts:
            self.scope[t.index[h]] = True
        self.sidx = np.nonzero(self.scope)[0]
        self.N = len(self.scope_hosts)
        self.capm = t.mem_cap_f.copy()
        self.capc = t.vcpu_cap_f.copy()
        # a zero capacity would make L undefined; such a host can take nothing anyway
        self.capm[self.capm <= 0] = 1.0
        self.capc[self.capc <= 0] = 1.0
        self.sum_a = float(t.mem_cap_f[self.scope].sum()) or 1.0
        p = self.pool
        wm = p.knob("rebalance-weight-memory", 1.0)
        wc = p.knob("rebalance-weight-vcpu", 1.0)
        alpha = p.knob("placement-skew-weight", DEFAULT_SKEW_WEIGHT) if policy == "balanced" else 0.0
        tm = float(t.mem[self.scope].sum()) / float(t.mem_cap_f[self.scope].sum() or 1.0)
        tc = float(t.vcpu[self.scope].sum()) / float(t.vcpu_cap_f[self.scope].sum() or 1.0)
        norm = math.hypot(tm, tc)
        g = (tm / norm, tc / norm) if norm > 0 else (1 / math.sqrt(2), 1 / math.sqrt(2))
        self.met = _Metric((wm, wc), alpha, g)
        self.eps = p.knob("rebalance-min-gain", DEFAULT_MIN_GAIN)
        self.kappa = p.knob("rebalance-cost-weight", DEFAULT_COST_WEIGHT)
        self.net = mg.resolve_network(p, network)
        self.bs = mg.pool_stream_bandwidth(p, self.net, bandwidth)
        self.limits = mg.vm_limits(p)
        self.links = np.array([mg.host_link_rate(p, u, self.net) for u in t.uuids])
        self.target = target_sigma(threshold, self.N)
        self.moves: list[RebalanceMove] = []
        self.specs: list[wv.MoveSpec] = []
        self.unresolved: list[tuple[str, str]] = []
        self.evaluations = 0
        self._pred_cache: dict[tuple, mg.Prediction] = {}
        self._static: dict[tuple, Any] = {}
        self._cost_rows: dict[tuple, tuple[Any, Any]] = {}
        self._blocks: dict[str, _Block] = {}
        self.exchange = _ExchangeSteps(self)  # before the items: adding one tells it
        self._build_items(initial)

    # ---- state ----------------------------------------------------------------------------------
    def loads(self) -> tuple[Any, Any]:
        return self.t.mem / self.capm, self.t.vcpu / self.capc

    def scoped(self) -> tuple[Any, Any]:
        lm, lc = self.loads()
        return lm[self.sidx], lc[self.sidx]

    def sigma(self) -> tuple[float, float]:
        return sigmas(*self.scoped())

    def metric(self) -> float:
        return metric(*self.scoped(), self.met)

    def _initial_items(self) -> tuple:
        """The items as built, before any move: what a second plan of the same snapshot starts
        from (items are never changed in place, only replaced)."""
        by_host = {h: {k: list(v) for k, v in d.items()} for h, d in self.by_host.items()}
        return dict(self.items), dict(self.lead), by_host, list(self.split_items)

    def _build_items(self, initial: tuple | None = None) -> None:
        if initial is not None:
            items, lead, by_host, split = initial
            self.items, self.lead, self.split_items = dict(items), dict(lead), list(split)
            self.by_host = {h: {k: list(v) for k, v in d.items()} for h, d in by_host.items()}
            return
        p = self.pool
        movable = [
            v
            for v in p.vms.values()
            if v.power_state == RUNNING
            and v.resident_on in p.hosts
            and self.scope[self.t.index[v.resident_on]]
            and not v.immobile
            and v.scheduled_on in (None, v.resident_on)
        ]
        comps = _strict_components(p, movable)
        self.items: dict[str, _Item] = {}  # lead uuid → item
        self.lead: dict[str, str] = {}  # member uuid → lead uuid
        self.by_host: dict[str, dict[tuple, list[str]]] = {h: {} for h in self.scope_hosts}
        self.split_items: list[tuple[str, ...]] = []
        seen: set[tuple[str, ...]] = set()
        for uuid in sorted(comps):
            members = comps[uuid]
            if members in seen:
                continue
            seen.add(members)
            hosts = {p.vms[m].resident_on for m in members}
            if len(hosts) > 1:
                self.split_items.append(members)  # breaks a strict affinity rule: mandatory
                continue
            self._add_item(members, hosts.pop(), keep_sorted=False)
        for per_host in self.by_host.values():
            for lst in per_host.values():
                lst.sort()

    def _add_item(self, members: tuple[str, ...], host: str, keep_sorted: bool = True) -> None:
        p = self.pool
        vms = [p.vms[m] for m in members]
        key = _class_key(p, vms[0]) if len(vms) == 1 else ("item",) + members
        it = _Item(members, host, sum(p.m(v) for v in vms), sum(v.vcpus for v in vms), key)
        self.items[members[0]] = it
        self._touch(host)
        for m in members:
            self.lead[m] = members[0]
        lst = self.by_host.setdefault(host, {}).setdefault(key, [])
        if keep_sorted:
            bisect.insort(lst, members[0])
        else:
            lst.append(members[0])

    def _touch(self, host: str) -> None:
        """The items of `host` changed: drop what was derived from them."""
        self._blocks.pop(host, None)
        self.exchange.forget(host)

    def _remove_item(self, lead: str) -> _Item:
        it = self.items.pop(lead)
        self._touch(it.host)
        for m in it.members:
            self.lead.pop(m, None)
        lst = self.by_host[it.host][it.key]
        lst.remove(lead)
        if not lst:
            del self.by_host[it.host][it.key]
        return it

    # ---- predictions and costs --------------------------------------------------------------------
    def _predict(self, vm: VMState, rate: float) -> mg.Prediction:
        d = mg.vm_dirty_rate(self.pool, vm)
        key = (vm.memory_dynamic_max, d, rate)
        p = self._pred_cache.get(key)
        if p is None:
            p = self._pred_cache[key] = mg.predict(mg.vm_memory(vm), d, rate, self.limits, with_hints=False)
        return p

    def _cost_row(self, it: _Item) -> tuple[Any, Any]:
        """(bytes, converges) over every destination for this item's class from its host."""
        np = self.np
        si = self.t.index[it.host]
        ck = (it.key, float(self.links[si]))
        row = self._cost_rows.get(ck)
        if row is None:
            rates = np.minimum(min(self.bs, float(self.links[si])), self.links)
            bytes_row = np.zeros(self.t.n)
            conv_row = np.ones(self.t.n, dtype=bool)
            for r in sorted(set(rates.tolist())):
                sel = rates == r
                total, ok = 0.0, True
                for m in it.members:
                    pr = self._predict(self.pool.vms[m], r)
                    total += pr.total_bytes
                    ok = ok and pr.converges
                bytes_row[sel] = total
                conv_row[sel] = ok
            row = self._cost_rows[ck] = (bytes_row, conv_row)
        return row

    def _request(self, it: _Item):
        import vmctl.engine.placement.filters as F

        return self.sched.request([self.pool.vms[m] for m in it.members], mode=F.MIGRATE)

    def _static_mask(self, it: _Item) -> Any:
        """Filters 1–7 (host state, cpu, version, storage, network): fixed during the plan."""
        import vmctl.engine.placement.filters as F

        ck = (it.key, it.host)
        m = self._static.get(ck)
        if m is None:
            req = self._request(it)
            m = self.scope.copy()
            for f in F.STATIC_FILTERS:
                fm = f.mask(self.t, req)
                if fm is not None:
                    m = m & fm
            self._static[ck] = m
        return m

    def _has_strict(self, it: _Item) -> bool:
        if it.key[0] == "item":
            return True
        for m in it.members[:1]:
            for g in self.pool.vms[m].groups:
                grp = self.pool.groups.get(g)
                if grp is not None and grp.strict and grp.placement in ("affinity", "anti-affinity"):
                    return True
        return False

    # ---- scoring ------------------------------------------------------------------------------------
    def _gains(self, am: Any, ac: Any, src: Any) -> Any:
        """ΔI = I − I' for moving (am, ac) from src[k] to every host (K × n), closed form."""
        np = self.np
        lm, lc = self.loads()
        N = self.N
        new = None
        base = 0.0
        for L, a, cap, w in (
            (lm, am, self.capm, self.met.weights[0]),
            (lc, ac, self.capc, self.met.weights[1]),
        ):
            e = L - float(L[self.sidx].mean())
            s2 = float((e[self.sidx] ** 2).sum())  # and Σ e over the scope is 0 by construction
            base += w * math.sqrt(max(0.0, s2 / N))
            xs = a / cap[src]
            es = e[src]
            # After the move e_s → e_s − x_s and e_t → e_t + x_t, so
            # Σe'² = s2 − 2·e_s·x_s + x_s² + x_t·(2·e_t + x_t) and Σe' = x_t − x_s.
            xt = np.multiply.outer(a, 1.0 / cap)
            s2p = xt * (2.0 * e + xt)
            s2p += (s2 - 2.0 * es * xs + xs * xs)[:, None]
            s1p = xt
            s1p -= xs[:, None]
            s1p /= N
            s1p *= s1p
            s2p /= N
            s2p -= s1p
            np.maximum(s2p, 0.0, out=s2p)
            np.sqrt(s2p, out=s2p)
            if w != 1.0:
                s2p *= w
            if new is None:
                new = s2p
            else:
                new += s2p
        gain = base - new
        if self.met.alpha:
            g = self.met.g
            sk = _skew(lm, lc, g)
            lsm = lm[src] - am / self.capm[src]
            lsc = lc[src] - ac / self.capc[src]
            ltm = lm[None, :] + am[:, None] / self.capm[None, :]
            ltc = lc[None, :] + ac[:, None] / self.capc[None, :]
            dsk = (_skew(lsm, lsc, g) - sk[src])[:, None] + _skew(ltm, ltc, g) - sk[None, :]
            gain = gain - self.met.alpha * dsk / N
        return gain

    def _capacity_ok(self, am: Any, ac: Any, maxv: Any) -> Any:
        """Filters 8 and 9 for every candidate and host (the filter units, one row each)."""
        import vmctl.engine.placement.filters as F

        np = self.np
        ok = F.BY_NAME["memory"].rows(self.t, am.astype(np.int64))
        ok &= F.BY_NAME["vcpu"].rows(self.t, ac.astype(np.int64))
        ok &= F.BY_NAME["vcpu"].pcpu_rows(self.t, maxv)
        return ok

    def _verify(self, it: _Item, dst: str) -> bool:
        """The scheduler's own filters 1–10, then filter 11, on the chosen destination."""
        req = self._request(it)
        if self.sched.rejection(req, dst) is not None:
            return False
        if self.ha and self.sched.ha_active(True) and self.sched.ha_rejection(req, dst) is not None:
            return False
        return True

    def _block(self, items: list[_Item]) -> _Block:
        """The static part of scoring these items: demand, static masks (filters 1–7), the
        per-VM pCPU check, bytes and convergence over every destination."""
        import vmctl.engine.placement.filters as F

        np = self.np
        K = len(items)
        bytes_m = np.empty((K, self.t.n))
        conv = np.empty((K, self.t.n), dtype=bool)
        static = np.empty((K, self.t.n), dtype=bool)
        strict = []
        for k, it in enumerate(items):
            static[k] = self._static_mask(it)
            bytes_m[k], conv[k] = self._cost_row(it)
            if self._has_strict(it):
                strict.append(k)
        maxv = np.array([max(self.pool.vms[m].vcpus for m in it.members) for it in items], dtype=np.int64)
        static &= F.BY_NAME["vcpu"].pcpu_rows(self.t, maxv)
        src = np.array([self.t.index[it.host] for it in items], dtype=np.int64)
        static[np.arange(K), src] = False  # a move needs another host
        static &= conv  # a move predicted not to converge would be refused by vm-migrate
        return _Block(
            items,
            np.array([float(it.mem) for it in items]),
            np.array([float(it.vcpus) for it in items]),
            src,
            static,
            bytes_m,
            strict,
        )

    def _host_block(self, h: str) -> _Block:
        """One representative per interchangeable class on h; cached until h's items change."""
        b = self._blocks.get(h)
        if b is None:
            leads = sorted(lst[0] for lst in self.by_host.get(h, {}).values())
            b = self._blocks[h] = self._block([self.items[lead] for lead in leads])
        return b

    def _candidates(self, blocks: list[_Block], mandatory: str | None) -> list[tuple]:
        """Score every (item, destination); return the best qualifying pairs in order as
        (item, dst index, gain, cost, bytes), followed by a function giving the others in order."""
        np = self.np
        blocks = [b for b in blocks if b.items]
        if not blocks:
            return []
        import vmctl.engine.placement.filters as F

        if len(blocks) == 1:
            b = blocks[0]
            items, am, ac, src, ok, bytes_m = b.items, b.am, b.ac, b.src, b.static.copy(), b.bytes
            strict = b.strict
        else:
            items = [it for b in blocks for it in b.items]
            am = np.concatenate([b.am for b in blocks])
            ac = np.concatenate([b.ac for b in blocks])
            src = np.concatenate([b.src for b in blocks])
            ok = np.concatenate([b.static for b in blocks])
            bytes_m = np.concatenate([b.bytes for b in blocks])
            strict, off = [], 0
            for b in blocks:
                strict.extend(off + k for k in b.strict)
                off += len(b.items)
        t = self.t
        # filters 8 and 9 (their load halves: the per-VM pCPU check is in the static masks)
        ok &= F.BY_NAME["memory"].rows(t, am.astype(np.int64))
        ok &= F.BY_NAME["vcpu"].rows(t, ac.astype(np.int64))
        for k in strict:  # filter 10 depends on where the group's members are now
            rm = F.BY_NAME["rules"].mask(t, self._request(items[k]))
            if rm is not None:
                ok[k] &= rm
        self.evaluations += int(ok.sum())
        gain = self._gains(am, ac, src)
        cost = bytes_m * (self.kappa / self.sum_a)
        if mandatory is None:
            ok &= gain >= self.eps
            ok &= gain > cost
            score = gain - cost
        else:
            score = gain  # mandatory moves are exempt from the cost test
        ks, ts = np.nonzero(ok)
        if len(ks) == 0:
            return []
        sc = np.round(score[ks, ts], ROUND)
        # Only the best few are needed unless filter 11 refuses them: take every pair scoring at
        # least the _HEAD-th best (ties included), order those exactly, keep the rest for later.
        if len(sc) > _HEAD:
            cut = np.partition(sc, len(sc) - _HEAD)[len(sc) - _HEAD]
            top = np.nonzero(sc >= cut)[0]
            rest = np.nonzero(sc < cut)[0]
        else:
            top, rest = np.arange(len(sc)), np.arange(0)

        def ordered(sel: Any) -> list[tuple]:
            # largest score, then fewer bytes, then VM uuid, then host uuid
            rows = [
                (
                    -float(sc[j]),
                    float(bytes_m[ks[j], ts[j]]),
                    items[int(ks[j])].members[0],
                    t.uuids[int(ts[j])],
                    int(ks[j]),
                    int(ts[j]),
                )
                for j in sel.tolist()
            ]
            rows.sort()
            return [
                (items[k], ti, float(gain[k, ti]), float(cost[k, ti]), float(bytes_m[k, ti]))
                for *_, k, ti in rows
            ]

        return ordered(top) + [lambda: ordered(rest)]

    def _pick(
        self, items: list[_Item] | None, mandatory: str | None, blocks: list[_Block] | None = None
    ) -> tuple | None:
        """The best qualifying (item, destination index, gain, cost, bytes) that passes the
        scheduler's filters 1–11, or None."""
        if blocks is None:
            blocks = [self._block(items or [])] if items else []
        *head, tail = self._candidates(blocks, mandatory) or [None]
        for c in head:
            if self._verify(c[0], self.t.uuids[c[1]]):
                return c
        if tail is None:
            return None
        for c in tail():  # rare: every best pair was refused by filter 11
            if self._verify(c[0], self.t.uuids[c[1]]):
                return c
        return None

    # ---- applying -------------------------------------------------------------------------------------
    def _apply(
        self,
        it: _Item,
        ti: int,
        gain: float,
        cost: float,
        mandatory: str | None,
        step: int | None = None,
        exchange: bool = False,
    ) -> None:
        dst = self.t.uuids[ti]
        if step is None:
            step = (self.moves[-1].step + 1) if self.moves else 1
        self._remove_item(it.members[0])
        rows = []
        for m in it.members:
            vm = self.pool.vms[m]
            spec = wv.move_spec(self.pool, vm, dst, network=self.net, bandwidth=self.bs)
            self.specs.append(spec)
            rows.append((vm, spec))
            self.sched.commit_move(m, dst)
        sm, sc = self.sigma()
        for vm, spec in rows:
            solo = spec.solo()
            self.moves.append(
                RebalanceMove(
                    step=step,
                    vm=vm.uuid,
                    name=vm.name,
                    src=spec.src,
                    dst=dst,
                    memory=self.pool.m(vm),
                    bytes=solo.total_bytes,
                    gain=gain,
                    cost=cost,
                    mandatory=mandatory,
                    sigma_memory=sm,
                    sigma_vcpu=sc,
                    exchange=exchange,
                )
            )
        self._add_item(it.members, dst)

    def _undo_step(self, step: int) -> None:
        """Take back the moves of `step` (an exchange whose later move failed its filters)."""
        while self.moves and self.moves[-1].step == step:
            m = self.moves.pop()
            self.specs.pop()
            lead = self.lead[m.vm]
            it = self._remove_item(lead)
            assert it.members == (m.vm,), "exchanges move single VMs only"
            self.sched.commit_move(m.vm, m.src)
            self._add_item(it.members, m.src)

    # ---- mandatory moves ------------------------------------------------------------------------------
    def mandatory(self) -> None:
        p = self.pool
        # strict anti-affinity: keep the smallest uuid per host, move the others
        for g in sorted(p.groups):
            grp = p.groups[g]
            if not (grp.strict and grp.placement == "anti-affinity"):
                continue
            per_host: dict[str, list[str]] = {}
            for v in p.group_members(g):
                if v.holds_resources:
                    per_host.setdefault(v.resident_on, []).append(v.uuid)
            for h in sorted(per_host):
                for u in sorted(per_host[h])[1:]:
                    lead = self._lead_of(u)
                    if lead is None:
                        # not movable by a rebalance: immobile, paused or already migrating
                        self.unresolved.append(
                            (u, "VM_IS_IMMOBILE" if p.vms[u].immobile else "VM_BAD_POWER_STATE")
                        )
                        continue
                    c = self._pick([self.items[lead]], "rule")
                    if c is None:
                        self.unresolved.append((u, "VM_GROUP_RULE_VIOLATED"))
                    else:
                        self._apply(c[0], c[1], c[2], c[3], "rule")
        # strict affinity split over several hosts: gather on the host holding most of it
        for members in self.split_items:
            self._gather(members)
        # overloaded hosts (after a lowered vcpu-allocation-ratio, say)
        for h in self.scope_hosts:
            i = self.t.index[h]
            while self.t.mem[i] > self.t.mem_cap[i] or self.t.vcpu[i] > self.t.vcpu_cap[i]:
                items = [self.items[lead] for lst in self.by_host.get(h, {}).values() for lead in lst[:1]]
                c = self._pick(items, "overload")
                if c is None:
                    self.unresolved.append(
                        (
                            h,
                            "HOST_NOT_ENOUGH_FREE_MEMORY"
                            if self.t.mem[i] > self.t.mem_cap[i]
                            else "HOST_NOT_ENOUGH_VCPUS",
                        )
                    )
                    break
                self._apply(c[0], c[1], c[2], c[3], "overload")

    def _lead_of(self, vm: str) -> str | None:
        return self.lead.get(vm)

    def _gather(self, members: tuple[str, ...]) -> None:
        p = self.pool
        counts: dict[str, int] = {}
        for m in members:
            counts[p.vms[m].resident_on] = counts.get(p.vms[m].resident_on, 0) + 1
        for h in sorted(counts, key=lambda h: (-counts[h], h)):
            movers = [m for m in members if p.vms[m].resident_on != h]
            if not movers:
                break
            ti = self.t.index[h]
            it = _Item(tuple(movers), "", 0, 0, ("gather",) + tuple(movers))
            if self.scope[ti] and self._verify(it, h):
                before = self.metric()
                step = (self.moves[-1].step + 1) if self.moves else 1
                for m in movers:
                    vm = p.vms[m]
                    spec = wv.move_spec(p, vm, h, network=self.net, bandwidth=self.bs)
                    self.specs.append(spec)
                    self.sched.commit_move(m, h)
                    sm, sc = self.sigma()
                    self.moves.append(
                        RebalanceMove(
                            step=step,
                            vm=m,
                            name=vm.name,
                            src=spec.src,
                            dst=h,
                            memory=p.m(vm),
                            bytes=spec.solo().total_bytes,
                            gain=0.0,
                            cost=0.0,
                            mandatory="rule",
                            sigma_memory=sm,
                            sigma_vcpu=sc,
                        )
                    )
                gain = before - self.metric()
                rows = range(len(self.moves) - len(movers), len(self.moves))
                # reported for information: mandatory moves are exempt from the cost test
                cost = self.kappa * sum(self.moves[j].bytes for j in rows) / self.sum_a
                for j in rows:
                    self.moves[j] = _with(self.moves[j], gain=gain, cost=cost)
                self._add_item(members, h)
                return
        for m in members:
            self.unresolved.append((m, "VM_GROUP_RULE_VIOLATED"))

    # ---- the greedy loop ------------------------------------------------------------------------------
    def _budget_left(self) -> bool:
        """max-moves counts migrations (a strict affinity item of k VMs is k of them)."""
        return self.max_moves is None or len(self.moves) < self.max_moves

    def steps(self) -> int:
        return self.moves[-1].step if self.moves else 0

    def greedy(self, exchanges: bool = False) -> str:
        """The loop of §5. With `exchanges`, each step also weighs exchange steps (an item out to
        a host, one or two of that host's items back) by the same score, gain − cost of the whole
        step, and takes one when it scores higher than the best single move."""
        if self.threshold <= 1:
            return STOP_MANDATORY_ONLY
        while True:
            sm, sc = self.sigma()
            if max(sm, sc) <= self.target:
                return STOP_TARGET
            if not self._budget_left():
                return STOP_MAX_MOVES
            lm, lc = self.loads()
            mum = float(lm[self.sidx].mean())
            muc = float(lc[self.sidx].mean())
            sources = [h for h in self.scope_hosts if lm[self.t.index[h]] > mum or lc[self.t.index[h]] > muc]
            c = self._pick(None, None, [self._host_block(h) for h in sources])
            if exchanges and self.exchange.step(c, sources):
                continue
            if c is None:
                return STOP_NO_MOVE
            self._apply(c[0], c[1], c[2], c[3], None)

    def pack(self) -> tuple[str, list[str]]:
        """Consolidate: empty the least-loaded hosts whose items all fit elsewhere with every
        receiver at or below pack-max-load in each dimension, HA plan holding."""
        limit = self.pool.knob("pack-max-load", DEFAULT_PACK_MAX_LOAD)
        freed: list[str] = []
        failed: set[str] = set()
        while self._budget_left():
            lm, lc = self.loads()
            nonempty = [h for h in self.scope_hosts if self.t.count[self.t.index[h]] > 0 and h not in failed]
            if len(nonempty) <= 1:
                break
            nonempty.sort(key=lambda h: (round(max(lm[self.t.index[h]], lc[self.t.index[h]]), ROUND), h))
            done = False
            for h in nonempty:
                plan = self._empty_plan(h, limit, set(freed))
                if plan is None:
                    failed.add(h)
                    continue
                budget = None if self.max_moves is None else self.max_moves - len(self.moves)
                if budget is not None and sum(len(self.items[lead].members) for lead, _ in plan) > budget:
                    failed.add(h)
                    continue
                for lead, ti in plan:
                    it = self.items[lead]
                    before = self.metric()
                    bytes_ = float(self._cost_row(it)[0][ti])
                    self._apply(it, ti, 0.0, self.kappa * bytes_ / self.sum_a, None)
                    gain = before - self.metric()
                    k = len(it.members)
                    for j in range(len(self.moves) - k, len(self.moves)):
                        self.moves[j] = _with(self.moves[j], gain=gain)
                freed.append(h)
                done = True
                break
            if not done:
                break
        return STOP_PACKED, freed

    def _empty_plan(self, h: str, limit: float, freed: set[str]) -> list[tuple[str, int]] | None:
        """Best-fit every item of h onto the other non-empty hosts, every receiver staying at or
        below `limit`; None if one does not fit. Tried on a scratch copy so that a failed attempt
        leaves no trace."""
        import vmctl.engine.placement.filters as F
        from vmctl.engine.placement.scheduler import Scheduler

        np = self.np
        resident = self.pool.resident_vms(h)
        if any(v.uuid not in self.lead for v in resident):
            return None  # an immobile or paused VM keeps the host busy
        if self.t.count[self.t.index[h]] > len(resident):
            return None  # VMs are in flight to or from h
        leads = sorted({self.lead[v.uuid] for v in resident})
        saved = (self.pool, self.sched, self.t)
        self.pool = self.pool.copy()
        self.sched = Scheduler(self.pool)
        self.t = self.sched.table
        plan: list[tuple[str, int]] = []
        try:
            items = [self.items[lead] for lead in leads]
            mean_m = float(self.t.mem_cap_f[self.scope].mean())
            mean_c = float(self.t.vcpu_cap_f[self.scope].mean())
            items.sort(key=lambda it: (-max(it.mem / mean_m, it.vcpus / mean_c), it.members[0]))
            for it in items:
                maxv = np.array([max(self.pool.vms[m].vcpus for m in it.members)], dtype=np.int64)
                ok = self._capacity_ok(np.array([float(it.mem)]), np.array([float(it.vcpus)]), maxv)[0]
                ok &= self._static_mask(it)
                if self._has_strict(it):
                    rm = F.BY_NAME["rules"].mask(self.t, self._request(it))
                    if rm is not None:
                        ok &= rm
                um = (self.t.mem + it.mem) / self.capm
                uc = (self.t.vcpu + it.vcpus) / self.capc
                ok &= (um <= limit) & (uc <= limit)
                ok &= self.t.count > 0  # never refill an empty host
                ok[self.t.index[h]] = False
                for f in freed:
                    ok[self.t.index[f]] = False
                ok &= self._cost_row(it)[1]
                fit = np.round(np.hypot(1.0 - um, 1.0 - uc), ROUND)
                placed = False
                for ti in sorted(np.nonzero(ok)[0].tolist(), key=lambda i: (fit[i], i)):
                    if self._verify(it, self.t.uuids[ti]):
                        for m in it.members:
                            self.sched.commit_move(m, self.t.uuids[ti])
                        plan.append((it.members[0], ti))
                        placed = True
                        break
                if not placed:
                    return None
            return plan
        finally:
            self.pool, self.sched, self.t = saved


# --- exchange steps -------------------------------------------------------------------------------


@dataclass
class _Combos:
    """What a host can send back in an exchange: every set of one or two of its items (two of the
    same class when it holds two), R of them, as rows of its block."""

    host: int  # the host's index
    picks: list[tuple[_Item, ...]]  # R sets of items (class representatives)
    idx: Any  # R × 2: the sets' rows in the block (K, one past the last row, pads a set of one)
    kinds: Any  # R × 2: the class ids of the set (-1 pads)
    am: Any  # R: memory of the set
    ac: Any  # R: vCPUs of the set
    bytes_pad: Any  # (K + 1) × n: the block's bytes, plus a zero row for the padding index
    static_pad: Any  # (K + 1) × n: the block's static masks, plus a True row


class _ExchangeSteps:
    """The exchange steps of one planner (see the module docstring): an item A out from a source s
    to a host t and one or two of t's items back to s, scored like a single move. Reads the
    planner's state and moves through it; keeps what it derives per host (the sets a host can
    send back) until that host's items change (:meth:`forget`)."""

    def __init__(self, planner: _Planner) -> None:
        self.planner = planner
        self._combos: dict[str, tuple[tuple[int, ...], _Combos]] = {}  # host → (rows, sets of them)
        self._kinds: dict[tuple, int] = {}  # class key → small integer, for exchange masks

    def forget(self, host: str) -> None:
        """The items of `host` changed."""
        self._combos.pop(host, None)

    def step(self, single: tuple | None, sources: list[str]) -> bool:
        """Take the best exchange that scores above `single` (and fits in max-moves), if any."""
        pl = self.planner
        best = -math.inf if single is None else round(single[2] - single[3], ROUND)
        left = math.inf if pl.max_moves is None else pl.max_moves - len(pl.moves)
        for x in self.best(sources, best, widen=single is None):
            if 1 + len(x[6]) <= left and self._try(x):
                return True
        return False

    def best(self, sources: list[str], floor: float, widen: bool = False) -> list[tuple]:
        """The best exchanges among the _SOURCES most deviating sources; with `widen`, the next
        ones in turn while none qualifies (the loop would otherwise stop)."""
        pl = self.planner
        t = pl.t
        lm, lc = pl.loads()
        sm, sc = (max(x, 1e-12) for x in pl.sigma())
        zm = (lm - float(lm[pl.sidx].mean())) / sm
        zc = (lc - float(lc[pl.sidx].mean())) / sc
        # the sources that deviate most (in σ units); ties: uuid
        order = sorted(
            sources, key=lambda h: (-round(float(zm[t.index[h]] ** 2 + zc[t.index[h]] ** 2), ROUND), h)
        )
        for at in range(0, len(order), _SOURCES):
            found = self._best_from(order[at : at + _SOURCES], floor, zm, zc)
            if found or not widen:
                return found
        return []

    def _best_from(self, sources: list[str], floor: float, zm: Any, zc: Any) -> list[tuple]:
        """The best qualifying exchange steps scoring above `floor` (the _HEAD best, ties at the
        cut included), best first, as (score, gain, cost, bytes, A, t, (B…), s): item A moves
        from source s to t and one or two items B of t move back to s.

        Each source is paired with the _PARTNERS hosts whose deviation (zm, zc, in σ units)
        points most against its own: an exchange pays off between opposite hosts. Everything is
        scored at once, one row per item A, one column per set its source's partners can send
        back (see _rows for the bound on both)."""
        pl = self.planner
        np = pl.np
        t = pl.t
        part = np.array([t.index[h] for h in pl.scope_hosts if pl.by_host.get(h)], dtype=np.int64)
        a_items: list[_Item] = []
        a_pos: list[int] = []  # the row's source, as a position in `used`
        a_rows: list[tuple[_Block, int]] = []
        used: list[int] = []
        columns: list[tuple] = []  # per used source: T, am, ac, kinds, bytes and static towards it, sets
        for h in sources:
            s = t.index[h]
            b = pl._host_block(h)
            rows = self._rows(h, zm, zc)
            if not rows:
                continue
            opposition = np.round(-(zm[s] * zm[part] + zc[s] * zc[part]), ROUND)
            opposition[part == s] = -np.inf
            near = np.argsort(-opposition, kind="stable")[:_PARTNERS]  # ties: host index
            near = near[np.isfinite(opposition[near])]
            mates = [t.uuids[int(part[k])] for k in near]
            cs = [self._host_combos(u, self._rows(u, zm, zc)) for u in mates]
            cs = [c for c in cs if c.picks]
            if not cs:
                continue
            columns.append(
                (
                    np.concatenate([np.full(len(c.picks), c.host, dtype=np.int64) for c in cs]),
                    np.concatenate([c.am for c in cs]),
                    np.concatenate([c.ac for c in cs]),
                    np.concatenate([c.kinds for c in cs]),
                    np.concatenate([c.bytes_pad[c.idx, s].sum(axis=1) for c in cs]),
                    np.concatenate([c.static_pad[c.idx, s].all(axis=1) for c in cs]),
                    [pick for c in cs for pick in c.picks],
                )
            )
            for k in rows:
                a_items.append(b.items[k])
                a_pos.append(len(used))
                a_rows.append((b, k))
            used.append(s)
        if not a_items:
            return []
        # the columns of every source, padded to one width (padding is never ok)
        W = max(len(col[0]) for col in columns)
        Q = len(columns)
        T_q = np.zeros((Q, W), dtype=np.int64)
        bm_q, bc_q, by_q = np.zeros((Q, W)), np.zeros((Q, W)), np.zeros((Q, W))
        kinds_q = np.full((Q, W, 2), -1, dtype=np.int64)
        st_q = np.zeros((Q, W), dtype=bool)
        for q, (T_, bm_, bc_, kinds_, by_, st_, _) in enumerate(columns):
            n_ = len(T_)
            T_q[q, :n_], bm_q[q, :n_], bc_q[q, :n_], kinds_q[q, :n_], by_q[q, :n_], st_q[q, :n_] = (
                T_,
                bm_,
                bc_,
                kinds_,
                by_,
                st_,
            )
        pos = np.array(a_pos, dtype=np.int64)
        S = np.array(used, dtype=np.int64)[pos][:, None]
        T, bm, bc, kinds, by, back_ok = T_q[pos], bm_q[pos], bc_q[pos], kinds_q[pos], by_q[pos], st_q[pos]
        am = np.array([b.am[k] for b, k in a_rows])[:, None]
        ac = np.array([b.ac[k] for b, k in a_rows])[:, None]
        a_bytes = np.stack([b.bytes[k] for b, k in a_rows])
        a_static = np.stack([b.static[k] for b, k in a_rows])
        a_kind = np.array([self._kind(it.key) for it in a_items], dtype=np.int64)[:, None]
        rows_ix = np.arange(len(a_items))[:, None]
        ok = back_ok & a_static[rows_ix, T]
        # sending back A's own class would only undo part of the step
        ok &= (kinds[:, :, 0] != a_kind) & (kinds[:, :, 1] != a_kind)
        # A fits on t before anything leaves t; the set fits on s once A has left it
        free_m = t.mem_cap - t.mem
        free_c = t.vcpu_cap - t.vcpu
        ok &= am.astype(np.int64) <= free_m[T]
        ok &= ac.astype(np.int64) <= free_c[T]
        ok &= bm.astype(np.int64) <= free_m[S] + am.astype(np.int64)
        ok &= bc.astype(np.int64) <= free_c[S] + ac.astype(np.int64)
        pl.evaluations += int(ok.sum())
        gain = self._pair_gains(am - bm, ac - bc, S, T)
        nbytes = a_bytes[rows_ix, T] + by
        cost = nbytes * (pl.kappa / pl.sum_a)
        score = np.round(gain - cost, ROUND)
        ok &= (gain >= pl.eps) & (gain > cost) & (score > floor)
        ks, js = np.nonzero(ok)
        if len(ks) > _HEAD:
            sc_ = score[ks, js]
            keep = sc_ >= np.partition(sc_, len(sc_) - _HEAD)[len(sc_) - _HEAD]
            ks, js = ks[keep], js[keep]
        found = [
            (
                float(score[k, j]),
                float(gain[k, j]),
                float(cost[k, j]),
                float(nbytes[k, j]),
                a_items[k],
                int(T[k, j]),
                columns[a_pos[k]][6][j],
                used[a_pos[k]],
            )
            for k, j in zip(ks.tolist(), js.tolist())
        ]
        # largest score, then fewer bytes, then the uuids of A, t and the set
        found.sort(
            key=lambda x: (-x[0], x[3], x[4].members[0], t.uuids[x[5]], tuple(it.members[0] for it in x[6]))
        )
        return found

    def _try(self, x: tuple) -> bool:
        """Apply exchange x move by move, each passing the scheduler's filters 1–11 on the state
        the previous ones left; on a refusal take the step back and report False."""
        pl = self.planner
        _, gain, cost, _, a, ti, back, si = x
        step = (pl.moves[-1].step + 1) if pl.moves else 1
        t_host, s_host = pl.t.uuids[ti], pl.t.uuids[si]
        if not pl._verify(a, t_host):
            return False
        pl._apply(a, ti, gain, cost, None, step=step, exchange=True)
        for b in back:
            # the set names classes: send the class's current representative on t
            lst = pl.by_host.get(t_host, {}).get(b.key)
            it = pl.items[lst[0]] if lst else None  # never A: A's class is not in the set
            if it is None or not pl._verify(it, s_host):
                pl._undo_step(step)
                return False
            pl._apply(it, si, gain, cost, None, step=step, exchange=True)
        return True

    def _rows(self, h: str, zm: Any, zc: Any) -> tuple[int, ...]:
        """The rows of h's block that take part in exchanges: no strict items, and at most
        _CLASSES classes, those whose demand points most along h's excess (zm, zc), so that the
        number of sets stays bounded however varied the VMs are. In block order."""
        pl = self.planner
        np = pl.np
        b = pl._host_block(h)
        strict = set(b.strict)
        rows = [k for k in range(len(b.items)) if k not in strict]
        if len(rows) > _CLASSES:
            i = pl.t.index[h]
            xm, xc = b.am[rows] / pl.capm[i], b.ac[rows] / pl.capc[i]
            cos = np.round((xm * zm[i] + xc * zc[i]) / np.maximum(np.hypot(xm, xc), 1e-300), ROUND)
            rows = sorted(rows[j] for j in np.argsort(-cos, kind="stable")[:_CLASSES])
        return tuple(rows)

    def _host_combos(self, h: str, rows: tuple[int, ...]) -> _Combos:
        """The sets of one or two of these rows' items (two of a class when h holds two of it)
        that h can send back in an exchange; cached until h's items or the rows change."""
        pl = self.planner
        hit = self._combos.get(h)
        if hit is not None and hit[0] == rows:
            return hit[1]
        np = pl.np
        b = pl._host_block(h)
        picks: list[tuple[int, ...]] = [(k,) for k in rows]
        for x, k in enumerate(rows):
            for j in rows[x:]:
                if j != k or len(pl.by_host[h][b.items[k].key]) >= 2:
                    picks.append((k, j))
        K = len(b.items)
        idx = np.array([list(pick) + [K] * (2 - len(pick)) for pick in picks], dtype=np.int64).reshape(
            len(picks), 2
        )
        kinds = np.array([self._kind(it.key) for it in b.items] + [-1], dtype=np.int64)[idx]
        c = _Combos(
            pl.t.index[h],
            [tuple(b.items[k] for k in pick) for pick in picks],
            idx,
            kinds,
            np.append(b.am, 0.0)[idx].sum(axis=1),
            np.append(b.ac, 0.0)[idx].sum(axis=1),
            np.vstack([b.bytes, np.zeros((1, pl.t.n))]),
            np.vstack([b.static, np.ones((1, pl.t.n), dtype=bool)]),
        )
        self._combos[h] = (rows, c)
        return c

    def _kind(self, key: tuple) -> int:
        return self._kinds.setdefault(key, len(self._kinds))

    def _pair_gains(self, dm: Any, dc: Any, s: Any, T: Any) -> Any:
        """ΔI for moving the net demand (dm, dc) from hosts s to hosts T (broadcasting arrays;
        negative parts travel back), in closed form like _gains. _gains keeps its own
        outer-product form: it is the single-move hot path, and the same sums taken in another
        order round differently at the ninth digit, which would reorder tied candidates."""
        pl = self.planner
        np = pl.np
        lm, lc = pl.loads()
        N = pl.N
        new = 0.0
        base = 0.0
        for L, d, cap, w in (
            (lm, dm, pl.capm, pl.met.weights[0]),
            (lc, dc, pl.capc, pl.met.weights[1]),
        ):
            e = L - float(L[pl.sidx].mean())
            s2 = float((e[pl.sidx] ** 2).sum())
            base += w * math.sqrt(max(0.0, s2 / N))
            xs = d / cap[s]
            xt = d / cap[T]
            s2p = s2 - 2.0 * e[s] * xs + xs * xs + xt * (2.0 * e[T] + xt)
            s1p = (xt - xs) / N
            new = new + w * np.sqrt(np.maximum(s2p / N - s1p * s1p, 0.0))
        gain = base - new
        if pl.met.alpha:
            g = pl.met.g
            sk = _skew(lm, lc, g)
            dsk = (
                _skew(lm[s] - dm / pl.capm[s], lc[s] - dc / pl.capc[s], g)
                - sk[s]
                + _skew(lm[T] + dm / pl.capm[T], lc[T] + dc / pl.capc[T], g)
                - sk[T]
            )
            gain = gain - pl.met.alpha * dsk / N
        return gain


def _better(a: _Planner, b: _Planner) -> bool:
    """Whether plan a ends better than plan b, which stopped above its target: a reaches the
    target, or neither does and a ends lower by the loop's own measure, the metric plus the cost
    of every byte moved (ties: fewer bytes, then fewer moves)."""
    if max(a.sigma()) <= a.target:
        return True
    if max(b.sigma()) <= b.target:
        return False

    def measure(p: _Planner) -> tuple:
        nbytes = math.fsum(m.bytes for m in p.moves)
        return round(p.metric() + p.kappa * nbytes / p.sum_a, ROUND), round(nbytes), len(p.moves)

    return measure(a) < measure(b)


def apply_plan(pool: PoolState, plan: RebalancePlan) -> None:
    """Record a plan in a snapshot, in order (what the command writes to the inventory)."""
    for m in plan.moves:
        pool.move_to(m.vm, m.dst)


def _with(move: RebalanceMove, **changes: Any) -> RebalanceMove:
    from dataclasses import replace

    return replace(move, **changes)


def plan_rebalance(
    pool: PoolState,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    policy: str | None = None,
    max_moves: int | None = DEFAULT_MAX_MOVES,
    network: str | None = None,
    bandwidth: float | None = None,
    ha: bool = True,
    schedule: bool = True,
) -> RebalancePlan:
    """Plan `pool-rebalance` on a snapshot (engine.md §5); the snapshot is not modified.

    threshold: 1..5 (`INVALID_VALUE` otherwise). policy: spread | balanced | pack, default the pool's
    rebalance-policy. max_moves: a positive limit or None for `unlimited`. network/bandwidth: the
    migration network and `bandwidth=` override, for costs and waves. ha: apply filter 11 when the
    pool asks for it. schedule: cut the moves into waves (§4.3).
    """
    if not isinstance(threshold, int) or not 1 <= threshold <= 5:
        raise VmctlError("INVALID_VALUE", params=[("name", "threshold"), ("value", threshold)])
    policy = policy or pool.rebalance_policy
    if policy not in POLICIES:
        raise VmctlError("INVALID_VALUE", params=[("name", "policy"), ("value", policy)])
    if max_moves is not None and max_moves < 0:
        raise VmctlError("INVALID_VALUE", params=[("name", "max-moves"), ("value", max_moves)])
    pl = _Planner(pool, policy, threshold, max_moves, network, bandwidth, ha)
    initial = pl._initial_items() if pl.N and policy != "pack" else None
    sm0, sc0 = pl.sigma() if pl.N else (0.0, 0.0)
    i0 = pl.metric() if pl.N else 0.0
    freed: list[str] = []
    if pl.N == 0:
        stop = STOP_NO_MOVE
    else:
        pl.mandatory()
        if policy == "pack":
            stop, freed = pl.pack() if threshold > 1 else (STOP_MANDATORY_ONLY, [])
        else:
            stop = pl.greedy()
            if stop == STOP_NO_MOVE:
                # The single-move loop stalled above the target. Plan again from the start with
                # exchange steps among the candidates; keep that plan if it ends lower.
                alt = _Planner(pool, policy, threshold, max_moves, network, bandwidth, ha, initial)
                # what depends only on the classes and hosts carries over; the rest is freed
                alt._static, alt._cost_rows, alt._pred_cache = pl._static, pl._cost_rows, pl._pred_cache
                alt.exchange._kinds = pl.exchange._kinds
                pl._blocks, pl.exchange._combos = {}, {}
                alt.mandatory()
                alt_stop = alt.greedy(exchanges=True)
                alt.evaluations += pl.evaluations
                if _better(alt, pl):
                    pl, stop = alt, alt_stop
                else:
                    pl.evaluations = alt.evaluations
    sm1, sc1 = pl.sigma() if pl.N else (0.0, 0.0)
    sched = None
    moves = pl.moves
    if schedule and pl.specs:
        sched = wv.schedule(pl.specs, wv.caps_for(pool, network))
        moves = [_with(m, time=s.prediction.total_time, wave=s.wave) for m, s in zip(pl.moves, sched.moves)]
    return RebalancePlan(
        policy=policy,
        threshold=threshold,
        target=pl.target,
        max_moves=max_moves,
        sigma_before={"memory": sm0, "vcpu": sc0},
        sigma_after={"memory": sm1, "vcpu": sc1},
        metric_before=i0,
        metric_after=pl.metric() if pl.N else 0.0,
        moves=tuple(moves),
        stop_reason=stop,
        schedule=sched,
        freed_hosts=tuple(freed),
        unresolved=tuple(pl.unresolved),
        evaluations=pl.evaluations,
    )


def imbalance(pool: PoolState, policy: str = "spread") -> dict[str, float]:
    """σ per resource and the metric I of `pool` as it is (for what-if reports and the bench)."""
    import numpy as np

    hosts = pool.usable_hosts()
    if not hosts:
        return {"memory": 0.0, "vcpu": 0.0, "metric": 0.0}
    loads = pool.loads()
    lm = np.array([loads[h.uuid].mem / (h.memory_capacity or 1) for h in hosts])
    lc = np.array([loads[h.uuid].vcpus / (h.vcpu_capacity(pool.vcpu_ratio) or 1) for h in hosts])
    met = _Metric(
        (pool.knob("rebalance-weight-memory", 1.0), pool.knob("rebalance-weight-vcpu", 1.0)),
        pool.knob("placement-skew-weight", DEFAULT_SKEW_WEIGHT) if policy == "balanced" else 0.0,
        _mix(lm, lc, hosts, pool),
    )
    sm, sc = sigmas(lm, lc)
    return {"memory": sm, "vcpu": sc, "metric": metric(lm, lc, met)}


def _mix(lm: Any, lc: Any, hosts: list, pool: PoolState) -> tuple[float, float]:
    loads = pool.loads()
    tm = sum(loads[h.uuid].mem for h in hosts) / (sum(h.memory_capacity for h in hosts) or 1)
    tc = sum(loads[h.uuid].vcpus for h in hosts) / (sum(h.vcpu_capacity(pool.vcpu_ratio) for h in hosts) or 1)
    n = math.hypot(tm, tc)
    return (tm / n, tc / n) if n > 0 else (1 / math.sqrt(2), 1 / math.sqrt(2))
