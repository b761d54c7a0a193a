"""VMs (model.md §1.3, §2, §3.3): vm-create, vm-destroy, the VM field rules shared with
vm-param-set, and the power-state and class checks every VM operation runs in order."""

from __future__ import annotations

from vmctl.commands.fields import parse_value
from vmctl.commands.generic import param_hook
from vmctl.commands.pool import only_pool
from vmctl.commands.table import Arg, Ctx, Value, command
from vmctl.errors import VmctlError
from vmctl.model import CLASSES

MiB, GiB, TiB = 1024**2, 1024**3, 1024**4
STATES = ("halted", "running", "paused", "suspended")
MEMORY = ("memory-static-min", "memory-dynamic-min", "memory-dynamic-max", "memory-static-max")


def bad_power_state(txn, vm: dict, allowed) -> VmctlError:
    expected = ", ".join(s for s in STATES if s in allowed)
    return VmctlError("VM_BAD_POWER_STATE", f"The VM must be {expected.replace(', ', ' or ')} for this operation "
                      f"(it is {vm['power-state']})",
                      [("vm", txn.ref("vm", vm)), ("expected", expected), ("actual", vm["power-state"])])


def check_vm_operation(txn, vm: dict, op: str, allowed_states, templates: bool = False,
                       snapshots: bool = False) -> None:
    """model.md §0 check order (3) class, (4) blocked-operations, (6) power state."""
    if vm["is-a-snapshot"] and not snapshots:
        raise VmctlError("VM_IS_SNAPSHOT", params=[("vm", txn.ref("vm", vm)), ("operation", op)])
    if vm["is-a-template"] and not vm["is-a-snapshot"] and not templates:
        raise VmctlError("VM_IS_TEMPLATE", params=[("vm", txn.ref("vm", vm)), ("operation", op)])
    if op in vm["blocked-operations"]:
        raise VmctlError("OPERATION_BLOCKED", params=[("vm", txn.ref("vm", vm)), ("operation", op),
                                                      ("reason", vm["blocked-operations"][op])])
    if vm["power-state"] not in allowed_states:
        raise bad_power_state(txn, vm, allowed_states)


def check_memory(txn, vm: dict) -> None:
    """model.md §1.3 limits: each in [16 MiB, 16 TiB], ordered, reservation ≤ dynamic-max."""
    ref = txn.ref("vm", vm) if vm.get("uuid") else None
    for f in MEMORY + ("memory-reservation",):
        v = vm[f]
        if f != "memory-reservation" and v < 16 * MiB:
            raise VmctlError("VM_MEMORY_SIZE_TOO_LOW", params=[("vm", ref), ("field", f), ("value", v)])
        if v > 16 * TiB:
            raise VmctlError("INVALID_VALUE", "Memory limits are at most 16 TiB", [("name", f), ("value", v)])
    pairs = list(zip(MEMORY, MEMORY[1:]))
    for lo, hi in pairs:
        if vm[lo] > vm[hi]:
            raise VmctlError("MEMORY_CONSTRAINT_VIOLATION", params=[("constraint", f"{lo} <= {hi}")])
    if vm["memory-reservation"] > vm["memory-dynamic-max"]:
        raise VmctlError("MEMORY_CONSTRAINT_VIOLATION",
                         params=[("constraint", "memory-reservation <= memory-dynamic-max")])


def check_vcpus(txn, vm: dict) -> None:
    ref = txn.ref("vm", vm) if vm.get("uuid") else None
    if vm["vcpus"] < 1:
        raise VmctlError("VM_NO_VCPUS", params=[("vm", ref)])
    if vm["vcpus"] > 256:
        raise VmctlError("VM_TOO_MANY_VCPUS", params=[("vm", ref)])


def check_refs(txn, vm: dict) -> None:
    """Groups and affinity of the VM's own pool (I15)."""
    pool = vm["pool"]
    for g in vm["groups"]:
        grp = txn.get("vm-group", g)
        if grp is not None and grp["pool"] != pool:
            raise VmctlError("NOT_IN_SAME_POOL", params=[("object", txn.ref("vm-group", grp)), ("pool", txn.ref("pool", pool))])
    if vm["affinity"]:
        h = txn.get("host", vm["affinity"])
        if h is not None and h["pool"] != pool:
            raise VmctlError("NOT_IN_SAME_POOL", params=[("object", txn.ref("host", h)), ("pool", txn.ref("pool", pool))])


@param_hook("vm")
def _vm_param_rules(ctx: Ctx, vm: dict, changes: dict) -> None:
    txn = ctx.txn
    f = CLASSES["vm"].fields
    for name in changes:
        acc = f[name].access
        if acc == "RWh" and vm["power-state"] != "halted":
            raise bad_power_state(txn, vm, ("halted",))
        if acc == "RWhr" and vm["power-state"] not in ("halted", "running"):
            raise bad_power_state(txn, vm, ("halted", "running"))
    if changes.get("is-a-template") is False and vm["is-a-snapshot"]:
        raise VmctlError("VM_IS_SNAPSHOT", params=[("vm", txn.ref("vm", vm)), ("operation", "is-a-template")])
    new = dict(vm)
    new.update(changes)
    if any(k in changes for k in MEMORY + ("memory-reservation",)):
        check_memory(txn, new)
    if "vcpus" in changes:
        check_vcpus(txn, new)
    if "groups" in changes or "affinity" in changes:
        check_refs(txn, new)
    hooks = txn.cache.get("vm-change-hooks", [])
    for h in hooks:
        h(ctx, vm, changes)


def vm_field_values(ctx: Ctx, pool_uuid: str | None, skip=("name-label", "pool", "memory")) -> dict:
    """Every RW field given to a creating command as key=value (model.md §0)."""
    out: dict = {}
    txn = ctx.txn
    c = CLASSES["vm"]
    for key, text in ctx.raw_pairs:
        if key in skip:
            continue
        mkey = None
        base = key
        if ":" in key:
            base, mkey = key.split(":", 1)
        f = c.fields.get(base)
        if f is None:
            raise VmctlError("UNKNOWN_PARAMETER", params=[("name", key)])
        if not f.writable:
            raise VmctlError("FIELD_READ_ONLY", params=[("class", "vm"), ("field", base)])
        if f.kind == "map":
            if mkey is None:
                raise VmctlError("FIELD_TYPE_ERROR", params=[("field", base)])
            out.setdefault(base, {})[mkey] = text
        else:
            out[base] = parse_value(f, text, txn, pool_uuid, arg=key)
    return out


@command("vm-create", "Create a halted VM without devices; print its uuid", family="vm",
         args=(Arg("name-label", required=True, help="the VM's name"),
               Arg("pool", "ref:pool", help="the pool (default: the affinity host's, else the only pool)", complete="pool"),
               Arg("memory", "size", help="sets all four memory limits")),
         fields_of="vm", flags=("--may-exist",), creates="vm")
def vm_create(ctx: Ctx):
    txn = ctx.txn
    if "pool" in ctx.a:
        pool = txn.resolve_one("pool", ctx.a["pool"])
    elif "affinity" in ctx.raw and ctx.raw["affinity"]:
        pool = txn.get("pool", txn.resolve_one("host", ctx.raw["affinity"])["pool"])
    else:
        pool = only_pool(txn)
    name = ctx.a["name-label"]
    if ctx.flag("may-exist"):
        for v in txn.select("vm", name_label=name, pool=pool["uuid"]):
            return Value(v["uuid"])
    values = vm_field_values(ctx, pool["uuid"])
    if "memory" in ctx.a:
        m = ctx.a["memory"]
        if isinstance(m, tuple):
            raise VmctlError("INVALID_VALUE", params=[("name", "memory"), ("value", ctx.raw["memory"])])
        for f in MEMORY:
            values.setdefault(f, m)
    values.update({"name-label": name, "pool": pool["uuid"], "power-state": "halted"})
    row = {f.name: (values[f.name] if f.name in values else f.empty()) for f in CLASSES["vm"].stored_fields}
    check_vcpus(txn, row)
    check_memory(txn, row)
    check_refs(txn, row)
    for h in txn.cache.get("vm-create-hooks", []):
        h(ctx, row)
    return Value(txn.insert("vm", values))


def destroy_vm_records(txn, vm: dict) -> None:
    """Remove the VM with its VBDs, VIFs and suspend VDI; keep its other VDIs and snapshots."""
    for vbd in txn.select("vbd", vm=vm["uuid"]):
        txn.delete("vbd", vbd["uuid"])
    for vif in txn.select("vif", vm=vm["uuid"]):
        txn.delete("vif", vif["uuid"])
    if vm["suspend-vdi"]:
        hooks = txn.cache.get("vdi-destroy")
        if hooks:
            hooks(txn, vm["suspend-vdi"])
        else:
            txn.delete("vdi", vm["suspend-vdi"])
    txn.delete("vm", vm["uuid"])


@command("vm-destroy", "Remove a halted or suspended VM record (its disks stay)", family="vm",
         args=(Arg("uuid", "uuid", True, "the VM", complete="vm"),), flags=("--if-exists",))
def vm_destroy(ctx: Ctx):
    txn = ctx.txn
    try:
        vm = txn.resolve_one("vm", ctx.a["uuid"])
    except VmctlError as e:
        if ctx.flag("if-exists") and e.code == "UUID_INVALID":
            return None
        raise
    if vm["is-default-template"]:
        raise VmctlError("VM_CANNOT_DELETE_DEFAULT_TEMPLATE", params=[("vm", txn.ref("vm", vm))])
    check_vm_operation(txn, vm, "destroy", ("halted", "suspended"), templates=True, snapshots=True)
    destroy_vm_records(txn, vm)
    return None
