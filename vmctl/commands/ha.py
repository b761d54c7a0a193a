"""High availability (engine.md §3): pool-ha-enable/-disable, the compute commands, the HA
rules of ha-restart-priority and the pool's HA fields, and host failure and recovery (host-fail,
host-declare-dead, host-recover). Admission control is the service's (vmctl/admission.py).

The planning itself is the engine's (:mod:`vmctl.engine.ha`); these commands build the pool
snapshot with :mod:`vmctl.engine_adapter`, ask, and apply the answer in the same transaction.
"""

from __future__ import annotations

from vmctl.admission import admit
from vmctl.commands.table import Arg, Ctx, Data, command
from vmctl.engine_adapter import pool_state
from vmctl.errors import VmctlError
from vmctl.fields import param_hook
from vmctl.pools import only_pool
from vmctl.vms import boot, leave

_POOL = Arg(
    "pool", "ref:pool", help="the pool (may be omitted when the inventory holds one pool)", complete="pool"
)


# --- field rules (engine.md §3.1, §3.4) --------------------------------------------------------------------
@param_hook("vm")
def _ha_priority_rules(ctx: Ctx, vm: dict, changes: dict) -> None:
    """Setting restart on a running VM under HA is admitted like a start (xapi_vm
    .set_ha_restart_priority: assert_new_vm_preserves_ha_plan); a VM that could not restart
    elsewhere (a local disk) then has no failover plan. Nothing else is checked: with HA off, or
    on a halted VM, any priority may be set (engine.md §3.1, §3.4)."""
    if changes.get("ha-restart-priority") == "restart" and vm["ha-restart-priority"] != "restart":
        if vm["power-state"] in ("running", "paused") and not vm["is-a-template"]:
            admit(ctx.txn, vm["pool"], priorities={vm["uuid"]: "restart"})


@param_hook("pool")
def _ha_pool_rules(ctx: Ctx, pool: dict, changes: dict) -> None:
    """ha-host-failures-to-tolerate ≥ 0 and, raised under HA, admitted; ha-plan-exact-limit ≥ 1."""
    if "ha-host-failures-to-tolerate" in changes:
        n = changes["ha-host-failures-to-tolerate"]
        if n < 0:
            raise VmctlError("INVALID_VALUE", params=[("name", "ha-host-failures-to-tolerate"), ("value", n)])
        if n > pool["ha-host-failures-to-tolerate"]:
            admit(ctx.txn, pool["uuid"], target=n)
    if "ha-plan-exact-limit" in changes and changes["ha-plan-exact-limit"] < 1:
        raise VmctlError(
            "INVALID_VALUE",
            params=[("name", "ha-plan-exact-limit"), ("value", changes["ha-plan-exact-limit"])],
        )


# --- enable / disable ----------------------------------------------------------------------------------------
#: SR types whose backend can hold the HA statefile: the SM drivers advertising
#: VDI_GENERATE_CONFIG (xapi-project/sm: EXTSR, FileSR, NFSSR, LVHDoISCSISR; not the local LVHDSR).
STATEFILE_SR_TYPES = ("ext", "file", "nfs", "iscsi")
#: The room a statefile and the redo log take on an SR that has neither yet: 4 MiB + 3,804 MiB
#: (Xha_statefile.minimum_sr_size, from minimum_statefile_size and Redo_log.minimum_vdi_size).
STATEFILE_SR_SPACE = (4 + 3804) * 1024**2


def statefile_error(txn, sr: dict, pool_uuid: str) -> VmctlError | None:
    """Why an SR cannot hold the pool's HA statefile (Xha_statefile.check_sr_can_host_statefile, in
    its order), or None: a PBD on every host, each attached (SR_HAS_NO_PBDS); a backend that can
    (SR_OPERATION_NOT_SUPPORTED); room for the statefile and redo log
    (SR_SOURCE_SPACE_INSUFFICIENT)."""
    from vmctl import storage

    ref = [("sr", txn.ref("sr", sr))]
    pbds = txn.select("pbd", sr=sr["uuid"])
    hosts = {h["uuid"] for h in txn.select("host", pool=pool_uuid)}
    if not hosts <= {p["host"] for p in pbds} or not all(p["currently-attached"] for p in pbds):
        return VmctlError("SR_HAS_NO_PBDS", "The SR is not attached to every host of the pool", ref)
    if sr["type"] not in STATEFILE_SR_TYPES or sr["content-type"] != "user":
        return VmctlError(
            "SR_OPERATION_NOT_SUPPORTED", f"An SR of type {sr['type']} cannot hold the HA statefile", ref
        )
    if sr["physical-size"] - storage.sr_utilisation(txn, sr["uuid"]) < STATEFILE_SR_SPACE:
        return VmctlError(
            "SR_SOURCE_SPACE_INSUFFICIENT",
            "The SR needs 3,808 MiB free for the HA statefile and redo log",
            ref,
        )
    return None


def statefile_sr(txn, pool: dict, given: list[str] | None) -> dict:
    """The SR for the statefile (Xapi_ha.enable): the first of heartbeat-sr-uuids=, which must be
    able to hold it; else the first SR of the pool that can (by name-label, then uuid); none:
    CANNOT_CREATE_STATE_FILE."""
    if given:
        # xe resolves every uuid given; XAPI places the statefile on the first (xHA handles one)
        named = [txn.resolve_one("sr", text) for text in given]
        for sr in named:
            if sr["pool"] != pool["uuid"]:
                raise VmctlError(
                    "NOT_IN_SAME_POOL",
                    params=[("object", txn.ref("sr", sr)), ("pool", txn.ref("pool", pool))],
                )
        err = statefile_error(txn, named[0], pool["uuid"])
        if err is not None:
            raise err
        return named[0]
    srs = sorted(txn.select("sr", pool=pool["uuid"]), key=lambda r: (r["name-label"].encode(), r["uuid"]))
    for sr in srs:
        if statefile_error(txn, sr, pool["uuid"]) is None:
            return sr
    raise VmctlError(
        "CANNOT_CREATE_STATE_FILE",
        "No SR can hold the HA statefile: HA needs an SR of type nfs, iscsi, ext or file attached to "
        "every host of the pool with 3,808 MiB free",
        [],
    )


@command(
    "pool-ha-enable",
    "Enable HA on a pool: every host live and an SR every host reaches for the statefile; a pool "
    "without a failover plan is marked overcommitted",
    family="ha",
    args=(
        _POOL,
        Arg("ha-host-failures-to-tolerate", "int", help="set the target number of host failures"),
        Arg(
            "heartbeat-sr-uuids",
            "list",
            help="the SR for the statefile (the first of the list; default: the first SR that can hold it)",
            complete="sr",
        ),
        Arg("ha-config", "map", help="xe's HA daemon settings (timeouts): accepted, not modelled"),
    ),
)
def pool_ha_enable(ctx: Ctx):
    """XAPI's Pool.enable_ha (xapi_pool.enable_ha, xapi_ha.enable), in its order: not during a
    rolling upgrade (NOT_SUPPORTED_DURING_UPGRADE), not enabled already (HA_IS_ENABLED), every
    host live (HOST_OFFLINE), a statefile SR (CANNOT_CREATE_STATE_FILE). A one-host pool may
    enable HA, and nothing is refused for want of a failover plan: the pool's HA status is then
    recomputed (ha-overcommitted, ha-plan-exists-for), as XAPI's update_pool_status does."""
    from vmctl.vms import not_during_upgrade, rolling_upgrade

    txn = ctx.txn
    pool = only_pool(txn, ctx.a.get("pool"))
    target = ctx.a.get("ha-host-failures-to-tolerate", pool["ha-host-failures-to-tolerate"])
    if target < 0:
        raise VmctlError(
            "INVALID_VALUE", params=[("name", "ha-host-failures-to-tolerate"), ("value", target)]
        )
    if rolling_upgrade(txn, pool["uuid"]):
        raise not_during_upgrade("Enabling HA")
    if pool["ha-enabled"]:
        raise VmctlError(
            "HA_IS_ENABLED", "HA is already enabled on this pool", [("pool", txn.ref("pool", pool))]
        )
    hosts = sorted(txn.select("host", pool=pool["uuid"]), key=lambda h: (h["name-label"].encode(), h["uuid"]))
    for h in hosts:
        if not h["live"]:
            raise VmctlError("HOST_OFFLINE", params=[("host", txn.ref("host", h))])
    statefile_sr(txn, pool, ctx.a.get("heartbeat-sr-uuids"))
    txn.update(
        "pool",
        pool["uuid"],
        {
            "ha-enabled": True,
            "ha-host-failures-to-tolerate": target,
            "ha-overcommitted": False,
            "ha-plan-exists-for": 0,
        },
    )
    return None


@command("pool-ha-disable", "Disable HA on a pool (always succeeds)", family="ha", args=(_POOL,))
def pool_ha_disable(ctx: Ctx):
    txn = ctx.txn
    pool = only_pool(txn, ctx.a.get("pool"))
    if pool["ha-enabled"] or pool["ha-overcommitted"]:
        txn.update("pool", pool["uuid"], {"ha-enabled": False, "ha-overcommitted": False})
    return None


# --- compute commands ----------------------------------------------------------------------------------------
def _max_result(res) -> Data:
    return Data(res.to_json(), "lines", [res.max])


@command(
    "pool-ha-compute-max-host-failures-to-tolerate",
    "Print the largest number of host failures the pool's protected VMs survive: every set of that "
    "many failed hosts leaves room to restart them",
    family="ha",
    rw=False,
    args=(_POOL,),
)
def pool_ha_compute_max(ctx: Ctx):
    from vmctl.engine import ha

    pool = only_pool(ctx.txn, ctx.a.get("pool"))
    return _max_result(ha.max_failures(pool_state(ctx.txn, pool["uuid"])))


@command(
    "pool-ha-compute-hypothetical-max-host-failures-to-tolerate",
    "The same as if the VMs had these restart priorities (vm-uuid= and restart-priority= pair by position)",
    family="ha",
    rw=False,
    args=(
        Arg("vm-uuid", "string", True, "a VM (repeatable)", repeat=True, complete="vm"),
        Arg(
            "restart-priority",
            "enum",
            True,
            "its hypothetical priority (repeatable)",
            values=("restart", "best-effort", "no-restart"),
            repeat=True,
        ),
    ),
)
def pool_ha_compute_hypothetical(ctx: Ctx):
    from vmctl.engine import ha

    txn = ctx.txn
    vms, prios = ctx.a["vm-uuid"], ctx.a["restart-priority"]
    if len(vms) != len(prios):
        missing = "restart-priority" if len(vms) > len(prios) else "vm-uuid"
        raise VmctlError(
            "MISSING_PARAMETER", "vm-uuid= and restart-priority= pair by position", [("name", missing)]
        )
    rows = [txn.resolve_one("vm", v) for v in vms]
    pools = {r["pool"] for r in rows}
    if len(pools) > 1:
        raise VmctlError(
            "NOT_IN_SAME_POOL",
            params=[("object", txn.ref("vm", rows[-1])), ("pool", txn.ref("pool", rows[0]["pool"]))],
        )
    ps = pool_state(txn, rows[0]["pool"])
    prio = {}
    for r, p in zip(rows, prios):
        if r["uuid"] in ps.vms:
            prio[r["uuid"]] = p
    # the planner reads priorities from the VM values: apply them on a scratch copy
    scratch = ps.copy()
    for u, p in sorted(prio.items()):
        scratch.update_vm(u, ha_restart_priority=p)
    return _max_result(ha.max_failures(scratch))


def _hosts_of_one_pool(txn, names: list[str], arg: str = "host") -> list[dict]:
    hosts: list[dict] = []
    for n in names:
        h = txn.resolve_one("host", n)
        if hosts and h["pool"] != hosts[0]["pool"]:
            raise VmctlError(
                "NOT_IN_SAME_POOL",
                params=[("object", txn.ref("host", h)), ("pool", txn.ref("pool", hosts[0]["pool"]))],
            )
        if h["uuid"] not in {x["uuid"] for x in hosts}:
            hosts.append(h)
    if not hosts:
        raise VmctlError("MISSING_PARAMETER", params=[("name", arg)])
    return hosts


@command(
    "pool-ha-compute-vm-failover-plan",
    "Show where the VMs of these hosts would restart if they failed together (scratch run of §3.5)",
    family="ha",
    rw=False,
    args=(Arg("host-uuids", "list", True, "the failing hosts, comma-separated", complete="host"),),
)
def pool_ha_compute_vm_failover_plan(ctx: Ctx):
    from vmctl.engine import failover

    txn = ctx.txn
    hosts = _hosts_of_one_pool(txn, ctx.a["host-uuids"], "host-uuids")
    plan = failover.failover_plan(pool_state(txn, hosts[0]["pool"]), [h["uuid"] for h in hosts])
    rows = [
        {
            "vm": r.vm,
            "name-label": r.name,
            "ha-restart-priority": r.priority,
            "target": r.host,
            "error": r.code if r.host is None else None,
        }
        for r in plan.rows
    ]
    return Data(rows, "ha-failover-plan")


# --- failure and recovery (engine.md §3.5) -------------------------------------------------------------------
def fail(ctx: Ctx, hosts: list[dict]) -> Data | None:
    """Hosts fail together: not live, their VMs halted, then (HA enabled) the restart procedure."""
    from vmctl.engine import failover

    txn = ctx.txn
    live = [h for h in hosts if h["live"]]
    pool = txn.get("pool", hosts[0]["pool"])
    plan = failover.fail_hosts(pool_state(txn, pool["uuid"]), [h["uuid"] for h in live])
    for h in live:
        txn.update("host", h["uuid"], {"live": False})
    for r in plan.rows:
        vm = txn.get("vm", r.vm)
        leave(txn, vm, "halted")
    for r in plan.rows:
        if r.host is not None:
            boot(txn, txn.get("vm", r.vm), r.host)  # a restart is a cold boot (engine.md §2.1 filter 4)
    rows = [
        {
            "vm": r.vm,
            "name-label": r.name,
            "priority": r.priority,
            "result": r.result,
            "host": r.host,
            "code": r.code,
        }
        for r in plan.rows
    ]
    if ctx.opts.get("dry_run") or ctx.opts.get("explain"):
        return Data(rows, "ha-restarts")
    return None


@command(
    "host-fail",
    "Simulate hosts failing together: they stop being live, their VMs halt, and with HA on the "
    "protected VMs restart on the survivors in priority order",
    family="ha",
    args=(Arg("host", "list", True, "the failing hosts, comma-separated", complete="host"),),
    flags=("--explain",),
)
def host_fail(ctx: Ctx):
    return fail(ctx, _hosts_of_one_pool(ctx.txn, ctx.a["host"]))


@command(
    "host-declare-dead",
    "Declare a host dead (as host-fail for one host)",
    family="ha",
    args=(Arg("uuid", "ref:host", True, "the host", complete="host"),),
    flags=("--explain",),
)
def host_declare_dead(ctx: Ctx):
    return fail(ctx, [ctx.txn.resolve_one("host", ctx.a["uuid"])])


@command(
    "host-recover",
    "Make a failed host live again (its former VMs do not move back)",
    family="ha",
    args=(Arg("host", "ref:host", True, "the host", complete="host"),),
)
def host_recover(ctx: Ctx):
    txn = ctx.txn
    h = txn.resolve_one("host", ctx.a["host"])
    if not h["live"]:
        txn.update("host", h["uuid"], {"live": True})
    return None
