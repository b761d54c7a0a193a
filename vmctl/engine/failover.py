"""Host failure and the restart procedure (engine.md §3.5): ``fail_hosts`` and ``failover_plan``.

Apart from :mod:`vmctl.engine.ha` because it restarts VMs through the placement scheduler, while
the scheduler itself asks :mod:`vmctl.engine.ha` for filter 11: keeping the two apart keeps the
layering one-way (placement → ha, failover → placement and ha).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vmctl.engine.ha import Planner
from vmctl.engine.placement.batch import place_batch
from vmctl.engine.placement.filters import MODE_RESTART
from vmctl.engine.placement.scheduler import Scheduler
from vmctl.engine.snapshot import BEST_EFFORT, RESTART, PoolState


@dataclass(slots=True)
class RestartRow:
    """One VM of the failed hosts: result ``restarted`` (host set) or ``halted`` (code set)."""

    vm: str
    name: str
    priority: str
    result: str
    host: str | None = None
    code: str | None = None


@dataclass(slots=True)
class FailoverPlan:
    rows: list[RestartRow]
    state: PoolState  # the scratch state after the failure and the restarts

    def to_json(self) -> list[dict[str, Any]]:
        return [
            {
                "vm": r.vm,
                "name-label": r.name,
                "ha-restart-priority": r.priority,
                "result": r.result,
                "target": r.host,
                "error": r.code,
            }
            for r in self.rows
        ]


def fail_hosts(
    pool: PoolState, hosts: Iterable[str], restart: bool | None = None, policy: str | None = None
) -> FailoverPlan:
    """Simulate hosts failing together on a scratch copy and, when HA is enabled (or ``restart``
    is true), run the restart procedure. The returned ``state`` is what host-fail commits."""
    failed = sorted(set(hosts))
    state = pool.copy()
    victims = sorted(
        (v for v in state.vms.values() if v.holds_resources and v.resident_on in failed), key=lambda v: v.uuid
    )
    planner = Planner(pool)
    findex = [planner.index[h] for h in failed if h in planner.index]
    for h in failed:
        state.update_host(h, live=False)
    for v in victims:
        state.halt(v.uuid)
    do_restart = pool.ha_enabled if restart is None else restart
    rows: dict[str, RestartRow] = {
        v.uuid: RestartRow(v.uuid, v.name, v.ha_restart_priority, "halted", code=None) for v in victims
    }
    if not do_restart:
        return FailoverPlan([rows[v.uuid] for v in victims], state)
    prot = [v for v in victims if v.ha_restart_priority == RESTART]
    best = [v for v in victims if v.ha_restart_priority == BEST_EFFORT]
    trial = state.copy()
    sched = Scheduler(trial, policy)
    res = place_batch(sched, [v.uuid for v in prot], mode=MODE_RESTART, ha=False, ha_order=True)
    if not res.failures:
        state = trial
        for vm, host in res.placements:
            rows[vm].result, rows[vm].host = "restarted", host
    else:
        packed = planner.pack(findex, assign=True)
        for vm, host in sorted(packed.assignment.items()):
            state.start_on(vm, host)
            rows[vm].result, rows[vm].host = "restarted", host
        for v in prot:
            if rows[v.uuid].result != "restarted":
                rows[v.uuid].code = "NO_HOSTS_AVAILABLE"
    sched = Scheduler(state, policy)
    order = sorted(
        best, key=lambda v: (v.order, -max(v.m_st / planner.mean_mem, v.vcpus / planner.mean_vcpu), v.uuid)
    )
    for v in order:
        p = sched.place_request(sched.request(v, MODE_RESTART), ha=False)
        if p is None:
            rows[v.uuid].code = "NO_HOSTS_AVAILABLE"
        else:
            sched.commit(v.uuid, p.host)
            rows[v.uuid].result, rows[v.uuid].host = "restarted", p.host
    # Report order: restart priority, then order, then uuid (the restart order).
    rank = {RESTART: 0, BEST_EFFORT: 1}
    out = sorted(rows.values(), key=lambda r: (rank.get(r.priority, 2), pool.vms[r.vm].order, r.vm))
    return FailoverPlan(out, state)


def failover_plan(pool: PoolState, hosts: Iterable[str]) -> FailoverPlan:
    """``pool-ha-compute-vm-failover-plan``: the restart procedure on a scratch copy, HA enabled
    or not."""
    return fail_hosts(pool, hosts, restart=True)
