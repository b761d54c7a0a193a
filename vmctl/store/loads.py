"""What a placement reads of a pool's VMs without reading them: per-host sums and the networks
their VIFs use, computed by the database (vmctl/engine_adapter.py builds the partial snapshot of
engine/snapshot.py from them).

The VMs counted are those of the pool that may run (neither templates nor snapshots); the hosts
they count on are the engine's rule (``VMState.load_hosts``), applied per group of VMs by the
adapter. The queries see the transaction's own writes (its buffered rows are flushed first).
"""

from __future__ import annotations

import sqlalchemy as sa

from vmctl.store import schema


def vm_load_sums(txn, pool_uuid: str, unit: int) -> list[tuple]:
    """The pool's VMs that may run, summed per (resident-on, scheduled-to-be-resident-on,
    power-state): which hosts such VMs count on is the engine's rule (engine_adapter applies it
    per row). Each row: those three, then the count, Σ vcpus, Σ memory-static-max,
    Σ memory-dynamic-max, Σ max(memory-dynamic-min, memory-reservation) (the hard need under
    `dynamic`), Σ ⌈memory-static-max / unit⌉ (the per-VM part of the overhead,
    capacity.overhead_of), and the count, Σ vcpus, Σ memory-static-max and Σ units again over
    the VMs whose ha-restart-priority is restart."""
    txn.flush("vm")
    c = schema.TABLES["vm"].c
    floor = sa.case(
        (c.memory_dynamic_min >= c.memory_reservation, c.memory_dynamic_min), else_=c.memory_reservation
    )
    units = (c.memory_static_max + (unit - 1)) // unit  # memory sizes are positive (model.md §1.3)
    protected = c.ha_restart_priority == "restart"

    def prot(x):
        return sa.func.sum(sa.case((protected, x), else_=0))

    keys = (c.resident_on, c.scheduled_to_be_resident_on, c.power_state)
    q = (
        sa.select(
            *keys,
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
        .where(c.pool == pool_uuid, sa.not_(c.is_a_template), sa.not_(c.is_a_snapshot))
        .group_by(*keys)
    )
    return [(*r[:3], *(int(x or 0) for x in r[3:])) for r in txn.conn.execute(q)]


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
