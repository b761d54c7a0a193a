"""Virtual block devices (model.md §1.6, §3.5): vbd-create, vbd-plug, vbd-unplug, vbd-destroy.
A VBD is currently-attached while its VM runs (or is paused) and it is plugged; the power-transition
hooks (vmctl/hooks.py) attach every VBD when the VM becomes resident."""

from __future__ import annotations

from vmctl import storage
from vmctl.commands.table import Arg, Ctx, Value, command
from vmctl.errors import VmctlError
from vmctl.pools import same_pool
from vmctl.storage import MAX_DEVICE, check_device, plug, unplug
from vmctl.vms import bad_power_state, check_vm_operation


@command(
    "vbd-create",
    "Connect a VDI (or an empty CD drive) to a VM, unplugged; print its uuid",
    family="vbd",
    args=(
        Arg("vm-uuid", "uuid", True, "the VM", complete="vm"),
        Arg("device", required=True, help="a number below 2^20, or autodetect for the lowest free of 0-254"),
        Arg("vdi-uuid", "uuid", help="the disk (required for type=disk; omit for an empty CD)"),
        Arg("type", "enum", values=("disk", "cd"), help="disk (default) or cd"),
        Arg("mode", "enum", values=("RW", "RO"), help="RW (default for disks) or RO (CDs are RO)"),
        Arg("bootable", "bool", help="boot from it (default false)"),
        Arg("unpluggable", "bool", help="may be unplugged while the VM runs (default true)"),
        Arg(
            "other-config", "map", help="other-config:KEY=VALUE (owner=true: vm-uninstall destroys the disk)"
        ),
    ),
    flags=("--may-exist",),
    creates="vbd",
)
def vbd_create(ctx: Ctx):
    txn, a = ctx.txn, ctx.a
    vm = txn.resolve_one("vm", a["vm-uuid"])
    vdi = txn.resolve_one("vdi", a["vdi-uuid"]) if a.get("vdi-uuid") else None
    check_vm_operation(txn, vm, "vbd-create", ("halted", "running"), templates=True)
    if vdi is not None:
        same_pool(txn, "vdi", vdi, vm["pool"])
    if ctx.flag("may-exist") and str(a["device"]).strip().isdigit():
        # a number beyond every device cannot name an existing one (check_device refuses it below)
        wanted = int(str(a["device"]).strip())
        for b in txn.select("vbd", vm=vm["uuid"], device=wanted) if wanted <= MAX_DEVICE else ():
            return Value(b["uuid"])
    # xapi_vbd.create's order: the drive and disk rules, then the device (INVALID_DEVICE,
    # DEVICE_ALREADY_EXISTS)
    vtype = a.get("type", "disk")
    mode = a.get("mode", "RO" if vtype == "cd" else "RW")
    if vtype == "cd" and mode != "RO":
        raise VmctlError("VBD_CDS_MUST_BE_READONLY", "A CD drive is read-only", [])
    if vtype == "disk" and vdi is None:
        raise VmctlError("MISSING_PARAMETER", "A disk VBD needs vdi-uuid=", [("name", "vdi-uuid")])
    if vdi is not None:
        if mode == "RW" and vdi["read-only"]:
            raise VmctlError("VDI_READONLY", "The VDI is read-only", [("vdi", txn.ref("vdi", vdi))])
        storage.check_managed(txn, vdi)
    device = check_device(txn, vm, a["device"])
    if vdi is not None:
        # On a running VM the new VBD makes it a holder at once: keep I4 (the spec names the
        # holding rule at plug time; creating is where the VM starts holding here).
        if vm["power-state"] == "running" and storage.vdi_conflict(txn, vdi["uuid"], mode, vm["uuid"]):
            raise storage.in_use(txn, vdi, "vbd-create")
    return Value(
        txn.insert(
            "vbd",
            {
                "vm": vm["uuid"],
                "vdi": vdi["uuid"] if vdi else "",
                "device": device,
                "type": vtype,
                "mode": mode,
                "bootable": a.get("bootable", False),
                "unpluggable": a.get("unpluggable", True),
                "pool": vm["pool"],
                "other-config": dict(ctx.maps.get("other-config", {})),
                "currently-attached": False,
            },
        )
    )


def _vbd_vm(ctx: Ctx) -> tuple[dict, dict]:
    txn = ctx.txn
    vbd = txn.resolve_one("vbd", ctx.a["uuid"])
    vm = txn.get("vm", vbd["vm"])
    if vm is None:
        raise VmctlError("UUID_INVALID", params=[("class", "vm"), ("value", vbd["vm"])])
    return vbd, vm


@command(
    "vbd-plug", "Attach a VBD of a running VM", family="vbd", args=(Arg("uuid", "uuid", True, "the VBD"),)
)
def vbd_plug(ctx: Ctx):
    txn = ctx.txn
    vbd, vm = _vbd_vm(ctx)
    check_vm_operation(txn, vm, "vbd-plug", ("running",))
    if vbd["currently-attached"]:
        raise VmctlError(
            "DEVICE_ALREADY_ATTACHED", "The VBD is already attached", [("device", txn.ref("vbd", vbd))]
        )
    plug(txn, vm, vbd, "plug")
    return None


@command(
    "vbd-unplug",
    "Detach a VBD of a running VM",
    family="vbd",
    args=(
        Arg("uuid", "uuid", True, "the VBD"),
        # xe waits up to timeout seconds for the guest to release the disk, and --force does not
        # ask it; vmctl's unplug has no guest to wait for, so both are accepted and change nothing
        Arg("timeout", "duration", help="accepted for xe scripts: the unplug does not wait for a guest"),
    ),
    flags=("--force",),
)
def vbd_unplug(ctx: Ctx):
    txn = ctx.txn
    vbd, vm = _vbd_vm(ctx)
    check_vm_operation(txn, vm, "vbd-unplug", ("running",))
    unplug(txn, vbd)
    return None


@command(
    "vbd-destroy",
    "Remove a VBD (not while attached; not of a suspended VM)",
    family="vbd",
    args=(Arg("uuid", "uuid", True, "the VBD"),),
    flags=("--if-exists",),
)
def vbd_destroy(ctx: Ctx):
    txn = ctx.txn
    found = ctx.unless_missing(lambda: _vbd_vm(ctx))
    if found is None:
        return None
    vbd, vm = found
    check_vm_operation(txn, vm, "vbd-destroy", ("halted", "running", "paused"), templates=True)
    if vbd["currently-attached"]:
        raise VmctlError("OPERATION_NOT_ALLOWED", "Unplug the VBD first", [("reason", "VBD is attached")])
    if vm["power-state"] == "suspended":  # pragma: no cover - check_vm_operation refuses it
        raise bad_power_state(txn, vm, ("halted", "running", "paused"))
    txn.delete("vbd", vbd["uuid"])
    return None
