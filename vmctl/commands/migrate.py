"""Live migration and storage motion: vm-migrate (engine.md §4.1–§4.3, model.md §2).

The checks run in engine.md §4.1's order, after the argument and resolution checks of model.md §0:

1. power state (running/paused live; halted/suspended storage only, with a VDI map and no
   ``host=``), ``platform:nomigrate`` (``VM_IS_IMMOBILE`` unless ``--force``);
2. destination: ``host=`` runs the placement filters 1–10 on it (``--force`` skips only the CPU
   filter), without ``host=`` the engine chooses among the other hosts (filters 1–11);
3. storage: mapped VDIs must be the VM's (``INVALID_VALUE``), unmapped ones reachable from the
   destination (``VM_REQUIRES_SR``), map targets attached there (``VM_REQUIRES_SR``) with room for the
   copy as vdi-copy counts it (``SR_FULL``); as for vdi-copy, the target SR takes the VDI's type
   and size (``VDI_INCOMPATIBLE_TYPE``, ``VDI_TOO_LARGE``) and no other running VM may hold the disk
   (``VDI_IN_USE``);
4. concurrency caps (``TOO_MANY_MIGRATIONS``) and 5. convergence (``MIGRATION_WOULD_NOT_CONVERGE``
   unless ``--force``), both from :func:`vmctl.engine.waves.admit_migration`;
6. HA admission (``HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN``).

No-ops (nothing changes, nothing is printed): ``host=`` the current host without a map, or a map
whose disks already sit on their target SRs. A halted or suspended VM has no destination: its dry
run prints ``-`` in place of the host uuid (``"host": ""`` in JSON), then the storage-only
prediction (stop reason ``storage-only``: the disks copied at the stream rate, no downtime).

Applying a move (vmctl/relocation.py, also used by host-evacuate and pool-rebalance): the
power-transition hooks see the VM
leave its old host (VBDs detach, VIF ports go), storage motion copies every mapped disk to its
target SR (a new VDI, the VM's VBDs repointed, the old VDI destroyed with the merge rule), the
row records the new resident-on and domid, and the hooks see it become resident on the new host.

Journal: the transaction's journal entry already records the VM's resident-on change. The
engine's prediction is recorded next to it in the VM's ``other-config:last-migration`` (a compact
JSON object: from, to, rounds, bytes, storage-bytes, total-time, downtime, stop-reason and the
VDIs moved), so every migration — a storage-only move of a halted VM included — changes the VM row
and shows up in ``journal-list object=<vm>`` with the prediction as the field's new value.

On a libvirt pool the move is a real live migration (vmctl/moves.py): the VM is held and recorded
as migrating while libvirt moves it with the lock released, the closing transaction records the
move with libvirt's measured figures under ``measured`` in the same key, and vm-migrate prints the
prediction and the measurement side by side (JSON: ``predicted`` and ``measured`` objects).
Several VMs (``--multiple``) migrate one after another, each committed alone. Storage motion of a
running VM copies the mapped disks into new volumes on the destination during the migration; a
halted VM's disks are copied by a host as vdi-copy copies (vmctl/volumes.py).
"""

from __future__ import annotations

import dataclasses

from vmctl import drivers, moves
from vmctl.admission import admit
from vmctl.commands.table import Arg, Ctx, Data, Records, Value, command
from vmctl.engine.migration import HINT_FIELDS, PREDICTION_FIELDS
from vmctl.errors import Ref, VmctlError
from vmctl.relocation import (
    LIVE_STATES,
    record_of,
    relocate,
    storage_need,
)
from vmctl.vms import bad_power_state, check_vm_operation, select_vms

_VM = Arg(
    "vm",
    "ref:vm",
    help="the VM: uuid or name-label (or select VMs with field filters and --multiple)",
    complete="vm",
)


# --- output -------------------------------------------------------------------------------------------------
def _plan_data(plans: list[dict], reports: list) -> Data:
    data = []
    for p, rep in zip(plans, reports):
        d = dict(p)
        if rep is not None:
            d["explain"] = rep.to_json()
        data.append(d)
    rows = [
        {
            "vm": p["vm"],
            "host": p["host"],
            **{k: p.get(k) for k in PREDICTION_FIELDS},
            **{k: (p.get("hints") or {}).get(k) for k in HINT_FIELDS},
        }
        for p in plans
    ]
    # csv/tsv: one row per VM; --minimal: the destinations, as vm-start --dry-run prints them
    return Data(
        data[0] if len(data) == 1 else data,
        "migration-plans",
        (plans, reports),
        records=Records("migration", rows, ["vm", "host", *PREDICTION_FIELDS, *HINT_FIELDS], minimal="host"),
    )


def shown_data(shown: moves.Shown, single: bool) -> Data:
    """The moves made on a real pool, predicted and measured side by side; filled in as each
    move commits, printed at the end (also used by host-evacuate and pool-rebalance)."""
    return Data(
        lambda: shown.data(single),
        "migration-results",
        shown,
        records=Records("migration", shown.rows, list(moves.ROW_FIELDS), minimal="to"),
    )


# --- checks -------------------------------------------------------------------------------------------------
def _resolve_map(ctx: Ctx) -> dict[str, str]:
    """``vdi:<vdi>=<sr>`` → {vdi uuid: sr uuid}; unknown VDIs or SRs: UUID_INVALID."""
    txn = ctx.txn
    out: dict[str, str] = {}
    for key, sr_text in sorted(ctx.maps.get("vdi", {}).items()):
        if not key or not sr_text:
            raise VmctlError(
                "INVALID_VALUE",
                "A storage map entry is vdi:<vdi-uuid>=<sr>",
                [("name", f"vdi:{key}"), ("value", sr_text)],
            )
        vdi = txn.resolve_one("vdi", key)
        sr = txn.resolve_one("sr", sr_text)
        out[vdi["uuid"]] = sr["uuid"]
    return out


def _check_vif_map(ctx: Ctx, vms: list[dict]) -> None:
    """xe's ``vif:<vif>=<network>``: a migration within a pool keeps every VIF on its network, so
    the map may only name a selected VM's VIF and the network it is on (what a script that maps
    every VIF to its network writes); another network is refused (vif-move changes it)."""
    txn = ctx.txn
    mine = {v["uuid"] for v in vms}
    for key, net_text in sorted(ctx.maps.get("vif", {}).items()):
        vif = txn.resolve_one("vif", key)
        network = txn.resolve_one("network", net_text)
        if vif["vm"] not in mine:
            raise VmctlError(
                "INVALID_VALUE",
                "The network map names a VIF no selected VM has",
                [("name", f"vif:{key}"), ("value", net_text)],
            )
        if network["uuid"] != vif["network"]:
            raise VmctlError(
                "OPERATION_NOT_ALLOWED",
                "A migration within a pool keeps each VIF on its network; vif-move changes it",
                [("reason", f"vif:{key} names another network than the VIF's")],
            )


def _vm_vdis(txn, vm: dict) -> set[str]:
    used = {b["vdi"] for b in txn.select("vbd", vm=vm["uuid"]) if b["vdi"]}
    if vm["suspend-vdi"]:
        used.add(vm["suspend-vdi"])
    return used


def _check_map_members(txn, vm: dict, vdi_map: dict[str, str]) -> None:
    used = _vm_vdis(txn, vm)
    for vdi_uuid in sorted(vdi_map):
        if vdi_uuid not in used:
            raise VmctlError(
                "INVALID_VALUE",
                "The storage map names a VDI the VM does not use",
                [("name", f"vdi:{vdi_uuid}"), ("value", vdi_map[vdi_uuid])],
            )
    from vmctl import storage

    for vdi_uuid, sr_uuid in sorted(vdi_map.items()):
        sr = txn.get("sr", sr_uuid)
        vdi = txn.get("vdi", vdi_uuid)
        if sr["pool"] != vm["pool"]:
            raise VmctlError(
                "NOT_IN_SAME_POOL",
                params=[("object", txn.ref("sr", sr)), ("pool", txn.ref("pool", vm["pool"]))],
            )
        if vdi["sr"] == sr_uuid:
            continue  # already there: nothing to copy
        # the copy is a vdi-copy to a new VDI: the same type and size rules (model.md §3.5)
        if (sr["content-type"] == "iso") != (vdi["type"] == "iso"):
            raise VmctlError(
                "VDI_INCOMPATIBLE_TYPE",
                "An ISO SR holds only iso VDIs, and only ISO SRs hold them",
                [("vdi", txn.ref("vdi", vdi)), ("type", vdi["type"])],
            )
        if vdi["virtual-size"] > storage.largest_vdi(sr):
            raise VmctlError(
                "VDI_TOO_LARGE", params=[("vdi", txn.ref("vdi", vdi)), ("maximum", storage.largest_vdi(sr))]
            )
        # another VM holding the disk would lose it when the old copy goes (vdi-copy's VDI_IN_USE)
        if storage.holders(txn, vdi_uuid, exclude=vm["uuid"]):
            raise storage.in_use(txn, vdi, "migrate")


def _requires_sr(txn, vm: dict, sr_uuid: str) -> VmctlError:
    return VmctlError(
        "VM_REQUIRES_SR",
        f"The destination cannot reach SR {txn.ref('sr', sr_uuid).render()}: "
        f"move its disks with vdi:<vdi-uuid>=<sr>",
        [("vm", txn.ref("vm", vm)), ("sr", txn.ref("sr", sr_uuid))],
    )


def _unreachable(txn, vm: dict, vdi_map: dict[str, str], host: str | None) -> str | None:
    """The first SR (by VDI) the VM still needs that ``host`` (None: any host other than the
    current one) cannot reach, or None."""
    from vmctl import storage

    cur = vm["resident-on"]
    for vdi_uuid in sorted(_vm_vdis(txn, vm)):
        vdi = txn.get("vdi", vdi_uuid)
        if vdi is None:
            continue
        sr = vdi_map.get(vdi_uuid, vdi["sr"])
        if host is not None:
            if not storage.sr_visible(txn, sr, host):
                return sr
        else:
            hosts = {p["host"] for p in txn.select("pbd", sr=sr) if p["currently-attached"]}
            if not hosts - {cur}:
                return sr
    return None


def _cold_prediction(ps, vm_uuid: str, vdi_map: dict[str, str], network: str | None, bandwidth) -> dict:
    """A storage-only move of a halted or suspended VM: no memory phase, the disks copied at the
    stream rate (engine.md §4.2 storage-bytes)."""
    from vmctl.engine import migration as mg

    v = ps.vms[vm_uuid]
    net = mg.resolve_network(ps, network)
    rate = mg.pool_stream_bandwidth(ps, net, bandwidth)
    sb = float(sum(d.physical_utilisation for d in v.vdis if d.uuid in vdi_map))
    return {
        "memory": 0.0,
        "rate": rate,
        "rounds": 0,
        "bytes": 0.0,
        "storage-bytes": sb,
        "total-time": sb / rate if rate > 0 else 0.0,
        "downtime": 0.0,
        "converges": True,
        "stop-reason": "storage-only",
    }


def _check_cpu(txn, vm: dict, host: dict) -> None:
    """XAPI's Cpuid_helpers.assert_vm_is_compatible on an explicit destination, before the
    operation checks: the engine's cpu filter (VM_INCOMPATIBLE_WITH_THIS_HOST)."""
    from vmctl.engine.placement import MIGRATE, Scheduler
    from vmctl.engine.placement.filters import BY_NAME
    from vmctl.engine_adapter import pool_state

    if host["pool"] != vm["pool"]:
        return  # NOT_IN_SAME_POOL below
    sched = Scheduler(pool_state(txn, vm["pool"]))
    err = sched.filter_error(vm["uuid"], host["uuid"], BY_NAME["cpu"], mode=MIGRATE)
    if err is not None:
        raise err


def migrate_one(
    ctx: Ctx,
    vm: dict,
    host: dict | None,
    network: dict | None,
    vdi_map: dict[str, str],
    shown: moves.Shown | None = None,
) -> tuple[dict | None, object]:
    """Check and apply one vm-migrate; (plan or None for a no-op, explain report or None). On a
    libvirt pool the move is a real live migration (vmctl/moves.py), reported into `shown`."""
    from vmctl import storage
    from vmctl.engine import waves as wv
    from vmctl.engine.placement import MIGRATE
    from vmctl.engine_adapter import pool_state

    txn = ctx.txn
    force = ctx.force
    explain = bool(ctx.opts.get("explain"))
    # 1. XAPI's VM.pool_migrate (live) or VM.migrate_send (with a storage map) operation checks:
    # the CPU of an explicit destination first (message_forwarding VM.pool_migrate checks it
    # before the operation), then blocked-operations, power state (pool_migrate: running;
    # migrate_send: halted, suspended or running), template, snapshot, mobility (--force lifts it).
    op = "migrate_send" if vdi_map else "pool_migrate"
    if host is not None and not force and vm["power-state"] != "halted" and host["uuid"] != vm["resident-on"]:
        _check_cpu(txn, vm, host)
    check_vm_operation(txn, vm, op, strict=not force)
    live = vm["power-state"] in LIVE_STATES
    if not live and host is not None:
        # a halted or suspended VM only moves its disks: it has no destination host
        raise bad_power_state(txn, vm, ("running",))
    if host is not None and host["pool"] != vm["pool"]:
        raise VmctlError(
            "NOT_IN_SAME_POOL",
            params=[("object", txn.ref("host", host)), ("pool", txn.ref("pool", vm["pool"]))],
        )
    if network is not None and network["pool"] != vm["pool"]:
        raise VmctlError(
            "NOT_IN_SAME_POOL",
            params=[("object", txn.ref("network", network)), ("pool", txn.ref("pool", vm["pool"]))],
        )
    net = network["uuid"] if network else None
    bandwidth = ctx.a.get("bandwidth")
    downtime = ctx.a.get("downtime")
    ps = pool_state(txn, vm["pool"])
    smap = dict(vdi_map)
    report = None
    if not live:
        # 3. storage: the map's VDIs are the VM's, targets attached somewhere, room for the copies
        _check_map_members(txn, vm, smap)
        for sr_uuid in sorted(set(smap.values())):
            if not storage.sr_attached(txn, sr_uuid):
                raise _requires_sr(txn, vm, sr_uuid)
        storage.check_space(txn, storage_need(txn, smap))
        moving = {k: v for k, v in smap.items() if txn.get("vdi", k)["sr"] != v}
        if not moving:
            return None, None  # every mapped disk is already on its target SR: a no-op
        plan = {"vm": vm["uuid"], "host": "", **_cold_prediction(ps, vm["uuid"], moving, net, bandwidth)}
        relocate(txn, vm["uuid"], "", moving, record_of("", "", plan), bool(ctx.opts.get("quiet")))
        return plan, None
    src = vm["resident-on"]
    # 2. destination
    from vmctl.engine.placement import Scheduler

    sched = Scheduler(ps)
    if host is not None:
        dst = host["uuid"]
        if dst == src and not smap:
            return None, None  # already there: a no-op (engine.md §4.1)
        if dst != src:
            try:
                sched.check_target(vm["uuid"], dst, mode=MIGRATE, force=force, vdi_map=smap or None, ha=False)
            except VmctlError as e:
                if e.code == "VM_REQUIRES_SR":
                    sr = dict(e.params).get("sr")
                    raise _requires_sr(txn, vm, sr.uuid if isinstance(sr, Ref) else str(sr)) from None
                raise
    else:
        missing = _unreachable(txn, vm, smap, None)
        if missing is not None:
            raise _requires_sr(txn, vm, missing)
        if explain:
            from vmctl.engine.placement import explain as explain_fn

            report = explain_fn(ps, vm["uuid"], mode=MIGRATE, force=force, vdi_map=smap or None)
            if report.chosen is None:
                raise sched.no_hosts_error(
                    sched.request(ps.vms[vm["uuid"]], MIGRATE, force, smap or None), (src,)
                )
            dst = report.chosen
        else:
            dst = sched.place(vm["uuid"], mode=MIGRATE, force=force, vdi_map=smap or None).host
    # 3. storage
    _check_map_members(txn, vm, smap)
    missing = _unreachable(txn, vm, smap, dst)
    if missing is not None:
        raise _requires_sr(txn, vm, missing)
    storage.check_space(txn, storage_need(txn, smap))
    moving = {k: v for k, v in smap.items() if txn.get("vdi", k)["sr"] != v}
    if dst == src and not moving:
        return None, None  # the same host and every disk already in place: a no-op
    if dst == src and drivers.real(txn, vm["pool"]):
        # libvirt copies a running guest's disks only while it migrates to another host
        where = txn.get("host", src)["name-label"]
        raise VmctlError(
            "OPERATION_NOT_ALLOWED",
            f"On a libvirt pool a running VM's disks move only with a migration to another host: "
            f"add host= naming another host than {where}",
            [("vm", txn.ref("vm", vm)), ("host", txn.ref("host", src))],
        )
    # 4.–5. caps and convergence
    _, pred = wv.admit_migration(
        ps,
        vm["uuid"],
        dst,
        network=net,
        bandwidth=bandwidth,
        downtime=downtime,
        vdi_map=moving or None,
        force=force,
    )
    # 6. HA admission
    if dst != src:
        admit(txn, vm["pool"], move={vm["uuid"]: dst})
    plan = {"vm": vm["uuid"], "host": dst, **pred.as_dict()}
    quiet = bool(ctx.opts.get("quiet"))
    prediction = pred.as_dict()
    prediction.pop("hints", None)
    move = moves.Move(
        vm["uuid"],
        src,
        dst,
        prediction,
        record_of(src, dst, plan),
        moves.label(txn, vm["uuid"], src, dst),
        net,
        moving,
    )
    moves.carry_out(txn, move, bool(ctx.opts.get("dry_run")), quiet, shown)
    return plan, report


@command(
    "vm-migrate",
    "Live-migrate running or paused VMs within their pool, or move disks (vdi:<vdi>=<sr>); "
    "without host= the engine chooses the destination (its placement filters and policy)",
    family="vm",
    args=(
        _VM,
        Arg("host", "ref:host", help="the destination host (default: the engine chooses)", complete="host"),
        Arg(
            "network",
            "ref:network",
            help="the migration network (default: the pool's migration-network, else the management network)",
            complete="network",
        ),
        Arg(
            "vdi",
            "map",
            help="storage motion: vdi:<vdi-uuid>=<sr> copies that disk to the SR "
            "(repeatable; halted and suspended VMs may only move disks)",
        ),
        Arg("downtime", "duration", help="downtime target (default the pool's migration-downtime, 300ms)"),
        Arg(
            "bandwidth",
            "rate",
            help="stream bandwidth B_s (default the network's, else the pool's migration-stream-bandwidth)",
        ),
        Arg("live", "bool", help="accepted for xe compatibility and ignored (migrations are live)"),
        Arg(
            "vif",
            "map",
            help="xe's network map vif:<vif>=<network>: accepted when it keeps each VIF on its network "
            "(a migration within a pool does)",
        ),
        Arg("compress", "bool", help="accepted for xe compatibility and ignored (the stream model has none)"),
    ),
    flags=("--force", "--multiple", "--explain"),
    selector="vm",
)
def vm_migrate(ctx: Ctx):

    txn = ctx.txn
    for name in ("downtime",):
        if name in ctx.a and ctx.a[name] < 0:
            raise VmctlError("INVALID_VALUE", params=[("name", name), ("value", ctx.raw.get(name))])
    if "bandwidth" in ctx.a and ctx.a["bandwidth"] <= 0:
        raise VmctlError(
            "INVALID_VALUE",
            "bandwidth= must be positive",
            [("name", "bandwidth"), ("value", ctx.raw.get("bandwidth"))],
        )
    vms = select_vms(ctx)
    _check_vif_map(ctx, vms)
    host = txn.resolve_one("host", ctx.a["host"]) if "host" in ctx.a else None
    network = txn.resolve_one("network", ctx.a["network"]) if "network" in ctx.a else None
    vdi_map = _resolve_map(ctx)
    if len(vms) > 1 and vdi_map:
        # several VMs share one map: each takes the entries naming its own disks; an entry no
        # selected VM uses is refused as for a single VM
        used = set().union(*(_vm_vdis(txn, v) for v in vms))
        for vdi_uuid in sorted(vdi_map):
            if vdi_uuid not in used:
                raise VmctlError(
                    "INVALID_VALUE",
                    "The storage map names a VDI no selected VM uses",
                    [("name", f"vdi:{vdi_uuid}"), ("value", vdi_map[vdi_uuid])],
                )
    plans, reports = [], []
    real = moves.real_run(txn, vms[0]["pool"], bool(ctx.opts.get("dry_run"))) if vms else False
    shown = moves.Shown() if real else None
    for i, vm in enumerate(vms):
        mine = vdi_map
        if len(vms) > 1:
            own = _vm_vdis(txn, vm)
            mine = {k: v for k, v in vdi_map.items() if k in own}
        if real and moves.must_step(txn):
            # one migration per transaction (vmctl/moves.py): this VM's is checked and made in a
            # step of its own, once the one before it committed
            drivers.step(
                txn,
                drivers.Step(
                    f"VM {vm['name-label'] or vm['uuid']} ({i + 1} of {len(vms)})",
                    lambda t, u=vm["uuid"], m=mine: _migrate_in_step(ctx, t, u, host, network, m, shown),
                    kind="migration",
                ),
            )
            continue
        plan, rep = migrate_one(ctx, txn.get("vm", vm["uuid"]), host, network, mine, shown)
        if plan is not None:
            plans.append(plan)
            reports.append(rep)
    if plans and (ctx.opts.get("dry_run") or ctx.opts.get("explain")):
        return _plan_data(plans, reports)
    if shown is not None and (plans or drivers.steps(txn)):
        return shown_data(shown, single=len(vms) == 1)
    return None


def _migrate_in_step(
    ctx: Ctx, txn, vm_uuid: str, host: dict | None, network: dict | None, vdi_map, shown
) -> None:
    """One VM of vm-migrate --multiple on a real pool, in its own transaction: every check again
    on the inventory as it is now."""
    step_ctx = dataclasses.replace(ctx, txn=txn)
    h = txn.get("host", host["uuid"]) if host is not None else None
    n = txn.get("network", network["uuid"]) if network is not None else None
    vm = txn.get("vm", vm_uuid)
    if vm is None:
        raise VmctlError("UUID_INVALID", "The VM no longer exists", [("class", "vm"), ("uuid", vm_uuid)])
    migrate_one(step_ctx, vm, h, n, vdi_map, shown)


@command(
    "vdi-pool-migrate",
    "Move a disk to another SR of its pool while its VM keeps running (vm-migrate's storage motion "
    "for that disk, the VM staying on its host; a halted VM's disk is copied); print the uuid of the "
    "disk on its new SR",
    family="vdi",
    args=(
        Arg("uuid", "uuid", True, "the VDI", complete="vdi"),
        Arg("sr-uuid", "ref:sr", True, "the SR to move it to", complete="sr"),
    ),
)
def vdi_pool_migrate(ctx: Ctx):
    txn = ctx.txn
    vdi = txn.resolve_one("vdi", ctx.a["uuid"])
    sr = txn.resolve_one("sr", ctx.a["sr-uuid"])
    # XAPI migrates the disk with the first VM that has a VBD on it
    vbds = sorted(txn.select("vbd", vdi=vdi["uuid"]), key=lambda b: b["uuid"])
    if not vbds:
        raise VmctlError("VDI_NEEDS_VM_FOR_MIGRATE", params=[("vdi", txn.ref("vdi", vdi))])
    vm = txn.get("vm", vbds[0]["vm"])
    host = txn.get("host", vm["resident-on"]) if vm["resident-on"] else None
    migrate_one(ctx, vm, host, None, {vdi["uuid"]: sr["uuid"]})
    return Value(txn.get("vbd", vbds[0]["uuid"])["vdi"])  # the disk on its new SR
