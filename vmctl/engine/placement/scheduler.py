"""Single-VM placement (engine.md §2.1–2.2) over per-host NumPy arrays.

A :class:`Scheduler` wraps one :class:`~vmctl.engine.snapshot.PoolState`. It keeps the per-host
capacities and loads in arrays (a :class:`HostTable`) and caches the masks of the static filters
per signature, so a decision is a handful of vector operations over the hosts instead of a Python
loop; :meth:`Scheduler.commit` records a decision in both the arrays and the snapshot, so chained
and batch decisions see earlier ones (engine.md §1 "placed earlier in the same transaction").

NumPy is imported lazily (never at module import): commands that do not place never pay for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import vmctl.engine.placement.filters as F
import vmctl.engine.placement.weighers as W
from vmctl.engine.placement.table import HostTable
from vmctl.engine.snapshot import (
    HOLDING_STATES,
    HostState,
    PoolState,
    VMState,
    tie_key,
)
from vmctl.errors import Ref, VmctlError

# Policies that consolidate: prefer occupied hosts, open the largest empty host when needed.
# `spread` and `balanced` spread the load and keep the plain score ranking of engine.md §2.2.
CONSOLIDATING = ("pack",)
# Rank keys: scores compare after rounding to 9 decimals (engine.md §0).
ROUND = 9
# Hosts whose float score is within this of the best are re-ranked exactly with round(S, 9) and
# the tie key; far larger than float noise, far smaller than a 1e-9 rounding step matters.
NEAR = 1e-7


def mode_for(vm: VMState) -> str:
    """The mode the commands use for a VM in its current state: running/paused → migrate,
    suspended → resume, halted → start."""
    if vm.power_state in HOLDING_STATES:
        return F.MIGRATE
    if vm.power_state == "suspended":
        return F.RESUME
    return F.START


def required_srs(vm: VMState, vdi_map: dict[str, str] | None = None) -> frozenset[str]:
    """The SRs the VM needs on a host; a VDI named in a migration map counts at its target SR."""
    if not vdi_map:
        return vm.srs
    kept = {d.sr for d in vm.vdis if d.uuid not in vdi_map}
    mapped_from = {d.sr for d in vm.vdis if d.uuid in vdi_map}
    # SRs only reached through mapped VDIs are no longer needed; the suspend VDI's SR and others
    # not described in vdis stay.
    srs = (set(vm.srs) - (mapped_from - kept)) | {vdi_map[d.uuid] for d in vm.vdis if d.uuid in vdi_map}
    return frozenset(srs)


@dataclass(slots=True)
class Placement:
    """The outcome of one placement decision.

    host: the chosen host uuid. score: its S (rounded to 9 decimals). tier: its memory tier.
    decided_by: the rank component that separated winner and runner-up: ``affinity`` | ``tier`` |
    ``occupancy`` | ``connectivity`` | ``capacity`` (pack only) | ``score`` | ``tie-key``;
    ``only-host`` when one host passed.
    margin: S(winner) − S(runner-up), rounded to 9 decimals (None without a runner-up or when not
    computed). runner_up: the next host passing every filter (when computed).
    feasible: hosts passing filters 1–10. examined: hosts examined.
    """

    vm: str
    host: str
    score: float
    tier: int
    decided_by: str
    margin: float | None
    runner_up: str | None
    feasible: int
    examined: int


class Scheduler:
    """Placement over one pool snapshot. ``policy``/``seed`` default to the pool's.

    ``ha`` enables filter 11 when the pool asks for it (HA enabled, not overcommitted, overcommit
    not allowed); HA restarts and the HA planner pass ``ha=False``.
    """

    def __init__(self, pool: PoolState, policy: str | None = None, seed: int | None = None) -> None:
        self.pool = pool
        self.policy = policy or pool.policy
        self.seed = pool.seed if seed is None else seed
        self.table = HostTable(pool)
        self._ha_planner: Any = None  # HA planner of the current state, built on first use
        # During a rolling upgrade (the hosts run different versions) XAPI starts and resumes
        # VMs only on the hosts of the newest version (Helpers.Checks.RPU): filter 5's floor
        versions = {h.software_version for h in pool.hosts.values()}
        self.upgrade_version = max(versions) if len(versions) > 1 else None

    # ---- requests -----------------------------------------------------------------------------
    def request(
        self,
        vms: VMState | Iterable[VMState],
        mode: str | None = None,
        force: bool = False,
        vdi_map: dict[str, str] | None = None,
    ) -> F.Request:
        """Build the filter request for one VM, or for the members of one batch item (summed)."""
        pool = self.pool
        if isinstance(vms, VMState) and not vms.groups and not vdi_map:
            # Fast path: one VM without groups or storage map (most online decisions).
            v = vms
            mode = mode or mode_for(v)
            sv = self.source_version(mode, v)
            m_st = v.m_st
            m_min = v.m_min
            return F.Request(
                vm=v,
                mode=mode,
                force=force,
                srs=v.srs,
                networks=v.networks,
                mem=m_st if pool.memory_policy == "none" else m_min,
                mem_min=m_min,
                mem_max=v.m_max,
                mem_st=m_st,
                vcpus=v.vcpus,
                max_vcpus=v.vcpus,
                members=(v.uuid,),
                source_version=sv,
            )
        members = [vms] if isinstance(vms, VMState) else sorted(vms, key=lambda v: v.uuid)
        lead = members[0]
        mode = mode or mode_for(lead)
        srs: set[str] = set()
        nets: set[str] = set()
        aff: set[str] = set()
        anti: set[str] = set()
        saff: set[str] = set()
        santi: set[str] = set()
        self_hosts: dict[str, list[str]] = {}
        for vm in members:
            srs |= required_srs(vm, vdi_map)
            nets |= vm.networks
            hosts = vm.load_hosts()
            for g in vm.groups:
                grp = pool.groups.get(g)
                if grp is None or grp.placement not in ("affinity", "anti-affinity"):
                    continue
                if grp.strict:
                    (aff if grp.placement == "affinity" else anti).add(g)
                else:
                    (saff if grp.placement == "affinity" else santi).add(g)
                if hosts:
                    self_hosts.setdefault(g, []).extend(hosts)
        conflict = None
        if len(members) > 1:
            for g in sorted(anti):
                if sum(1 for v in members if g in v.groups) > 1:
                    conflict = g
                    break
        source_version = self.source_version(mode, lead)
        mp = pool.memory_policy
        return F.Request(
            vm=lead,
            mode=mode,
            force=force,
            srs=frozenset(srs),
            networks=frozenset(nets),
            mem=sum(v.m(mp) for v in members),
            mem_min=sum(v.m_min for v in members),
            mem_max=sum(v.m_max for v in members),
            mem_st=sum(v.m_st for v in members),
            vcpus=sum(v.vcpus for v in members),
            max_vcpus=max(v.vcpus for v in members),
            members=tuple(v.uuid for v in members),
            strict_aff=tuple(sorted(aff)),
            strict_anti=tuple(sorted(anti)),
            soft_aff=tuple(sorted(saff)),
            soft_anti=tuple(sorted(santi)),
            self_hosts={g: tuple(h) for g, h in self_hosts.items()},
            source_version=source_version,
            conflict=conflict,
        )

    def source_version(self, mode: str, vm: VMState) -> tuple[int, ...] | None:
        """Filter 5's floor: a migration's source host version; a start's or resume's, the newest
        version during a rolling upgrade; otherwise none."""
        if mode == F.MIGRATE:
            h = self.pool.hosts.get(vm.resident_on) if vm.resident_on else None
            return h.software_version if h is not None else None
        if mode in (F.START, F.RESUME):
            return self.upgrade_version
        return None

    # ---- filters ------------------------------------------------------------------------------
    def feasible_mask(self, req: F.Request, exclude: Iterable[str] = ()) -> Any:
        """Hosts passing filters 1–10 (and not excluded)."""
        t = self.table
        ok = t.base_ok.copy()
        for f in F.REQUEST_FILTERS:  # the host-state filters are in base_ok
            m = f.mask(t, req)
            if m is not None:
                ok &= m
        for h in exclude:
            i = t.index.get(h)
            if i is not None:
                ok[i] = False
        return ok

    def first_failures(self, req: F.Request) -> Any:
        """Per host, the index of the first filter (1–10) that rejects it, 0 when all pass."""
        import numpy as np

        t = self.table
        fail = np.zeros(t.n, dtype=np.int8)
        for f in reversed(F.FILTERS):
            m = f.mask(t, req)
            if m is not None:
                fail[~m] = f.index
        return fail

    def rejection(self, req: F.Request, host: str) -> tuple[int, str, F.Params] | None:
        """(filter index, code, params) of the first filter 1–10 rejecting ``host``, else None."""
        t = self.table
        i = t.index[host]
        for f in F.FILTERS:
            m = f.mask(t, req)
            if m is not None and not m[i]:
                code, params = f.reason(t, req, i)
                return f.index, code, params
        return None

    def filter_error(
        self, vm: str, host: str, f: F.Filter, mode: str | None = None, force: bool = False
    ) -> VmctlError | None:
        """One filter alone on ``host`` (what a command checks before the others, as XAPI checks
        a migration's CPU before the operation): its error, or None when the host passes."""
        t = self.table
        req = self.request(self.pool.vms[vm], mode, force)
        m = f.mask(t, req)
        i = t.index[host]
        if m is None or m[i]:
            return None
        code, params = f.reason(t, req, i)
        return VmctlError(code, params=params)

    def ha_active(self, ha: bool) -> bool:
        return ha and self.pool.admission_control

    def ha_rejection(self, req: F.Request, host: str) -> tuple[int, str, F.Params] | None:
        """Filter 11: would the HA plan for the pool's target still exist with the item on host?"""
        from vmctl.engine import ha

        if self._ha_planner is None:
            self._ha_planner = ha.Planner(self.pool)
        err = ha.placement_rejection(self.pool, list(req.members), host, self._ha_planner)
        if err is None:
            return None
        return F.HA_FILTER_INDEX, err.code, err.params

    # ---- ranking ------------------------------------------------------------------------------
    def tk(self, req: F.Request, i: int) -> bytes:
        return tie_key(self.seed, req.vm.uuid, self.table.uuids[i])

    @property
    def consolidates(self) -> bool:
        return self.policy in CONSOLIDATING

    def rank_key(self, req: F.Request, terms: W.Terms, i: int) -> tuple:
        """(affinity host first, tier, [pack only: occupied first, fewest networks+SRs,
        then for an empty host the largest capacity], −round(S, 9), tk)."""
        t = self.table
        aff = 0 if req.vm.affinity == t.uuids[i] else 1
        tier = int(terms.tier[i]) if terms.tier is not None else 0
        s = -round(float(terms.score[i]), ROUND)
        if not self.consolidates:
            return (aff, tier, 0, 0, 0, 0, s, self.tk(req, i))
        if t.count[i] > 0:
            return (aff, tier, 0, int(t.extras[i]), 0, 0, s, self.tk(req, i))
        return (aff, tier, 1, int(t.extras[i]), -int(t.mem_cap[i]), -int(t.vcpu_cap[i]), s, self.tk(req, i))

    @staticmethod
    def decided_by(k1: tuple, k2: tuple) -> str:
        """Which rank component separated the winner from the runner-up."""
        for pos, name in (
            (0, "affinity"),
            (1, "tier"),
            (2, "occupancy"),
            (3, "connectivity"),
            (4, "capacity"),
            (5, "capacity"),
            (6, "score"),
        ):
            if k1[pos] != k2[pos]:
                return name
        return "tie-key"

    def ranked(self, req: F.Request, ok: Any, terms: W.Terms) -> list[int]:
        """Every feasible host index in rank order (used when the winner needs more than the
        top of the order: filter 11 failures, explain, margins)."""
        import numpy as np

        idx = np.nonzero(ok)[0].tolist()
        return sorted(idx, key=lambda i: self.rank_key(req, terms, i))

    def best(self, req: F.Request, ok: Any, terms: W.Terms) -> int:
        """The top-ranked feasible host without sorting them all."""
        import numpy as np

        t = self.table
        aff = req.vm.affinity
        if aff is not None:
            ai = t.index.get(aff)
            if ai is not None and ok[ai]:
                return ai
        cand = ok
        if terms.tier is not None:
            tmin = terms.tier[ok].min()
            cand = ok & (terms.tier == tmin)
        if self.consolidates:
            # pack never opens an empty host while an occupied one passes; when it must, it
            # opens the largest (fewest hosts: the non-empty-host targets of P1/P2/P5). In
            # both cases hosts offering the fewest networks and SRs come first, so VMs that do not
            # need scarce connectivity leave it to those that do.
            occupied = cand & t.occupied
            if np.count_nonzero(occupied):
                cand = t.fewest_extras(occupied)
            else:
                cand = t.fewest_extras(cand)
                cand = cand & (t.mem_cap == t.mem_cap[cand].max())
                cand = cand & (t.vcpu_cap == t.vcpu_cap[cand].max())
        sc = np.where(cand, terms.score, t.NEG_INF)
        j = int(sc.argmax())
        near_mask = sc >= sc[j] - NEAR
        if np.count_nonzero(near_mask) == 1:
            return j
        near = np.flatnonzero(near_mask)
        # Exact ranking among the near-ties (all share affinity, tier, occupancy and capacity
        # here): rounded scores first, tie keys only for the equal ones. Under a spreading policy
        # many hosts hold the same load and tie with bit-identical scores, so each distinct
        # score is rounded once.
        idx = near.tolist()
        vals = sc[near].tolist()
        rounded = {v: round(v, ROUND) for v in set(vals)}
        if len(rounded) > 1:
            top = max(rounded.values())
            idx = [i for i, v in zip(idx, vals) if rounded[v] == top]
        if len(idx) == 1:
            return idx[0]
        # tk(h) = first 8 bytes of SHA-256("<seed>:<vm>:<host>"); a list comprehension is the
        # cheapest way to hash the many equal hosts a policy may tie on.
        pre = f"{self.seed}:{req.vm.uuid}:".encode()
        sha = hashlib.sha256
        ub = t.uuid_bytes
        keys8 = [sha(pre + ub[i]).digest()[:8] for i in idx]
        return idx[keys8.index(min(keys8))]

    # ---- decisions ----------------------------------------------------------------------------
    def place_request(
        self, req: F.Request, exclude: Iterable[str] = (), ha: bool = True, margin: bool = False
    ) -> Placement | None:
        """Choose a host for a request; None when no host passes every filter."""
        t = self.table
        import numpy as np

        exclude = tuple(exclude)
        ok = self.feasible_mask(req, exclude)
        n_ok = int(np.count_nonzero(ok))
        if n_ok == 0:
            return None
        terms = W.score_terms(t, req, self.policy, n_ok)
        examined = t.n - sum(1 for h in set(exclude) if h in t.index) if exclude else t.n
        check_ha = self.ha_active(ha)
        if not check_ha and not margin:
            return self._placement(req, terms, self.best(req, ok, terms), None, n_ok, examined)
        # Filter 11 runs lazily in rank order: take the best remaining host until one passes
        # (and, for a margin, the next passing host as runner-up).
        need = 2 if margin else 1
        cands = ok.copy()
        picks: list[int] = []
        left = n_ok
        while len(picks) < need and left > 0:
            i = self.best(req, cands, terms)
            cands[i] = False
            left -= 1
            if not check_ha or self.ha_rejection(req, t.uuids[i]) is None:
                picks.append(i)
        if not picks:
            return None
        return self._placement(req, terms, picks[0], picks[1] if len(picks) > 1 else None, n_ok, examined)

    def _placement(
        self, req: F.Request, terms: W.Terms, win: int, second: int | None, n_ok: int, examined: int
    ) -> Placement:
        t = self.table
        s = round(float(terms.score[win]), ROUND)
        tier = int(terms.tier[win]) if terms.tier is not None else 0
        if second is None:
            aff_won = req.vm.affinity == t.uuids[win]
            decided = "only-host" if n_ok == 1 else "affinity" if aff_won else "score"
            margin, runner = None, None
        else:
            decided = self.decided_by(self.rank_key(req, terms, win), self.rank_key(req, terms, second))
            margin = round(s - round(float(terms.score[second]), ROUND), ROUND)
            runner = t.uuids[second]
        return Placement(req.vm.uuid, t.uuids[win], s, tier, decided, margin, runner, n_ok, examined)

    def place(
        self,
        vm: str | VMState,
        mode: str | None = None,
        force: bool = False,
        vdi_map: dict[str, str] | None = None,
        exclude: Iterable[str] | None = None,
        ha: bool = True,
        margin: bool = False,
    ) -> Placement:
        """Choose a host for one VM (``vm-start``/``vm-resume`` without ``on=``, ``vm-migrate``
        without ``host=``, ``vm-place``). Raises ``NO_HOSTS_AVAILABLE`` with the §2.5 summary.
        For a migration the current host is excluded unless ``exclude`` is given."""
        v = self.pool.vms[vm] if isinstance(vm, str) else vm
        req = self.request(v, mode, force, vdi_map)
        if exclude is None:
            exclude = (v.resident_on,) if req.mode == F.MIGRATE and v.resident_on else ()
        res = self.place_request(req, exclude, ha=ha, margin=margin)
        if res is None:
            raise self.no_hosts_error(req, exclude, ha=ha)
        return res

    def check_target(
        self,
        vm: str | VMState,
        host: str,
        mode: str | None = None,
        force: bool = False,
        vdi_map: dict[str, str] | None = None,
        ha: bool = True,
    ) -> None:
        """Explicit target (``vm-start on=H``, ``vm-migrate host=H``): raise the code of the first
        filter that rejects H."""
        v = self.pool.vms[vm] if isinstance(vm, str) else vm
        req = self.request(v, mode, force, vdi_map)
        rej = self.rejection(req, host)
        if rej is None and self.ha_active(ha):
            rej = self.ha_rejection(req, host)
        if rej is not None:
            raise VmctlError(rej[1], params=rej[2])

    def commit(self, vm: str, host: str) -> VMState:
        """Record that ``vm`` now runs on ``host`` (a start, restart or batch step)."""
        self._ha_planner = None
        old = self.pool.vms[vm]
        self.table.apply_vm(old, -1)
        new = self.pool.start_on(vm, host)
        self.table.apply_vm(new, 1)
        return new

    def commit_move(self, vm: str, host: str) -> VMState:
        """Record a completed migration of a running VM to ``host``."""
        self._ha_planner = None
        old = self.pool.vms[vm]
        self.table.apply_vm(old, -1)
        new = self.pool.move_to(vm, host)
        self.table.apply_vm(new, 1)
        return new

    def remove_vm(self, vm: str) -> None:
        """Forget a VM (a departure in a replay, a destroyed VM), releasing its load."""
        self._ha_planner = None
        self.table.apply_vm(self.pool.vms[vm], -1)
        self.pool.remove_vm(vm)

    def set_vm(self, vm: VMState) -> None:
        """Replace a VM value in the pool (any change), keeping the arrays in sync."""
        self._ha_planner = None
        old = self.pool.vms.get(vm.uuid)
        if old is not None:
            self.table.apply_vm(old, -1)
        self.pool.set_vm(vm)
        self.table.apply_vm(vm, 1)

    def set_host(self, host: HostState) -> None:
        """Replace a host value (live, enabled, evacuating…); capacities are assumed unchanged."""
        self._ha_planner = None
        self.pool.set_host(host)
        self.table.refresh_host(host)

    # ---- nothing fits (engine.md §2.5) ---------------------------------------------------------
    def reasons(self, req: F.Request, exclude: Iterable[str] = (), ha: bool = True) -> dict[str, list[str]]:
        """code → host uuids (sorted by host name, then uuid), codes in filter order; hosts passing
        filters 1–10 are attributed to filter 11 when HA refuses them."""
        t = self.table
        excl = set(exclude)
        fail = self.first_failures(req)
        by_code: dict[str, list[int]] = {}
        for i in range(t.n):
            if t.uuids[i] in excl:
                continue
            fi = int(fail[i])
            if fi == 0:
                if self.ha_active(ha):
                    rej = self.ha_rejection(req, t.uuids[i])
                    if rej is not None:
                        by_code.setdefault(rej[1], []).append(i)
                continue
            code, _ = F.BY_INDEX[fi].reason(t, req, i)
            by_code.setdefault(code, []).append(i)
        out: dict[str, list[str]] = {}
        for code in F.CODE_ORDER:
            if code in by_code:
                idx = sorted(by_code[code], key=lambda i: (t.hosts[i].name, t.uuids[i]))
                out[code] = [t.uuids[i] for i in idx]
        return out

    def no_hosts_error(self, req: F.Request, exclude: Iterable[str] = (), ha: bool = True) -> VmctlError:
        exclude = tuple(exclude)
        reasons = self.reasons(req, exclude, ha)
        examined = self.table.n - sum(1 for h in set(exclude) if h in self.table.index)
        return no_hosts_available(self.pool, req.vm, reasons, examined)


def _host_label(pool: PoolState, uuid: str) -> str:
    h = pool.hosts.get(uuid)
    return h.name if h is not None and h.name else uuid


def summarize_hosts(pool: PoolState, hosts: list[str], shown: int = 3) -> str:
    """``39 hosts (h01, h02, h05, … 36 more)``."""
    n = len(hosts)
    names = [_host_label(pool, u) for u in hosts[:shown]]
    more = f", … {n - shown} more" if n > shown else ""
    return f"{n} host{'s' if n != 1 else ''} ({', '.join(names)}{more})"


def no_hosts_available(
    pool: PoolState, vm: VMState, reasons: dict[str, list[str]], examined: int
) -> VmctlError:
    """The ``NO_HOSTS_AVAILABLE`` error of engine.md §2.5.

    Text params: ``vm`` then one ``CODE: n hosts (names…)`` line per code in filter order.
    The error also carries ``reasons`` (code → host uuids), ``hosts_examined`` and
    ``json_params`` (``{"vm", "hosts-examined", "reasons"}``) for ``-f json``.
    """
    label = vm.name or vm.uuid
    params: list[tuple[str, Any]] = [("vm", Ref("vm", vm.uuid, vm.name or None))]
    for code, hosts in reasons.items():
        params.append((code, summarize_hosts(pool, hosts)))
    err = VmctlError(
        "NO_HOSTS_AVAILABLE",
        f"no host can run VM {label} ({examined} host{'s' if examined != 1 else ''} examined)",
        params=params,
    )
    err.reasons = reasons  # type: ignore[attr-defined]
    err.hosts_examined = examined  # type: ignore[attr-defined]
    err.json_params = {
        "vm": vm.uuid,
        "hosts-examined": examined,  # type: ignore[attr-defined]
        "reasons": {c: list(h) for c, h in reasons.items()},
    }
    return err


def choose_host(
    pool: PoolState,
    vm: str,
    *,
    policy: str | None = None,
    seed: int | None = None,
    mode: str | None = None,
    force: bool = False,
    vdi_map: dict[str, str] | None = None,
    ha: bool = True,
    margin: bool = False,
) -> Placement:
    """One decision on a snapshot (does not modify it)."""
    return Scheduler(pool, policy, seed).place(
        vm, mode=mode, force=force, vdi_map=vdi_map, ha=ha, margin=margin
    )


def check_target(
    pool: PoolState,
    vm: str,
    host: str,
    *,
    mode: str | None = None,
    force: bool = False,
    vdi_map: dict[str, str] | None = None,
    ha: bool = True,
) -> None:
    """Raise the first rejecting filter's error for an explicit target host."""
    Scheduler(pool).check_target(vm, host, mode=mode, force=force, vdi_map=vdi_map, ha=ha)
