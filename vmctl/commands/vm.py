"""VMs (model.md §1.3, §2, §3.3): vm-create, vm-destroy, the memory and vCPU commands,
vm-install, and the VM field rules vm-param-set applies. The checks every VM operation runs, in
order, are the service's (vmctl/vms.py)."""

from __future__ import annotations

from vmctl.commands.table import Arg, Ctx, Value, command
from vmctl.copies import clone_vm, copy_vm
from vmctl.errors import VmctlError
from vmctl.fields import field_named, param_hook, parse_value
from vmctl.model import CLASSES
from vmctl.pools import only_pool
from vmctl.vms import (
    MEMORY,
    bad_power_state,
    check_blocked_operations,
    check_growth,
    check_memory,
    check_refs,
    check_vcpus,
    check_vm_operation,
    destroy_vm_records,
)

MiB, GiB, TiB = 1024**2, 1024**3, 1024**4


#: The XAPI operation a param-set of these fields is (xe's vm-param-set calls VM.set_VCPUs_max,
#: VM.set_memory_static_range, VM.set_memory_dynamic_range, VM.set_is_a_template true): its
#: blocked-operations key, power states and template rules apply.
FIELD_OPERATIONS = {
    "vcpus": "changing_VCPUs",
    "memory-static-min": "changing_static_range",
    "memory-static-max": "changing_static_range",
    "memory-dynamic-min": "changing_dynamic_range",
    "memory-dynamic-max": "changing_dynamic_range",
}


@param_hook("vm")
def _vm_param_rules(ctx: Ctx, vm: dict, changes: dict) -> None:
    txn = ctx.txn
    f = CLASSES["vm"].fields
    ops = {FIELD_OPERATIONS[name] for name in changes if name in FIELD_OPERATIONS}
    if changes.get("is-a-template") is True and not vm["is-a-template"]:
        ops.add("make_into_template")
    for op in sorted(ops):
        check_vm_operation(txn, vm, op)
    if "blocked-operations" in changes:
        check_blocked_operations(changes["blocked-operations"])
    for name in changes:
        if name in FIELD_OPERATIONS:
            continue
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
    if changes.get("order", 0) < 0:
        raise VmctlError(
            "INVALID_VALUE", "order is an integer ≥ 0", [("name", "order"), ("value", changes["order"])]
        )
    if "groups" in changes or "affinity" in changes:
        check_refs(txn, new)


def vm_field_values(ctx: Ctx, pool_uuid: str | None, skip=("name-label", "pool", "memory")) -> dict:
    """Every RW field given to a creating command as key=value (model.md §0)."""
    out: dict = {}
    txn = ctx.txn
    for key, text in ctx.raw_pairs:
        if key in skip:
            continue
        mkey = None
        base = key
        if ":" in key:
            base, mkey = key.split(":", 1)
        f = field_named("vm", base)  # vmctl's or xe's name (VCPUs-max=2)
        if f is None:
            raise VmctlError("UNKNOWN_PARAMETER", params=[("name", key)])
        if not f.writable:
            raise VmctlError("FIELD_READ_ONLY", params=[("class", "vm"), ("field", f.name)])
        if f.kind == "map":
            if mkey is None:
                raise VmctlError("FIELD_TYPE_ERROR", params=[("field", f.name)])
            out.setdefault(f.name, {})[mkey] = text
        else:
            out[f.name] = parse_value(f, text, txn, pool_uuid, arg=key, cls="vm")
    return out


@command(
    "vm-create",
    "Create a halted VM without devices; print its uuid",
    family="vm",
    args=(
        Arg("name-label", required=True, help="the VM's name"),
        Arg(
            "pool",
            "ref:pool",
            help="the pool (default: the affinity host's, else the only pool)",
            complete="pool",
        ),
        Arg("memory", "size", help="sets all four memory limits"),
    ),
    fields_of="vm",
    flags=("--may-exist",),
    creates="vm",
)
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
    check_blocked_operations(row["blocked-operations"])
    if row["order"] < 0:
        raise VmctlError(
            "INVALID_VALUE", "order is an integer ≥ 0", [("name", "order"), ("value", row["order"])]
        )
    return Value(txn.insert("vm", values))


@command(
    "vm-destroy",
    "Remove a halted or suspended VM record (its disks stay)",
    family="vm",
    args=(Arg("uuid", "uuid", True, "the VM", complete="vm"),),
    flags=("--if-exists",),
)
def vm_destroy(ctx: Ctx):
    txn = ctx.txn
    vm = ctx.unless_missing(lambda: txn.resolve_one("vm", ctx.a["uuid"]))
    if vm is None:
        return None
    check_vm_operation(txn, vm, "destroy")  # a default template: VM_IS_TEMPLATE (check_template)
    destroy_vm_records(txn, vm)
    return None


# --- memory and vCPU commands (model.md §3.4, §3.9) ---------------------------------------------------------


@param_hook("vm")
def _vm_growth_rule(ctx: Ctx, vm: dict, changes: dict) -> None:
    """param-set of dynamic memory or memory-reservation on a running VM: same capacity rule as
    vm-memory-dynamic-range-set."""
    if any(k in changes for k in MEMORY + ("memory-reservation",)):
        check_growth(ctx.txn, vm, {**vm, **changes})


def _memory_change(ctx: Ctx, op: str, values: dict) -> None:
    """op: XAPI's operation (changing_memory_limits, changing_static_range,
    changing_dynamic_range), whose states and template rule apply."""
    txn = ctx.txn
    vm = txn.resolve_one("vm", ctx.a["vm"])
    check_vm_operation(txn, vm, op)
    for k, v in ctx.a.items():
        if isinstance(v, tuple):  # a relative size (+N) is not accepted here
            raise VmctlError("INVALID_VALUE", params=[("name", k), ("value", ctx.raw.get(k))])
    new = dict(vm)
    new.update(values)
    check_memory(txn, new)
    check_growth(txn, vm, new)
    txn.update("vm", vm["uuid"], values)


_VMARG = Arg("vm", "ref:vm", True, "the VM: uuid or name-label", complete="vm")


@command(
    "vm-memory-set",
    "Set all four memory limits of a halted VM",
    family="vm",
    args=(_VMARG, Arg("memory", "size", True, "static-min = dynamic-min = dynamic-max = static-max")),
)
def vm_memory_set(ctx: Ctx):
    m = ctx.a["memory"]
    if isinstance(m, tuple):  # a relative size (+N) is not accepted here
        raise VmctlError("INVALID_VALUE", params=[("name", "memory"), ("value", ctx.raw.get("memory"))])
    _memory_change(ctx, "changing_memory_limits", {f: m for f in MEMORY})


@command(
    "vm-memory-limits-set",
    "Set the four memory limits of a halted VM",
    family="vm",
    args=(
        _VMARG,
        Arg("static-min", "size", True, "memory-static-min"),
        Arg("dynamic-min", "size", True, "memory-dynamic-min"),
        Arg("dynamic-max", "size", True, "memory-dynamic-max"),
        Arg("static-max", "size", True, "memory-static-max"),
    ),
)
def vm_memory_limits_set(ctx: Ctx):
    a = ctx.a
    _memory_change(
        ctx,
        "changing_memory_limits",
        {
            "memory-static-min": a["static-min"],
            "memory-dynamic-min": a["dynamic-min"],
            "memory-dynamic-max": a["dynamic-max"],
            "memory-static-max": a["static-max"],
        },
    )


@command(
    "vm-memory-static-range-set",
    "Set memory-static-min and -max of a halted VM",
    family="vm",
    args=(
        _VMARG,
        Arg("min", "size", True, "memory-static-min"),
        Arg("max", "size", True, "memory-static-max"),
    ),
)
def vm_memory_static_range_set(ctx: Ctx):
    _memory_change(
        ctx,
        "changing_static_range",
        {"memory-static-min": ctx.a["min"], "memory-static-max": ctx.a["max"]},
    )


@command(
    "vm-memory-dynamic-range-set",
    "Set memory-dynamic-min and -max of a halted or running VM "
    "(a running VM's added charge must fit its host)",
    family="vm",
    args=(
        _VMARG,
        Arg("min", "size", True, "memory-dynamic-min"),
        Arg("max", "size", True, "memory-dynamic-max"),
    ),
)
def vm_memory_dynamic_range_set(ctx: Ctx):
    _memory_change(
        ctx,
        "changing_dynamic_range",
        {"memory-dynamic-min": ctx.a["min"], "memory-dynamic-max": ctx.a["max"]},
    )


@command(
    "vm-vcpus-set",
    "Set the number of vCPUs of a halted VM (1-256)",
    family="vm",
    args=(_VMARG, Arg("vcpus", "int", True, "vCPUs, 1 to 256")),
)
def vm_vcpus_set(ctx: Ctx):
    txn = ctx.txn
    vm = txn.resolve_one("vm", ctx.a["vm"])
    check_vm_operation(txn, vm, "changing_VCPUs")
    check_vcpus(txn, {**vm, "vcpus": ctx.a["vcpus"]})
    if vm["vcpus"] != ctx.a["vcpus"]:
        txn.update("vm", vm["uuid"], {"vcpus": ctx.a["vcpus"]})


# --- vm-install (model.md §3.3) --------------------------------------------------------------------------------
def resolve_template(txn, text: str) -> dict:
    """A template by uuid or by a name-label unique among templates (not snapshots)."""
    from vmctl.units import is_uuid

    if text in txn.refs or is_uuid(text):
        try:
            row = txn.resolve_one("vm", text, label="template")
        except VmctlError:
            row = None
        if row is not None and row["is-a-template"] and not row["is-a-snapshot"]:
            return row
        raise VmctlError(
            "UUID_INVALID", f"No template is known as {text}", [("class", "template"), ("value", text)]
        )
    rows = [r for r in txn.select("vm", name_label=text, is_a_template=True) if not r["is-a-snapshot"]]
    if not rows:
        raise VmctlError(
            "UUID_INVALID", f"No template is named {text}", [("class", "template"), ("value", text)]
        )
    if len(rows) > 1:
        raise VmctlError(
            "MULTIPLE_MATCHES",
            f"{len(rows)} templates are named {text}",
            [("class", "template"), ("value", text)],
        )
    return rows[0]


@command(
    "vm-install",
    "Create a VM from a template (a clone, or a copy onto sr-uuid); print its uuid",
    family="vm",
    args=(
        Arg("template", "string", True, "the template: uuid or unique name-label", complete="vm"),
        Arg("new-name-label", "string", True, "the new VM's name"),
        Arg("sr-uuid", "ref:sr", help="copy the disks onto this SR", complete="sr"),
        Arg("new-name-description", "string", help="the new VM's description"),
    ),
    creates="vm",
    # xe's vm-install names the template and the SR these ways too
    aliases={
        "template-uuid": "template",
        "template-name-label": "template",
        "template-name": "template",
        "sr-name-label": "sr-uuid",
    },
)
def vm_install(ctx: Ctx):
    txn = ctx.txn
    tpl = resolve_template(txn, ctx.a["template"])
    name = ctx.a["new-name-label"]
    disks = [b for b in txn.select("vbd", vm=tpl["uuid"]) if b["vdi"]]
    sr = txn.resolve_one("sr", ctx.a["sr-uuid"]) if "sr-uuid" in ctx.a else None
    if sr is not None and sr["pool"] != tpl["pool"]:
        raise VmctlError(
            "NOT_IN_SAME_POOL", params=[("object", txn.ref("sr", sr)), ("pool", txn.ref("pool", tpl["pool"]))]
        )

    disk_srs = {txn.get("vdi", b["vdi"])["sr"] for b in disks if txn.get("vdi", b["vdi"])}
    if sr is not None and disks and disk_srs != {sr["uuid"]}:
        new = copy_vm(txn, tpl, name, sr["uuid"], quiet=bool(ctx.opts.get("quiet")))
    else:
        new = clone_vm(txn, tpl, name, quiet=bool(ctx.opts.get("quiet")))
    changes = {"is-a-template": False, "name-label": name}
    if "new-name-description" in ctx.a:
        changes["name-description"] = ctx.a["new-name-description"]
    txn.update("vm", new, changes)
    return Value(new)


@command(
    "template-uninstall",
    "Destroy a custom template with the disks it owns (asks for confirmation; as vm-uninstall)",
    family="vm",
    args=(Arg("template-uuid", "uuid", True, "the template", complete="template"),),
    flags=("--force",),
)
def template_uninstall(ctx: Ctx):
    from vmctl.commands.vmpower import vm_uninstall

    txn = ctx.txn
    tpl = txn.resolve_one("vm", ctx.a["template-uuid"], label="template")
    if not tpl["is-a-template"] or tpl["is-a-snapshot"]:
        raise VmctlError(
            "VM_IS_NOT_A_TEMPLATE", params=[("vm", txn.ref("vm", tpl)), ("operation", ctx.cmd.name)]
        )
    ctx.a, ctx.filters = {"vm": tpl["uuid"]}, []
    return vm_uninstall(ctx)
