"""What a placement reads of a pool's VMs without reading them: per-host sums and the networks
their VIFs use, computed by the database (vmctl/engine_adapter.py builds the partial snapshot of
engine/snapshot.py from them).

The VMs counted are those of the pool that may run (neither templates nor snapshots), on the
hosts engine.md §1 counts them on (``VMState.load_hosts``): a running or paused VM on its
resident host, and a VM with a start or migration in flight also on its
scheduled-to-be-resident-on host when that is another one. The queries see the transaction's
own writes (its buffered rows are flushed first).
"""

from __future__ import annotations

import sqlalchemy as sa

from vmctl.store import schema

HOLDING = ("running", "paused")


def vm_load_sums(txn, pool_uuid: str, unit: int) -> list[tuple]:
    """The pool's VMs counted on some host, summed per (resident host, scheduled host) in one
    pass. Each row: the host the VMs are resident on (running or paused) or None, the other host
    they are scheduled to be resident on or None, then the count, Σ vcpus, Σ memory-static-max,
    Σ memory-dynamic-max, Σ max(memory-dynamic-min, memory-reservation) (the hard need under
    `dynamic`), Σ ⌈memory-static-max / unit⌉ (the per-VM part of the overhead,
    capacity.overhead_of), and the count, Σ vcpus, Σ memory-static-max and Σ units again over
    the VMs whose ha-restart-priority is restart."""
    txn.flush("vm")
    c = schema.TABLES["vm"].c
    holding = c.power_state.in_(HOLDING)
    sched = c.scheduled_to_be_resident_on
    resident_on = sa.case((sa.and_(holding, c.resident_on != ""), c.resident_on), else_="")
    scheduled_on = sa.case(
        (sa.and_(sched != "", sa.not_(sa.and_(holding, c.resident_on == sched))), sched), else_=""
    )
    floor = sa.case(
        (c.memory_dynamic_min >= c.memory_reservation, c.memory_dynamic_min), else_=c.memory_reservation
    )
    units = (c.memory_static_max + (unit - 1)) // unit  # memory sizes are positive (model.md §1.3)
    protected = c.ha_restart_priority == "restart"

    # the keys and terms per VM in a subquery, grouped outside: one GROUP BY that PostgreSQL
    # accepts too (it does not match parameterized expressions repeated in GROUP BY)
    per_vm = (
        sa.select(
            resident_on.label("resident_on"),
            scheduled_on.label("scheduled_on"),
            protected.label("protected"),
            c.vcpus.label("vcpus"),
            c.memory_static_max.label("static_max"),
            c.memory_dynamic_max.label("dynamic_max"),
            floor.label("floor"),
            units.label("units"),
        )
        .where(c.pool == pool_uuid, sa.not_(c.is_a_template), sa.not_(c.is_a_snapshot))
        .where(sa.or_(sa.and_(holding, c.resident_on != ""), sched != ""))
        .subquery()
    )
    v = per_vm.c

    def prot(x):
        return sa.func.sum(sa.case((v.protected, x), else_=0))

    q = sa.select(
        v.resident_on,
        v.scheduled_on,
        sa.func.count(),
        sa.func.sum(v.vcpus),
        sa.func.sum(v.static_max),
        sa.func.sum(v.dynamic_max),
        sa.func.sum(v.floor),
        sa.func.sum(v.units),
        prot(1),
        prot(v.vcpus),
        prot(v.static_max),
        prot(v.units),
    ).group_by(v.resident_on, v.scheduled_on)
    return [(r[0] or None, r[1] or None, *(int(x or 0) for x in r[2:])) for r in txn.conn.execute(q)]


def vif_networks(txn, pool_uuid: str) -> set[str]:
    """The networks the VIFs of the pool's VMs that may run are on."""
    txn.flush("vm")
    txn.flush("vif")
    vm, vif = schema.TABLES["vm"], schema.TABLES["vif"].c
    owner = (
        sa.select(vm.c.uuid)
        .where(vm.c.uuid == vif.vm, vm.c.pool == pool_uuid)
        .where(sa.not_(vm.c.is_a_template), sa.not_(vm.c.is_a_snapshot))
    )
    # driven by the VIFs (through their network index), each checked against its VM: a join
    # driven by the pool's VMs would visit every VM of the pool
    q = sa.select(vif.network).distinct().where(vif.network != "", owner.exists())
    return {r[0] for r in txn.conn.execute(q)}
