"""The VM power-state machine (model.md §2, §3.3) and engine placement (engine.md §2):
vm-start, vm-shutdown, vm-reboot, vm-suspend, vm-resume, vm-pause, vm-unpause,
vm-reset-powerstate, vm-uninstall and vm-place.

Every transition into running or paused goes through :func:`vmctl.vms.boot` (resident-on, domid, CPU
levelling, then the ``hooks.became_resident`` hooks that attach VBDs and plug VIFs); every
transition out of a host goes through :func:`vmctl.vms.leave` (``hooks.leaving_host`` first). Migration,
evacuation and HA restarts reuse both.

Host choice: an explicit ``on=`` runs the engine's filters on that host (first failing filter's
code); otherwise the engine places. A run of consecutive ``vm-start``s without ``on=`` in one chain
or batch is *deferred* and placed in one pass (engine.md §2.3): vm-start returns a
``Deferred`` placeholder of a run the runner settles (``Ctx.deferred``, vmctl/runner.py).
"""

from __future__ import annotations

from vmctl import domains
from vmctl.commands.table import Arg, Ctx, Data, Deferred, command
from vmctl.errors import VmctlError
from vmctl.model import POLICIES, POLICY_HELP
from vmctl.pools import same_pool
from vmctl.vms import (
    bad_power_state,
    boot,
    check_vm_operation,
    destroy_vdi,
    destroy_vm_records,
    discard_suspend_image,
    hard_halt,
    leave,
    select_vms,
)

_VM = Arg("vm", "ref:vm", help="the VM: uuid or name-label (or select with field filters)", complete="vm")
_ON = Arg("on", "ref:host", help="start on this host instead of letting the engine choose", complete="host")


# --- boot checks that are not engine filters ---------------------------------------------------------------
def check_holding(txn, vm: dict, operation: str) -> None:
    """model.md §3.5 holding rule (the storage layer's): VDI_IN_USE [vdi, operation]."""
    from vmctl import storage

    storage.check_holding(txn, vm, operation)


# --- plans and explain reports -----------------------------------------------------------------------------
def explain_data(report, limit: int | None = None) -> Data:
    data = report.to_json()
    if limit is not None:
        keep = {r.host_uuid for r in report.limited(limit)[0]}
        data["hosts"] = [h for h in data["hosts"] if h["host-uuid"] in keep]
    return Data(data, "placement-report", (report, limit))


def plan_result(plan: list[tuple[dict, str]], explains: list) -> Data | None:
    """What a deciding command prints: nothing when committed without --explain; its plan (the
    chosen host, or ``vm host`` lines for several VMs) in a dry run; the report with --explain."""
    if explains:
        if len(explains) == 1:
            return explain_data(explains[0])
        return Data(
            [explain_data(r).data for r in explains], "placement-reports", [(r, None) for r in explains]
        )
    if len(plan) == 1:
        vm, host = plan[0]
        return Data({"vm": vm["uuid"], "host": host}, "lines", [host])
    return Data(
        [{"vm": vm["uuid"], "host": host} for vm, host in plan],
        "lines",
        [f"{vm['uuid']} {host}" for vm, host in plan],
    )


# --- engine calls --------------------------------------------------------------------------------------------
def _scheduler(txn, pool_uuid: str, vm_uuids: list[str], policy: str | None = None, seed: int | None = None):
    """A scheduler over the snapshot placing these VMs of the pool reads (engine_adapter)."""
    from vmctl.engine.placement import Scheduler
    from vmctl.engine_adapter import placement_state

    return Scheduler(placement_state(txn, pool_uuid, vm_uuids), policy, seed)


def place_one(
    txn,
    vm: dict,
    mode: str,
    force: bool = False,
    explain: bool = False,
    policy: str | None = None,
    seed: int | None = None,
):
    """(host uuid, explain report or None) for one VM: engine.md §2.2, NO_HOSTS_AVAILABLE."""
    sched = _scheduler(txn, vm["pool"], [vm["uuid"]], policy, seed)
    if explain:
        from vmctl.engine.placement import explain as explain_fn

        rep = explain_fn(sched.pool, vm["uuid"], policy=policy, seed=seed, mode=mode, force=force)
        if rep.chosen is None:
            # the error carries the per-code summary; the report would only repeat it
            raise sched.no_hosts_error(sched.request(sched.pool.vms[vm["uuid"]], mode, force))
        return rep.chosen, rep
    p = sched.place(vm["uuid"], mode=mode, force=force)
    return p.host, None


def place_many(txn, vms: list[dict], force: bool = False) -> dict[str, str]:
    """Batch placement (engine.md §2.3) of halted VMs, per pool; vm uuid → host uuid. A VM left
    over fails the whole command with its NO_HOSTS_AVAILABLE summary; HA admission runs once on
    the final state (filter 11)."""
    from vmctl.engine.placement import START, place_batch

    out: dict[str, str] = {}
    by_pool: dict[str, list[dict]] = {}
    for v in vms:
        by_pool.setdefault(v["pool"], []).append(v)
    for pool_uuid in sorted(by_pool):
        members = by_pool[pool_uuid]
        sched = _scheduler(txn, pool_uuid, [v["uuid"] for v in members])
        if len(members) == 1:
            out[members[0]["uuid"]] = sched.place(members[0]["uuid"], mode=START, force=force).host
            continue
        res = place_batch(sched, [v["uuid"] for v in members], mode=START, force=force)
        if res.failures:
            first = next(v for v in members if v["uuid"] in res.failures)
            req = sched.request(sched.pool.vms[first["uuid"]], START, force)
            raise sched.no_hosts_error(req)
        if res.ha_error is not None:
            raise res.ha_error
        out.update(res.hosts)
    return out


def check_on(txn, vms: list[dict], host: dict, mode: str, force: bool) -> None:
    """Explicit target for every VM in turn, each seeing the earlier ones placed."""
    sched = _scheduler(txn, host["pool"], [vm["uuid"] for vm in vms])
    for vm in vms:
        sched.check_target(vm["uuid"], host["uuid"], mode=mode, force=force)
        sched.commit(vm["uuid"], host["uuid"])


# --- the deferred run of vm-starts (engine.md §2.3, cli.md §2) -----------------------------------------------
class _PendingStarts:
    """vm-starts without on= waiting to be placed together: a run the runner keeps open while the
    next commands of the chain join it (`accepts`), then settles in one batch placement."""

    def __init__(self, txn, dry_run: bool) -> None:
        self.txn = txn
        self.dry_run = dry_run
        self.items: list[tuple[list[dict], bool, bool]] = []  # (vms, paused, force) per vm-start

    def pending(self) -> set[str]:
        return {v["uuid"] for vms, _, _ in self.items for v in vms}

    def add(self, vms: list[dict], paused: bool, force: bool) -> Deferred:
        self.items.append((vms, paused, force))
        return Deferred(self, len(self.items) - 1)

    def accepts(self, b) -> bool:
        """A bound command that joins the run: a vm-start the engine places, alone."""
        return (
            b.cmd.name == "vm-start"
            and "on" not in b.raw
            and "explain" not in b.flags
            and "multiple" not in b.flags
        )

    def settle(self) -> list:
        txn = self.txn
        vms = [v for vs, _, _ in self.items for v in vs]
        force = any(f for *_, f in self.items)
        hosts = place_many(txn, [txn.get("vm", v["uuid"]) for v in vms], force)
        out = []
        for vs, paused, _ in self.items:
            for v in vs:
                boot(txn, txn.get("vm", v["uuid"]), hosts[v["uuid"]], paused)
            out.append(plan_result([(v, hosts[v["uuid"]]) for v in vs], []) if self.dry_run else None)
        txn.invalidate_views()
        return out


# --- commands ------------------------------------------------------------------------------------------------
@command(
    "vm-start",
    "Start halted VMs; without on= the engine chooses the host (its filters, then the pool's "
    "placement-policy: balanced, the default, spreads the load, pack consolidates; see vm-place)",
    family="vm",
    args=(_VM, _ON),
    flags=("--force", "--paused", "--multiple", "--explain"),
    selector="vm",
)
def vm_start(ctx: Ctx):
    from vmctl.engine.placement import START

    txn = ctx.txn
    vms = select_vms(ctx)
    host = txn.resolve_one("host", ctx.a["on"]) if "on" in ctx.a else None  # resolution precedes state checks
    waiting = ctx.deferred if isinstance(ctx.deferred, _PendingStarts) else None
    pend = waiting.pending() if waiting is not None else set()
    paused = ctx.flag("paused")
    op = "start_on" if host is not None else "start"  # XAPI's VM.start_on / VM.start
    for vm in vms:
        check_vm_operation(txn, vm, op)
        if vm["uuid"] in pend:  # started earlier in this run, not yet placed
            raise bad_power_state(txn, {**vm, "power-state": "running"}, ("halted",))
    for vm in vms:
        check_holding(txn, vm, "start")
    if host is not None:
        for vm in vms:
            same_pool(txn, "host", host, vm["pool"])
        check_on(txn, vms, host, START, ctx.force)
        for vm in vms:
            boot(txn, txn.get("vm", vm["uuid"]), host["uuid"], paused)
        return None
    explain = bool(ctx.opts.get("explain"))
    if len(vms) == 1 and not explain and ctx.may_defer:
        # join (or open) the run of consecutive vm-starts placed in one pass at its end
        if waiting is None:
            waiting = _PendingStarts(txn, bool(ctx.opts.get("dry_run")))
        return waiting.add(vms, paused, ctx.force)
    if explain:
        plan, reports = [], []
        for vm in vms:
            host, rep = place_one(txn, txn.get("vm", vm["uuid"]), START, ctx.force, explain=True)
            boot(txn, txn.get("vm", vm["uuid"]), host, paused)
            plan.append((vm, host))
            reports.append(rep)
        return plan_result(plan, reports)
    hosts = place_many(txn, vms, ctx.force)
    for vm in vms:
        boot(txn, txn.get("vm", vm["uuid"]), hosts[vm["uuid"]], paused)
    return plan_result([(v, hosts[v["uuid"]]) for v in vms], []) if ctx.opts.get("dry_run") else None


@command(
    "vm-resume",
    "Resume suspended VMs; without on= the engine chooses the host",
    family="vm",
    args=(_VM, Arg("on", "ref:host", help="resume on this host", complete="host")),
    flags=("--force", "--paused", "--multiple", "--explain"),
    selector="vm",
)
def vm_resume(ctx: Ctx):
    from vmctl.engine.placement import RESUME

    txn = ctx.txn
    vms = select_vms(ctx)
    host = txn.resolve_one("host", ctx.a["on"]) if "on" in ctx.a else None  # resolution precedes state checks
    paused = ctx.flag("paused")
    for vm in vms:
        check_vm_operation(txn, vm, "resume_on" if host is not None else "resume")
    for vm in vms:
        check_holding(txn, vm, "resume")
    plan, reports = [], []
    if host is not None:
        for vm in vms:
            same_pool(txn, "host", host, vm["pool"])
        check_on(txn, vms, host, RESUME, ctx.force)
        targets = [(vm, host["uuid"]) for vm in vms]
    else:
        targets = []
        explain = bool(ctx.opts.get("explain"))
        for vm in vms:
            # one at a time: each decision sees the previous resumes (engine.md §1 loads)
            host, rep = place_one(txn, txn.get("vm", vm["uuid"]), RESUME, ctx.force, explain=explain)
            _resume_on(txn, txn.get("vm", vm["uuid"]), host, paused)
            plan.append((vm, host))
            if rep is not None:
                reports.append(rep)
        if reports or ctx.opts.get("dry_run"):
            return plan_result(plan, reports)
        return None
    for vm, h in targets:
        _resume_on(txn, txn.get("vm", vm["uuid"]), h, paused)
    return None


def _resume_on(txn, vm: dict, host: str, paused: bool) -> None:
    new = boot(txn, vm, host, paused, record_cpu=False)
    discard_suspend_image(txn, new)


@command(
    "vm-shutdown",
    "Shut VMs down (clean from running; --force: hard, also from paused or suspended)",
    family="vm",
    args=(
        _VM,
        Arg(
            "timeout",
            "duration",
            help=f"libvirt pools: how long a clean shutdown waits for the guest [{domains.SHUTDOWN_TIMEOUT:g}s]",
        ),
    ),
    flags=("--force", "--multiple"),
    selector="vm",
)
def vm_shutdown(ctx: Ctx):
    txn = ctx.txn
    vms = select_vms(ctx)
    force = ctx.force
    timeout = ctx.a.get("timeout", domains.SHUTDOWN_TIMEOUT)
    if timeout <= 0:
        raise VmctlError("INVALID_VALUE", params=[("name", "timeout"), ("value", ctx.raw.get("timeout"))])
    for vm in vms:
        check_vm_operation(txn, vm, "hard_shutdown" if force else "clean_shutdown")
    for vm in vms:
        vm = txn.get("vm", vm["uuid"])
        domains.halt(txn, vm, clean=not force, timeout=timeout)
        hard_halt(txn, vm)
    return None


@command(
    "vm-reboot",
    "Reboot VMs on the same host with the same domid (--force: hard, also from paused)",
    family="vm",
    args=(_VM,),
    flags=("--force", "--multiple"),
    selector="vm",
)
def vm_reboot(ctx: Ctx):
    from vmctl.engine_adapter import levelled_flags

    txn = ctx.txn
    vms = select_vms(ctx)
    force = ctx.force
    for vm in vms:
        check_vm_operation(txn, vm, "hard_reboot" if force else "clean_reboot")
    for vm in vms:
        domains.reboot(txn, vm, force)
        # a reboot is a new boot on the same host: CPU levelling is recorded again (engine.md §1)
        vendor, flags = levelled_flags(txn, vm, txn.get("host", vm["resident-on"]))
        txn.update(
            "vm",
            vm["uuid"],
            {"power-state": "running", "last-boot-cpu-vendor": vendor, "last-boot-cpu-flags": flags},
        )
    return None


def suspend_sr(txn, vm: dict) -> dict:
    """suspend-sr, else the pool's default-sr (VM_NO_SUSPEND_SR)."""
    u = vm["suspend-sr"] or txn.get("pool", vm["pool"])["default-sr"]
    sr = txn.get("sr", u) if u else None
    if sr is None:
        raise VmctlError(
            "VM_NO_SUSPEND_SR",
            "The VM has no suspend-sr and its pool no default-sr",
            [("vm", txn.ref("vm", vm))],
        )
    return sr


def create_suspend_vdi(txn, vm: dict, quiet: bool = False) -> str:
    """The suspend image: type suspend, thick-lazy, memory-static-max (rounded up to 2 MiB like
    every VDI), on the suspend SR, through the storage layer's vdi-create rules (SR attached,
    SR_FULL when it does not fit the free space)."""
    from vmctl import storage

    sr = suspend_sr(txn, vm)
    return storage.create_vdi(
        txn,
        sr,
        vm["memory-static-max"],
        name_label=f"Suspend image for {vm['name-label']}",
        provisioning="thick-lazy",
        type="suspend",
        quiet=quiet,
    )


@command(
    "vm-suspend",
    "Suspend running VMs to a suspend image on their suspend-sr (else the pool default-sr)",
    family="vm",
    args=(_VM,),
    flags=("--multiple",),
    selector="vm",
)
def vm_suspend(ctx: Ctx):
    txn = ctx.txn
    vms = select_vms(ctx)
    for vm in vms:
        check_vm_operation(txn, vm, "suspend")
    for vm in vms:
        vm = txn.get("vm", vm["uuid"])
        vdi = create_suspend_vdi(txn, vm, bool(ctx.opts.get("quiet")))
        domains.save(txn, vm, vdi)
        vm = leave(txn, vm, "suspended")
        txn.update("vm", vm["uuid"], {"suspend-vdi": vdi})
    return None


@command(
    "vm-pause",
    "Pause running VMs (their memory stays committed)",
    family="vm",
    args=(_VM,),
    flags=("--multiple",),
    selector="vm",
)
def vm_pause(ctx: Ctx):
    return _flip_power(ctx, "pause", "paused")


@command("vm-unpause", "Unpause paused VMs", family="vm", args=(_VM,), flags=("--multiple",), selector="vm")
def vm_unpause(ctx: Ctx):
    return _flip_power(ctx, "unpause", "running")


def _flip_power(ctx: Ctx, operation: str, after: str) -> None:
    """Pause and unpause: every selected VM is checked first, then all change (nothing else
    moves: the memory stays committed on the same host)."""
    vms = select_vms(ctx)
    for vm in vms:
        check_vm_operation(ctx.txn, vm, operation)
    for vm in vms:
        domains.set_paused(ctx.txn, vm, after == "paused")
        ctx.txn.update("vm", vm["uuid"], {"power-state": after})
    return None


@command(
    "vm-reset-powerstate",
    "Force the recorded power state of VMs to halted (needs --force)",
    family="vm",
    args=(_VM,),
    flags=("--force", "--multiple"),
    selector="vm",
)
def vm_reset_powerstate(ctx: Ctx):
    txn = ctx.txn
    vms = select_vms(ctx)
    for vm in vms:
        # XAPI's VM.power_state_reset is valid in every state (a halted VM stays as it is)
        check_vm_operation(txn, vm, "power_state_reset")
    if not ctx.force:
        # xe refuses this without --force: it only repairs the record, the domain is not touched
        raise VmctlError("OPERATION_NOT_ALLOWED", params=[("reason", "vm-reset-powerstate needs --force")])
    for vm in vms:
        hard_halt(txn, txn.get("vm", vm["uuid"]))
    return None


def owner_vdis(txn, vm: dict) -> list[str]:
    return [
        b["vdi"]
        for b in txn.select("vbd", vm=vm["uuid"])
        if b["vdi"] and str(b["other-config"].get("owner", "")).lower() == "true"
    ]


@command(
    "vm-uninstall",
    "Destroy VMs with their snapshots and owned disks (not halted: needs --force)",
    family="vm",
    args=(_VM,),
    flags=("--force", "--multiple"),
    selector="vm",
)
def vm_uninstall(ctx: Ctx):
    """A VM that is not halted needs --force (model.md §3.3), and is then hard-shut-down; it and
    its snapshots are checked as XAPI's VM.hard_shutdown and VM.destroy, in that order, and
    destroyed with the owner disks no VM outside them references."""
    txn = ctx.txn
    vms = select_vms(ctx)
    for vm in vms:
        if vm["power-state"] != "halted" and not ctx.force:
            raise bad_power_state(txn, vm, ("halted",))
    doomed: list[dict] = []
    for vm in vms:
        doomed.append(vm)
        if not vm["is-a-snapshot"]:
            doomed += sorted(
                txn.select("vm", snapshot_of=vm["uuid"], is_a_snapshot=True), key=lambda r: r["uuid"]
            )
    for v in doomed:
        if v["power-state"] != "halted":
            check_vm_operation(txn, v, "hard_shutdown")
        check_vm_operation(txn, {**v, "power-state": "halted"}, "destroy")
    gone = {v["uuid"] for v in doomed}
    vdis: list[str] = []
    for v in doomed:
        for d in owner_vdis(txn, v):
            if d not in vdis and all(b["vm"] in gone for b in txn.select("vbd", vdi=d)):
                vdis.append(d)
    ctx.confirm([f"vm {v['uuid']} ({v['name-label']})" for v in doomed] + [f"vdi {d}" for d in vdis])
    for v in doomed:
        row = txn.get("vm", v["uuid"])
        if row is None:
            continue
        domains.halt(txn, row, clean=False)
        row = hard_halt(txn, row)
        destroy_vm_records(txn, row)
    for d in vdis:
        destroy_vdi(txn, d)
    return None


@command(
    "vm-place",
    "Print the host vm-start/vm-resume (halted, suspended) or vm-migrate (running) would choose",
    family="vm",
    rw=False,
    args=(
        Arg("vm", "ref:vm", True, "the VM", complete="vm"),
        Arg("policy", "enum", values=POLICIES, help=f"override the pool's placement-policy: {POLICY_HELP}"),
        Arg("seed", "int", help="override the pool's placement-seed (tie keys)"),
        Arg("limit", "int", help="--explain: keep this many rows, count the rest"),
    ),
    flags=("--explain",),
)
def vm_place(ctx: Ctx):
    from vmctl.engine.placement import mode_for
    from vmctl.engine_adapter import vm_value

    txn = ctx.txn
    vm = txn.resolve_one("vm", ctx.a["vm"])
    check_vm_operation(txn, vm, "place", ("halted", "running", "paused", "suspended"))
    limit = ctx.a.get("limit")
    if limit is not None and limit < 0:
        raise VmctlError("INVALID_VALUE", params=[("name", "limit"), ("value", limit)])
    mode = mode_for(vm_value(vm))
    explain = bool(ctx.opts.get("explain"))
    if explain:
        from vmctl.engine.placement import explain as explain_fn

        sched = _scheduler(txn, vm["pool"], [vm["uuid"]])
        rep = explain_fn(
            sched.pool, vm["uuid"], policy=ctx.a.get("policy"), seed=ctx.a.get("seed"), mode=mode
        )
        return explain_data(rep, limit)
    host, _ = place_one(txn, vm, mode, policy=ctx.a.get("policy"), seed=ctx.a.get("seed"))
    return Data({"vm": vm["uuid"], "host": host}, "lines", [host])
