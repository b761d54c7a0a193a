"""HA admission control and status (engine.md §3.1, §3.4), shared by every command that may
break the failover plan: `admit` refuses such a change, `check_agile` the agility rules, and
`refresh_ha_status` recomputes the pool's HA status before commit (vmctl/hooks.py)."""

from __future__ import annotations

from vmctl.errors import VmctlError


def _state(txn, pool_uuid: str):
    from vmctl.engine_adapter import pool_state

    return pool_state(txn, pool_uuid)


def refresh_ha_status(txn) -> None:
    """After committed changes while HA is enabled: recompute ha-overcommitted and
    ha-plan-exists-for (the target when the plan holds, else the largest smaller proven r)."""
    pools = txn.select("pool", ha_enabled=True)
    if not pools:
        return
    from vmctl.engine import ha

    check_touched_agility(txn, {p["uuid"] for p in pools})
    for p in pools:
        over, exists_for = ha.recompute_status(_state(txn, p["uuid"]))
        if p["ha-overcommitted"] != over or p["ha-plan-exists-for"] != exists_for:
            txn.update("pool", p["uuid"], {"ha-overcommitted": over, "ha-plan-exists-for": exists_for})


def check_touched_agility(txn, pools: set[str]) -> None:
    """While HA is enabled, a VBD or VIF change that leaves a protected VM non-agile is refused
    with the agility codes (engine.md §3.1), whichever command made it: the VMs whose VBDs or
    VIFs this transaction created, changed or destroyed are checked before commit."""
    vms: set[str] = set()
    for key, ch in txn.changes.items():
        cls, _, _uuid = key.partition(":")
        if cls in ("vbd", "vif") and "vm" in ch:
            vms.update(x for x in ch["vm"] if x)
        elif cls in ("vbd", "vif"):
            row = txn.get(cls, _uuid)
            if row is not None:
                vms.add(row["vm"])
    for u in sorted(vms):
        vm = txn.get("vm", u)
        if (
            vm is not None
            and vm["pool"] in pools
            and vm["ha-restart-priority"] == "restart"
            and vm["power-state"] in ("running", "paused")
            and not vm["is-a-template"]
        ):
            check_agile(txn, vm)


def admit(txn, pool_uuid: str, **change) -> None:
    """Refuse a change that would break the failover plan (HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN);
    a no-op unless HA is enabled and neither overcommit allowed nor already overcommitted."""
    from vmctl.engine import ha

    p = txn.get("pool", pool_uuid)
    if not p["ha-enabled"] or p["ha-allow-overcommit"] or p["ha-overcommitted"]:
        return
    err = ha.check_change(_state(txn, pool_uuid), **change)
    if err is not None:
        raise err


def check_agile(txn, vm: dict) -> None:
    """A protected VM must be able to restart anywhere: every VDI on a shared SR
    (HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED) and every VIF network available on every host of its
    pool (HA_CONSTRAINT_VIOLATION_NETWORK_NOT_SHARED)."""
    from vmctl import xenet

    vdis = [b["vdi"] for b in txn.select("vbd", vm=vm["uuid"]) if b["vdi"]]
    if vm["suspend-vdi"]:
        vdis.append(vm["suspend-vdi"])
    for d in sorted(set(vdis)):
        vdi = txn.get("vdi", d)
        sr = txn.get("sr", vdi["sr"]) if vdi else None
        if sr is not None and not sr["shared"]:
            raise VmctlError("HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED", params=[("sr", txn.ref("sr", sr))])
    hosts = sorted(txn.select("host", pool=vm["pool"]), key=lambda h: h["uuid"])
    for n in sorted({f["network"] for f in txn.select("vif", vm=vm["uuid"])}):
        net = txn.get("network", n)
        if net is None:
            continue
        for h in hosts:
            if not xenet.network_available(txn, net, h["uuid"]):
                raise VmctlError(
                    "HA_CONSTRAINT_VIOLATION_NETWORK_NOT_SHARED",
                    params=[("network", txn.ref("network", net))],
                )
