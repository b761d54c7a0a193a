"""Every transaction hook, in one place: what runs besides the commands themselves, and when.

Power transitions (model.md §2). Entering running or paused attaches every VBD and plugs every
VIF; leaving for halted or suspended detaches them. The compute code calls `became_resident` /
`leaving_host` in the same transaction; the storage and network layers follow without the
compute code knowing them.

Before commit (the runner calls `before_commit` after the last command of a transaction):
1. HA status after every change while HA is enabled (engine.md §3.4);
2. each switch's commit-time checks (ovs-vsctl's, network.md §2.3), except on a dry run;
3. the inventory invariants on what the transaction touched (model.md §4): a command whose
   result breaks one fails instead of committing it; I13 on the switches that read-write
   ovs-style commands changed (only those hosts);
4. on real pools, the queued host actions (vmctl/drivers), the switch changes of each host
   first (vmctl/host_switches.py).
"""

from __future__ import annotations


def became_resident(txn, vm: dict, host_uuid: str) -> None:
    """After the VM is recorded running or paused on host_uuid."""
    from vmctl import storage, xenet

    xenet.plug_vifs(txn, vm, host_uuid)
    storage.attach_vbds(txn, vm, host_uuid)


def leaving_host(txn, vm: dict, host_uuid: str) -> None:
    """Before the VM leaves host_uuid (halt, suspend, migration away, host failure)."""
    from vmctl import storage, xenet

    xenet.unplug_vifs(txn, vm, host_uuid)
    storage.detach_vbds(txn, vm, host_uuid)


def before_commit(txn, dry_run: bool, command: str = "") -> None:
    if txn.write and txn.dirty:
        from vmctl.admission import refresh_ha_status

        refresh_ha_status(txn)
    if not dry_run:
        for s in txn.switches.values():
            if s is not None:
                s.commit_check()
    if txn.write and txn.dirty:
        from vmctl.invariants import check_before_commit, check_switches_before_commit

        check_before_commit(txn)
        check_switches_before_commit(txn)
    # last: act on the hosts of real pools (a dry run drops the queue); nothing may fail after it
    from vmctl import drivers, host_switches

    host_switches.queue_changes(txn, dry_run)  # the switch rows of real hosts reach their OVSDB
    drivers.perform(txn, dry_run, command)
