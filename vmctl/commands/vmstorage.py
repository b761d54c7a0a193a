"""VM copies, snapshots and disks (model.md §3.4): vm-clone, vm-copy, vm-snapshot,
vm-checkpoint, snapshot-revert, snapshot-destroy, snapshot-uninstall, vm-disk-add,
vm-disk-remove, vm-disk-list.

The copies themselves are the service's (vmctl/copies.py, shared with vm-install). With
``--explain`` vm-clone and vm-copy also print the bytes each disk copy moves (a thin copy moves
only the written bytes; a copy-on-write clone moves none)."""

from __future__ import annotations

from collections import defaultdict

from vmctl import domains, hooks, storage
from vmctl.commands.table import Arg, Ctx, Data, Records, Text, Value, command
from vmctl.copies import RESTORED, clone_vm, copy_vifs, copy_vm_plan, disk_vbds, is_disk, new_vbd, vm_values
from vmctl.errors import VmctlError
from vmctl.model import XE_SPELLING
from vmctl.storage import check_device, plug, unplug
from vmctl.vms import check_vm_operation, select_vms

# Fields a new VM (clone, copy) or a snapshot never inherits from its source.
# What snapshot-revert restores on an existing VM (model.md §3.4).


_VM = Arg("vm", "ref:vm", True, "the VM, template or snapshot: uuid or name-label", complete="vm")
_NEW_NAME = Arg("new-name-label", required=True, help="the new VM's name")
_NEW_DESC = Arg("new-name-description", help="the new VM's description (default the source's)")
_DISK_PARAMS = (
    Arg("vbd-params", help="the VBD fields to show (a,b,c or all; vmctl's or xe's names): xe's layout"),
    Arg("vdi-params", help="the VDI fields to show (a,b,c or all; vmctl's or xe's names): xe's layout"),
)
# the fields xe's vm-disk-list shows when not told which
_XE_VBD_PARAMS = "uuid,vm-name-label,userdevice"
_XE_VDI_PARAMS = "uuid,name-label,virtual-size,sr-name-label"


def _explain(ctx: Ctx, uuid: str, copies: list[dict]):
    if not ctx.opts.get("explain"):
        return Value(uuid)
    total = sum(c["bytes"] for c in copies)
    return Data({"uuid": uuid, "bytes-to-copy": total, "copies": copies}, "vm-copy-report")


@command(
    "vm-clone",
    "Clone a halted VM, template or snapshot with copy-on-write disks; print the new uuid "
    "(--explain: also the per-disk copy report; a copy-on-write clone copies 0 bytes)",
    family="vm",
    args=(_VM, _NEW_NAME, _NEW_DESC),
    flags=("--explain",),
)
def vm_clone(ctx: Ctx):
    txn = ctx.txn
    vm = txn.resolve_one("vm", ctx.a["vm"])
    u = clone_vm(
        txn, vm, ctx.a["new-name-label"], ctx.a.get("new-name-description"), quiet=bool(ctx.opts.get("quiet"))
    )
    # the clone's disks pair with the source VM's by device
    sources = {b["device"]: b["vdi"] for b in txn.select("vbd", vm=vm["uuid"])}
    copies = [
        {
            "device": b["device"],
            "source": sources.get(b["device"], ""),
            "target": b["vdi"],
            "sr": (txn.get("vdi", b["vdi"]) or {}).get("sr", ""),
            "bytes": 0,
            "provisioning": "copy-on-write",
        }
        for b in txn.select("vbd", vm=u)
        if b["vdi"] and b["type"] == "disk"
    ]
    return _explain(ctx, u, copies)


@command(
    "vm-copy",
    "Full copy of a halted VM, template or snapshot (disks to sr-uuid, else their own SRs); "
    "print the new uuid (--explain: also the bytes each disk copy moves: thick the size, thin the written "
    "bytes)",
    family="vm",
    args=(
        _VM,
        _NEW_NAME,
        Arg("sr-uuid", "uuid", help="put every disk copy on this SR", complete="sr"),
        _NEW_DESC,
    ),
    flags=("--explain",),
)
def vm_copy(ctx: Ctx):
    txn = ctx.txn
    vm = txn.resolve_one("vm", ctx.a["vm"])
    if ctx.a.get("sr-uuid"):
        txn.resolve_one("sr", ctx.a["sr-uuid"])  # resolution before the state checks
    u, plan = copy_vm_plan(
        txn,
        vm,
        ctx.a["new-name-label"],
        ctx.a.get("sr-uuid"),
        ctx.a.get("new-name-description"),
        quiet=bool(ctx.opts.get("quiet")),
    )
    return _explain(ctx, u, plan)


# --- snapshots ---------------------------------------------------------------------------------------------
def suspend_sr_of(txn, vm: dict) -> dict:
    """suspend-sr, else the pool's default-sr (`VM_NO_SUSPEND_SR [vm]`)."""
    u = vm["suspend-sr"] or (txn.get("pool", vm["pool"]) or {}).get("default-sr", "")
    sr = txn.get("sr", u) if u else None
    if sr is None:
        raise VmctlError(
            "VM_NO_SUSPEND_SR",
            "The VM has no suspend-sr and its pool no default-sr",
            [("vm", txn.ref("vm", vm))],
        )
    return sr


def snapshot_vm(
    txn,
    vm: dict,
    new_name: str,
    ignore: set[str] = frozenset(),
    checkpoint: bool = False,
    quiet: bool = False,
    new_description: str | None = None,
) -> str:
    """vm-snapshot / vm-checkpoint (model.md §3.4); returns the snapshot's uuid."""
    op = "checkpoint" if checkpoint else "snapshot"
    states = (
        ("running", "paused", "suspended") if checkpoint else ("halted", "running", "paused", "suspended")
    )
    check_vm_operation(txn, vm, op, states)
    pairs = disk_vbds(txn, vm)
    needs: dict[str, int] = defaultdict(int)
    seen: dict[str, int] = defaultdict(int)
    for b, d in pairs:
        if is_disk(b, d) and d["uuid"] not in ignore:
            if d["sharable"]:
                raise VmctlError(
                    "VDI_IS_SHARABLE", "A sharable VDI cannot be snapshotted", [("vdi", txn.ref("vdi", d))]
                )
            seen[d["uuid"]] += 1
            storage.check_managed(txn, d)
            storage.check_chain_depth(txn, d, seen[d["uuid"]])
            needs[d["sr"]] += storage.clone_need(d, True)
    image_sr, image_size = None, 0
    if checkpoint:
        image_sr = suspend_sr_of(txn, vm)
        storage.require_attached(txn, image_sr)
        image_size = storage.round_size(vm["memory-static-max"])
        needs[image_sr["uuid"]] += image_size
    storage.check_space(txn, needs)
    before = storage.allocations(txn, needs)
    from vmctl.store.txn import now_iso

    now = now_iso()
    snap = txn.insert(
        "vm",
        vm_values(
            vm,
            **{
                "name-label": new_name,
                "is-a-snapshot": True,
                "is-a-template": True,
                "snapshot-of": vm["uuid"],
                "snapshot-time": now,
                "parent": vm["parent"],
                "power-state": "suspended" if checkpoint else "halted",
                **({} if new_description is None else {"name-description": new_description}),
            },
        ),
    )
    for b, d in pairs:
        if is_disk(b, d):
            if d["uuid"] in ignore:
                continue
            s = storage.clone_vdi(txn, d, snapshot=True, now=now)
            new_vbd(txn, snap, vm["pool"], b, s, dict(b["other-config"]))
        else:
            new_vbd(txn, snap, vm["pool"], b, b["vdi"], dict(b["other-config"]))
    copy_vifs(txn, vm["uuid"], snap, vm["pool"], new_macs=False)
    if checkpoint:
        image = storage.create_vdi(
            txn,
            image_sr,
            image_size,
            name_label=f"Suspend image for {new_name}",
            provisioning="thick-lazy",
            type="suspend",
            quiet=quiet,
        )
        txn.update("vm", snap, {"suspend-vdi": image})
    txn.update("vm", vm["uuid"], {"parent": snap})
    storage.overprovision_warning(txn, before, quiet)
    return snap


def _snapshot_cmd(ctx: Ctx, checkpoint: bool):
    txn = ctx.txn
    ignore = set()
    for text in ctx.a.get("ignore-vdi-uuids", []):
        ignore.add(txn.resolve_one("vdi", text)["uuid"])
    vms = select_vms(ctx)
    out = [
        snapshot_vm(
            txn,
            vm,
            ctx.a["new-name-label"],
            ignore,
            checkpoint,
            bool(ctx.opts.get("quiet")),
            ctx.a.get("new-name-description"),
        )
        for vm in vms
    ]
    if len(out) == 1:
        return Value(out[0])
    return Text("".join(u + "\n" for u in out))


_SNAP_ARGS = (
    Arg("vm", "ref:vm", help="the VM: uuid or name-label (or select with field filters)", complete="vm"),
    Arg("new-name-label", required=True, help="the snapshot's name"),
    Arg("new-name-description", help="the snapshot's description (default the VM's)"),
    Arg("ignore-vdi-uuids", "list", help="comma-separated VDIs not to snapshot"),
)


@command(
    "vm-snapshot",
    "Snapshot a VM's disks and configuration (any power state); print the snapshot's uuid",
    family="snapshot",
    args=_SNAP_ARGS,
    flags=("--multiple",),
    selector="vm",
)
def vm_snapshot(ctx: Ctx):
    return _snapshot_cmd(ctx, False)


@command(
    "vm-checkpoint",
    "Snapshot a running, paused or suspended VM with its memory (a suspend image); "
    "print the checkpoint's uuid",
    family="snapshot",
    args=_SNAP_ARGS,
    flags=("--multiple",),
    selector="vm",
)
def vm_checkpoint(ctx: Ctx):
    return _snapshot_cmd(ctx, True)


def _snapshot_arg(ctx: Ctx) -> dict:
    text = ctx.a.get("snapshot-uuid") or ctx.a.get("uuid")
    if text is None:
        raise VmctlError(
            "MISSING_PARAMETER", "Name the snapshot with snapshot-uuid=", [("name", "snapshot-uuid")]
        )
    return ctx.txn.resolve_one("vm", text)


_SNAP_UUID = (
    Arg("snapshot-uuid", "uuid", help="the snapshot", complete="vm"),
    Arg("uuid", "uuid", help="alias of snapshot-uuid"),
)


def _hard_halt(txn, vm: dict) -> dict:
    """Hard shutdown for revert: leave the host (hooks detach VBDs and VIF ports), or drop the
    suspend image."""
    if vm["power-state"] in ("running", "paused"):
        domains.halt(txn, vm, clean=False)  # a real pool: its domain goes
        if vm["resident-on"]:
            hooks.leaving_host(txn, vm, vm["resident-on"])
        for vif in txn.select("vif", vm=vm["uuid"]):
            if vif["plugged"]:
                txn.update("vif", vif["uuid"], {"plugged": False})
        vm = txn.update(
            "vm",
            vm["uuid"],
            {"power-state": "halted", "resident-on": "", "domid": -1, "scheduled-to-be-resident-on": ""},
        )
    elif vm["power-state"] == "suspended":
        image = vm["suspend-vdi"]
        vm = txn.update("vm", vm["uuid"], {"power-state": "halted", "suspend-vdi": ""})
        d = txn.get("vdi", image) if image else None
        if d is not None:
            storage.destroy_vdi(txn, d, check=False)
    return vm


def revert(txn, snap: dict, quiet: bool = False) -> str:
    """snapshot-revert (model.md §3.4); returns the VM's uuid."""
    if not snap["is-a-snapshot"]:
        raise VmctlError(
            "REVERT_ONLY_ALLOWED_ON_SNAPSHOT",
            "Only a snapshot can be reverted to",
            [("vm", txn.ref("vm", snap))],
        )
    check_vm_operation(txn, snap, "revert", ("halted", "suspended"), templates=True, snapshots=True)
    vm = txn.get("vm", snap["snapshot-of"])
    spairs = disk_vbds(txn, snap)
    needs: dict[str, int] = defaultdict(int)
    seen: dict[str, int] = defaultdict(int)
    for b, d in spairs:
        if is_disk(b, d):
            seen[d["uuid"]] += 1
            storage.check_chain_depth(txn, d, seen[d["uuid"]])
            needs[d["sr"]] += storage.clone_need(d, False)
    image = txn.get("vdi", snap["suspend-vdi"]) if snap["suspend-vdi"] else None
    if image is not None:
        # the memory image is copied whole (suspend images stay out of copy-on-write chains)
        needs[image["sr"]] += storage.copy_usage(image, image["provisioning"], txn)
    # The VM's disks with a counterpart in the snapshot (its snapshot-of, or, for an owner disk, the
    # snapshot's disk at the same device: after a revert the VM's disks are clones of the
    # snapshot's) are destroyed: no other VM may hold them.
    doomed: list[dict] = []
    if vm is not None:
        of = {d["snapshot-of"] for b, d in spairs if is_disk(b, d)}
        sdev = {b["device"] for b, d in spairs if is_disk(b, d)}
        for b, d in disk_vbds(txn, vm):
            # by device only for disks the VM owns: a shared data disk is never destroyed that way
            by_device = b["device"] in sdev and b["other-config"].get("owner") == "true"
            if is_disk(b, d) and (d["uuid"] in of or by_device) and d not in doomed:
                if storage.holders(txn, d["uuid"], exclude=vm["uuid"]):
                    raise storage.in_use(txn, d, "revert")
                if d["managed"]:
                    doomed.append(d)
    storage.check_space(txn, needs)
    before = storage.allocations(txn, needs)
    if vm is None:
        vm_uuid = txn.insert(
            "vm",
            vm_values(snap, **{"uuid": snap["snapshot-of"], "is-a-template": False, "parent": snap["uuid"]}),
        )
        vm = txn.get("vm", vm_uuid)
    else:
        vm = _hard_halt(txn, vm)
    clones = {}
    for b, d in spairs:
        if is_disk(b, d):
            clones[b["uuid"]] = storage.clone_vdi(txn, d)
    for b in txn.select("vbd", vm=vm["uuid"]):
        txn.delete("vbd", b["uuid"])
    for v in txn.select("vif", vm=vm["uuid"]):
        txn.delete("vif", v["uuid"])
    for d in doomed:
        cur = txn.get("vdi", d["uuid"])
        if cur is not None:
            storage.destroy_vdi(txn, cur, check=False)
    for b, _d in spairs:
        vdi = clones.get(b["uuid"], b["vdi"])
        new_vbd(txn, vm["uuid"], vm["pool"], b, vdi, dict(b["other-config"]))
    copy_vifs(txn, snap["uuid"], vm["uuid"], vm["pool"], new_macs=False)
    changes = {k: snap[k] for k in RESTORED}
    changes.update({"parent": snap["uuid"], "power-state": "halted", "suspend-vdi": ""})
    if image is not None:
        changes["power-state"] = "suspended"
        changes["suspend-vdi"] = storage.copy_vdi(
            txn,
            image,
            txn.get("sr", image["sr"]),
            name_label=f"Suspend image for {vm['name-label']}",
            quiet=quiet,
            vms=(vm["uuid"],),
        )
    txn.update("vm", vm["uuid"], changes)
    storage.overprovision_warning(txn, before, quiet)
    return vm["uuid"]


@command(
    "snapshot-revert",
    "Revert a VM to a snapshot (the VM is recreated if it was destroyed)",
    family="snapshot",
    args=_SNAP_UUID,
)
def snapshot_revert(ctx: Ctx):
    revert(ctx.txn, _snapshot_arg(ctx), bool(ctx.opts.get("quiet")))
    return None


def _not_snapshot(txn, vm: dict, op: str) -> None:
    if not vm["is-a-snapshot"]:
        raise VmctlError(
            "VM_IS_NOT_A_SNAPSHOT",
            "This command works on snapshots",
            [("vm", txn.ref("vm", vm)), ("operation", op)],
        )


def _drop_snapshot(txn, snap: dict) -> None:
    """Remove the snapshot record, its VBDs, VIFs and memory image; its children in the snapshot
    tree (and the VM, if it descends from it) take its parent."""
    for v in txn.select("vm", parent=snap["uuid"]):
        txn.update("vm", v["uuid"], {"parent": snap["parent"]})
    for b in txn.select("vbd", vm=snap["uuid"]):
        txn.delete("vbd", b["uuid"])
    for v in txn.select("vif", vm=snap["uuid"]):
        txn.delete("vif", v["uuid"])
    image = txn.get("vdi", snap["suspend-vdi"]) if snap["suspend-vdi"] else None
    txn.delete("vm", snap["uuid"])
    if image is not None:
        storage.destroy_vdi(txn, image, check=False)


@command(
    "snapshot-clone",
    "Create a template from a snapshot with copy-on-write disks (vm-clone of the snapshot); print its uuid",
    family="snapshot",
    args=(*_SNAP_UUID, _NEW_NAME, _NEW_DESC),
    flags=("--explain",),
)
def snapshot_clone(ctx: Ctx):
    snap = _snapshot_arg(ctx)
    _not_snapshot(ctx.txn, snap, "snapshot-clone")
    ctx.a["vm"] = snap["uuid"]
    return vm_clone(ctx)


@command(
    "snapshot-copy",
    "Create a template from a snapshot with full disk copies, on sr-uuid or each disk's own SR "
    "(vm-copy of the snapshot); print its uuid",
    family="snapshot",
    args=(
        *_SNAP_UUID,
        _NEW_NAME,
        Arg("sr-uuid", "uuid", help="put every disk copy on this SR", complete="sr"),
        _NEW_DESC,
    ),
    flags=("--explain",),
)
def snapshot_copy(ctx: Ctx):
    snap = _snapshot_arg(ctx)
    _not_snapshot(ctx.txn, snap, "snapshot-copy")
    ctx.a["vm"] = snap["uuid"]
    return vm_copy(ctx)


@command(
    "snapshot-disk-list",
    "List a snapshot's VBDs with their VDIs, as vm-disk-list does",
    family="snapshot",
    rw=False,
    args=(*_SNAP_UUID, *_DISK_PARAMS),
)
def snapshot_disk_list(ctx: Ctx):
    snap = _snapshot_arg(ctx)
    _not_snapshot(ctx.txn, snap, "snapshot-disk-list")
    return disk_list(ctx, snap)


@command(
    "snapshot-destroy",
    "Remove a snapshot record; its disks stay",
    family="snapshot",
    args=_SNAP_UUID,
    flags=("--if-exists",),
)
def snapshot_destroy(ctx: Ctx):
    txn = ctx.txn
    snap = ctx.unless_missing(lambda: _snapshot_arg(ctx))
    if snap is None:
        return None
    _not_snapshot(txn, snap, "snapshot-destroy")
    check_vm_operation(txn, snap, "destroy", ("halted", "suspended"), templates=True, snapshots=True)
    _drop_snapshot(txn, snap)
    return None


@command(
    "snapshot-uninstall",
    "Destroy a snapshot and its owner disks (asks for confirmation)",
    family="snapshot",
    args=_SNAP_UUID,
    flags=("--force",),
)
def snapshot_uninstall(ctx: Ctx):
    txn = ctx.txn
    snap = _snapshot_arg(ctx)
    _not_snapshot(txn, snap, "snapshot-uninstall")
    # xe's snapshot-uninstall: VM.hard_shutdown of a checkpoint, then VM.destroy
    if snap["power-state"] != "halted":
        check_vm_operation(txn, snap, "hard_shutdown")
    check_vm_operation(txn, {**snap, "power-state": "halted"}, "destroy")
    owned = []
    for b, d in disk_vbds(txn, snap):
        if d is not None and b["other-config"].get("owner") == "true" and d not in owned:
            others = [x for x in txn.select("vbd", vdi=d["uuid"]) if x["vm"] != snap["uuid"]]
            if not others:
                owned.append(d)
    ctx.confirm(
        [f"snapshot {snap['uuid']} ({snap['name-label']})"]
        + [f"VDI {d['uuid']} ({d['name-label']})" for d in owned]
    )
    _drop_snapshot(txn, snap)
    for d in owned:
        cur = txn.get("vdi", d["uuid"])
        if cur is not None:
            storage.destroy_vdi(txn, cur, check=False)
    return None


# --- disks -------------------------------------------------------------------------------------------------
@command(
    "vm-disk-add",
    "Add a new disk to a halted or running VM (plugged at once when running); print the VDI's uuid",
    family="vm",
    args=(
        Arg("vm", "ref:vm", True, "the VM or template", complete="vm"),
        Arg("disk-size", "size", True, "the disk's virtual size"),
        Arg("device", help="a number below 2^20 (default the lowest free of 0-254)"),
        Arg("sr-uuid", "uuid", help="the SR (default the pool's default-sr)", complete="sr"),
        Arg(
            "provisioning",
            "enum",
            values=("thin", "thick-lazy", "thick-eager"),
            help="default the SR's default-provisioning",
        ),
        Arg("name-label", help="the disk's name (default `<vm> <device>`)"),
    ),
)
def vm_disk_add(ctx: Ctx):
    txn, a = ctx.txn, ctx.a
    vm = txn.resolve_one("vm", a["vm"])
    sr = txn.resolve_one("sr", a["sr-uuid"]) if a.get("sr-uuid") else None
    check_vm_operation(txn, vm, "vm-disk-add", ("halted", "running"), templates=True)
    if sr is None:
        default = (txn.get("pool", vm["pool"]) or {}).get("default-sr", "")
        sr = txn.get("sr", default) if default else None
        if sr is None:
            raise VmctlError(
                "DEFAULT_SR_NOT_FOUND",
                "The pool has no default-sr: give sr-uuid=",
                [("pool", txn.ref("pool", vm["pool"]))],
            )
    if sr["pool"] != vm["pool"]:
        raise VmctlError(
            "NOT_IN_SAME_POOL", params=[("object", txn.ref("sr", sr)), ("pool", txn.ref("pool", vm["pool"]))]
        )
    device = check_device(txn, vm, a.get("device"))
    size = a["disk-size"]
    if isinstance(size, tuple):
        raise VmctlError("INVALID_VALUE", params=[("name", "disk-size"), ("value", ctx.raw["disk-size"])])
    vdi = storage.create_vdi(
        txn,
        sr,
        size,
        name_label=a.get("name-label", f"{vm['name-label']} {device}"),
        provisioning=a.get("provisioning"),
        quiet=bool(ctx.opts.get("quiet")),
    )
    vbd = txn.insert(
        "vbd",
        {
            "vm": vm["uuid"],
            "vdi": vdi,
            "device": device,
            "type": "disk",
            "mode": "RW",
            "pool": vm["pool"],
            "other-config": {"owner": "true"},
            "currently-attached": False,
        },
    )
    if vm["power-state"] == "running":
        plug(txn, vm, txn.get("vbd", vbd), "vm-disk-add")
    return Value(vdi)


@command(
    "vm-disk-remove",
    "Unplug and destroy a VM's disk (VBD and VDI) at a device",
    family="vm",
    args=(
        Arg("vm", "ref:vm", True, "the VM or template", complete="vm"),
        Arg("device", "int", True, "the device number"),
    ),
)
def vm_disk_remove(ctx: Ctx):
    txn = ctx.txn
    vm = txn.resolve_one("vm", ctx.a["vm"])
    check_vm_operation(txn, vm, "vm-disk-remove", ("halted", "running"), templates=True)
    hits = txn.select("vbd", vm=vm["uuid"], device=ctx.a["device"])
    if not hits:
        raise VmctlError(
            "INVALID_DEVICE", "The VM has no device with that number", [("device", ctx.a["device"])]
        )
    vbd = hits[0]
    vdi = txn.get("vdi", vbd["vdi"]) if vbd["vdi"] else None
    if vdi is not None and vbd["type"] == "disk":
        if storage.holders(txn, vdi["uuid"], exclude=vm["uuid"]):
            raise storage.in_use(txn, vdi, "destroy")
    if vbd["currently-attached"]:
        unplug(txn, vbd)
    txn.delete("vbd", vbd["uuid"])
    if vdi is not None and vbd["type"] == "disk":
        storage.destroy_vdi(txn, txn.get("vdi", vdi["uuid"]), check=False)
    return None


_DISK_FIELDS = (
    "device",
    "type",
    "mode",
    "currently-attached",
    "vdi",
    "name-label",
    "sr",
    "virtual-size",
    "physical-utilisation",
    "provisioning",
)


@command(
    "vm-disk-list",
    "List a VM's VBDs with their VDIs (with vbd-params= or vdi-params=: as xe lays them out); "
    "--minimal: each VBD's uuid then its VDI's",
    family="vm",
    rw=False,
    args=(Arg("vm", "ref:vm", True, "the VM, template or snapshot", complete="vm"), *_DISK_PARAMS),
)
def vm_disk_list(ctx: Ctx):
    return disk_list(ctx, ctx.txn.resolve_one("vm", ctx.a["vm"]))


def disk_list(ctx: Ctx, vm: dict) -> Data:
    """vm-disk-list and snapshot-disk-list: vmctl's view of each disk, or xe's when vbd-params=
    or vdi-params= ask for fields."""
    txn = ctx.txn
    pairs = disk_vbds(txn, vm)
    if "vbd-params" in ctx.a or "vdi-params" in ctx.a:
        return _xe_disk_list(ctx, pairs)
    data = []
    for b, d in pairs:
        data.append(
            {
                "vbd": b["uuid"],
                "device": b["device"],
                "type": XE_SPELLING[("vbd", "type")].get(b["type"], b["type"]),  # as xe prints it
                "mode": b["mode"],
                "currently-attached": b["currently-attached"],
                "vdi": b["vdi"],
                "name-label": d["name-label"] if d else "",
                "sr": d["sr"] if d else "",
                "virtual-size": d["virtual-size"] if d else 0,
                "physical-utilisation": d["physical-utilisation"] if d else 0,
                "provisioning": d["provisioning"] if d else "",
            }
        )
    minimal = [u for b, _ in pairs for u in (b["uuid"], b["vdi"]) if u]
    return Data(data, "vm-disks", minimal=minimal)


def _xe_disk_list(ctx: Ctx, pairs) -> Data:
    """xe's layout: per disk a VBD record and its VDI's, with the fields asked (xe's by default)."""
    from vmctl.cli.output import plain, records_data
    from vmctl.fields import fill_columns, parse_params

    txn = ctx.txn
    vbd_fields = parse_params("vbd", ctx.a.get("vbd-params", _XE_VBD_PARAMS), _XE_VBD_PARAMS.split(","))
    vdi_fields = parse_params("vdi", ctx.a.get("vdi-params", _XE_VDI_PARAMS), _XE_VDI_PARAMS.split(","))
    blocks, data, minimal = [], [], []
    for n, (b, d) in enumerate(pairs):
        vbd = Records("vbd", fill_columns(txn, "vbd", [b], vbd_fields), vbd_fields, single=True)
        vdi = (
            Records("vdi", fill_columns(txn, "vdi", [d], vdi_fields), vdi_fields, single=True) if d else None
        )
        blocks.append((f"Disk {n} VBD:", vbd))
        if vdi is not None:
            blocks.append((f"Disk {n} VDI:", vdi))
        data.append(
            {
                "vbd": records_data("vbd", vbd.rows, vbd_fields)[0],
                "vdi": records_data("vdi", vdi.rows, vdi_fields)[0] if vdi else None,
            }
        )
        for r in (vbd, vdi):
            if r is not None and r.fields:
                minimal.append(plain(records_data(r.cls, r.rows, r.fields[:1])[0][r.fields[0]]))
    return Data(data, "vm-disks", minimal=minimal, blocks=blocks)
