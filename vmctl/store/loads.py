"""What a placement reads of a pool's VMs without reading them: per-host sums and the networks
their VIFs use, computed by the database (vmctl/engine_adapter.py builds the partial snapshot of
engine/snapshot.py from them).

The VMs counted are those of the pool that may run (neither templates nor snapshots), on the
hosts engine.md §1 counts them on (``VMState.load_hosts``): a running or paused VM on its
resident host, and a VM with a start or migration in flight also on its
scheduled-to-be-resident-on host when that is another one. Both queries see the transaction's
own writes (its buffered rows are flushed first).
"""

from __future__ import annotations

import sqlalchemy as sa

from vmctl.store import schema

HOLDING = ("running", "paused")

# One row per (host, resident) of vm_load_sums: the host; True for VMs resident there, False for
# VMs scheduled there; then the sums below, in this order.
LOAD_SUMS = (
    "count",
    "vcpus",
    "memory-static-max",
    "memory-dynamic-max",
    "memory-floor",  # max(memory-dynamic-min, memory-reservation): the hard need under `dynamic`
    "static-max-units",  # ⌈memory-static-max / unit⌉ (the part of the overhead that is per VM)
    "protected-count",  # the same four over VMs whose ha-restart-priority is restart
    "protected-vcpus",
    "protected-memory-static-max",
    "protected-static-max-units",
)


def vm_load_sums(txn, pool_uuid: str, unit: int) -> list[tuple]:
    """Per host, the sums of LOAD_SUMS over the pool's VMs counted there (see the module
    docstring); ``unit`` divides memory-static-max, rounded up, for ``static-max-units``."""
    txn.flush("vm")
    c = schema.TABLES["vm"].c
    may_run = sa.and_(c.pool == pool_uuid, sa.not_(c.is_a_template), sa.not_(c.is_a_snapshot))
    holding = c.power_state.in_(HOLDING)
    floor = sa.case(
        (c.memory_dynamic_min >= c.memory_reservation, c.memory_dynamic_min), else_=c.memory_reservation
    )
    units = (c.memory_static_max + (unit - 1)) // unit  # memory sizes are positive (model.md §1.3)
    protected = c.ha_restart_priority == "restart"

    def sums(host):
        def prot(x):
            return sa.func.coalesce(sa.func.sum(sa.case((protected, x), else_=0)), 0)

        return (
            host,
            sa.func.count(),
            sa.func.sum(c.vcpus),
            sa.func.sum(c.memory_static_max),
            sa.func.sum(c.memory_dynamic_max),
            sa.func.sum(floor),
            sa.func.sum(units),
            prot(1),
            prot(c.vcpus),
            prot(c.memory_static_max),
            prot(units),
        )

    sched = c.scheduled_to_be_resident_on
    resident = sa.select(*sums(c.resident_on)).where(may_run, holding, c.resident_on != "")
    scheduled = sa.select(*sums(sched)).where(
        may_run, sched != "", sa.not_(sa.and_(holding, c.resident_on == sched))
    )
    out = []
    for query, is_resident in ((resident, True), (scheduled, False)):
        for row in txn.conn.execute(query.group_by(query.selected_columns[0])):
            out.append((row[0], is_resident, *(int(v or 0) for v in row[1:])))
    return out


def vif_networks(txn, pool_uuid: str) -> set[str]:
    """The networks the VIFs of the pool's VMs that may run are on."""
    txn.flush("vm")
    txn.flush("vif")
    vm, vif = schema.TABLES["vm"].c, schema.TABLES["vif"]
    q = (
        sa.select(vif.c.network)
        .distinct()
        .join_from(vif, schema.TABLES["vm"], vm.uuid == vif.c.vm)
        .where(
            vm.pool == pool_uuid, sa.not_(vm.is_a_template), sa.not_(vm.is_a_snapshot), vif.c.network != ""
        )
    )
    return {r[0] for r in txn.conn.execute(q)}
