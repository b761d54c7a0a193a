"""Virtual block devices (model.md §1.6, §3.5): vbd-create, vbd-plug, vbd-unplug, vbd-destroy.
A VBD is currently-attached while its VM runs (or is paused) and it is plugged; the lifecycle
hooks of vmctl/storage.py attach every VBD when the VM becomes resident."""

from __future__ import annotations

from vmctl import storage
from vmctl.commands.table import Arg, Ctx, Value, command
from vmctl.commands.vm import bad_power_state, check_vm_operation
from vmctl.errors import VmctlError

MAX_DEVICE = 15


def free_device(txn, vm_uuid: str) -> int | None:
    used = {b["device"] for b in txn.select("vbd", vm=vm_uuid)}
    return next((d for d in range(MAX_DEVICE + 1) if d not in used), None)


def check_device(txn, vm: dict, text) -> int:
    """`device=` 0-15 (`INVALID_DEVICE`) and free (`DEVICE_ALREADY_EXISTS`); `autodetect` or
    None: the lowest free device."""
    if text is None or str(text) == "autodetect":
        d = free_device(txn, vm["uuid"])
        if d is None:
            raise VmctlError("INVALID_DEVICE", "The VM has no free device (0-15)", [("device", "autodetect")])
        return d
    s = str(text).strip()
    if not s.isdigit() or not 0 <= int(s) <= MAX_DEVICE:
        raise VmctlError("INVALID_DEVICE", "A device is an integer 0-15", [("device", text)])
    d = int(s)
    if txn.select("vbd", vm=vm["uuid"], device=d):
        raise VmctlError(
            "DEVICE_ALREADY_EXISTS", "The VM already has a device with that number", [("device", d)]
        )
    return d


def same_pool(txn, vm: dict, cls: str, row: dict) -> None:
    if row["pool"] != vm["pool"]:
        raise VmctlError(
            "NOT_IN_SAME_POOL", params=[("object", txn.ref(cls, row)), ("pool", txn.ref("pool", vm["pool"]))]
        )


def plug(txn, vm: dict, vbd: dict, operation: str = "plug") -> None:
    """Attach one VBD of a running VM: SR visible from its host (`VM_REQUIRES_SR`), holding rule."""
    if vbd["vdi"]:
        vdi = txn.get("vdi", vbd["vdi"])
        if vdi is not None:
            if not storage.sr_visible(txn, vdi["sr"], vm["resident-on"]):
                raise VmctlError(
                    "VM_REQUIRES_SR",
                    "The VM's host cannot see the SR",
                    [("vm", txn.ref("vm", vm)), ("sr", txn.ref("sr", vdi["sr"]))],
                )
            if storage.vdi_conflict(txn, vdi["uuid"], vbd["mode"], vm["uuid"]):
                raise storage.in_use(txn, vdi, operation)
    txn.update("vbd", vbd["uuid"], {"currently-attached": True})


@command(
    "vbd-create",
    "Connect a VDI (or an empty CD drive) to a VM, unplugged; print its uuid",
    family="vbd",
    args=(
        Arg("vm-uuid", "uuid", True, "the VM", complete="vm"),
        Arg("device", required=True, help="0-15, or autodetect for the lowest free"),
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
        same_pool(txn, vm, "vdi", vdi)
    if ctx.flag("may-exist") and str(a["device"]).strip().isdigit():
        for b in txn.select("vbd", vm=vm["uuid"], device=int(str(a["device"]).strip())):
            return Value(b["uuid"])
    device = check_device(txn, vm, a["device"])
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
    "vbd-unplug", "Detach a VBD of a running VM", family="vbd", args=(Arg("uuid", "uuid", True, "the VBD"),)
)
def vbd_unplug(ctx: Ctx):
    txn = ctx.txn
    vbd, vm = _vbd_vm(ctx)
    check_vm_operation(txn, vm, "vbd-unplug", ("running",))
    unplug(txn, vbd)
    return None


def unplug(txn, vbd: dict) -> None:
    if not vbd["currently-attached"]:
        raise VmctlError(
            "DEVICE_ALREADY_DETACHED", "The VBD is not attached", [("device", txn.ref("vbd", vbd))]
        )
    if not vbd["unpluggable"]:
        raise VmctlError(
            "VBD_NOT_UNPLUGGABLE",
            "The VBD cannot be unplugged while the VM runs",
            [("vbd", txn.ref("vbd", vbd))],
        )
    txn.update("vbd", vbd["uuid"], {"currently-attached": False})


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
