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
    return VmctlError(
        "VM_BAD_POWER_STATE",
        f"The VM must be {expected.replace(', ', ' or ')} for this operation (it is {vm['power-state']})",
        [("vm", txn.ref("vm", vm)), ("expected", expected), ("actual", vm["power-state"])],
    )


def check_vm_operation(
    txn, vm: dict, op: str, allowed_states, templates: bool = False, snapshots: bool = False
) -> None:
    """model.md §0 check order (3) class, (4) blocked-operations, (6) power state."""
    if vm["is-a-snapshot"] and not snapshots:
        raise VmctlError("VM_IS_SNAPSHOT", params=[("vm", txn.ref("vm", vm)), ("operation", op)])
    if vm["is-a-template"] and not vm["is-a-snapshot"] and not templates:
        raise VmctlError("VM_IS_TEMPLATE", params=[("vm", txn.ref("vm", vm)), ("operation", op)])
    if op in vm["blocked-operations"]:
        raise VmctlError(
            "OPERATION_BLOCKED",
            params=[("vm", txn.ref("vm", vm)), ("operation", op), ("reason", vm["blocked-operations"][op])],
        )
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
        raise VmctlError(
            "MEMORY_CONSTRAINT_VIOLATION", params=[("constraint", "memory-reservation <= memory-dynamic-max")]
        )


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
            raise VmctlError(
                "NOT_IN_SAME_POOL",
                params=[("object", txn.ref("vm-group", grp)), ("pool", txn.ref("pool", pool))],
            )
    if vm["affinity"]:
        h = txn.get("host", vm["affinity"])
        if h is not None and h["pool"] != pool:
            raise VmctlError(
                "NOT_IN_SAME_POOL", params=[("object", txn.ref("host", h)), ("pool", txn.ref("pool", pool))]
            )


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
    if changes.get("order", 0) < 0:
        raise VmctlError(
            "INVALID_VALUE", "order is an integer ≥ 0", [("name", "order"), ("value", changes["order"])]
        )
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
    if row["order"] < 0:
        raise VmctlError(
            "INVALID_VALUE", "order is an integer ≥ 0", [("name", "order"), ("value", row["order"])]
        )
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
    if vm["is-default-template"]:
        raise VmctlError("VM_CANNOT_DELETE_DEFAULT_TEMPLATE", params=[("vm", txn.ref("vm", vm))])
    check_vm_operation(txn, vm, "destroy", ("halted", "suspended"), templates=True, snapshots=True)
    destroy_vm_records(txn, vm)
    return None


# --- memory and vCPU commands (model.md §3.4, §3.9) ---------------------------------------------------------
def check_growth(txn, old: dict, new: dict) -> None:
    """A resident VM's added charge must fit its host (HOST_NOT_ENOUGH_FREE_MEMORY [needed,
    available]); under HA, growing a running VM is admitted like a start (engine.md §3.4)."""
    from vmctl import capacity

    host_uuid = old["resident-on"]
    if old["power-state"] not in ("running", "paused") or not host_uuid:
        return
    policy = txn.get("pool", old["pool"])["memory-overcommit-policy"]
    added = capacity.vm_charge(new, policy) - capacity.vm_charge(old, policy)
    if added <= 0:
        return
    host = txn.get("host", host_uuid)
    used = sum(
        capacity.vm_charge(v, policy)
        for st in capacity.RESIDENT
        for v in txn.select("vm", resident_on=host_uuid, power_state=st)
    )
    free = capacity.host_capacity(host) - used
    if added > free:
        raise VmctlError(
            "HOST_NOT_ENOUGH_FREE_MEMORY", params=[("needed", added), ("available", max(0, free))]
        )
    from vmctl.commands.ha import admit
    from vmctl.engine_adapter import vm_value

    admit(txn, old["pool"], vm_updates=[vm_value({**new, "uuid": old["uuid"]})])


@param_hook("vm")
def _vm_growth_rule(ctx: Ctx, vm: dict, changes: dict) -> None:
    """param-set of dynamic memory or memory-reservation on a running VM: same capacity rule as
    vm-memory-dynamic-range-set."""
    if any(k in changes for k in MEMORY + ("memory-reservation",)):
        check_growth(ctx.txn, vm, {**vm, **changes})


def _memory_change(ctx: Ctx, op: str, allowed, values: dict) -> None:
    txn = ctx.txn
    vm = txn.resolve_one("vm", ctx.a["vm"])
    check_vm_operation(txn, vm, op, allowed, templates=True)
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
    _memory_change(ctx, "memory-set", ("halted",), {f: m for f in MEMORY})


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
        "memory-limits-set",
        ("halted",),
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
        "memory-static-range-set",
        ("halted",),
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
        "memory-dynamic-range-set",
        ("halted", "running"),
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
    check_vm_operation(txn, vm, "vcpus-set", ("halted",), templates=True)
    check_vcpus(txn, {**vm, "vcpus": ctx.a["vcpus"]})
    if vm["vcpus"] != ctx.a["vcpus"]:
        txn.update("vm", vm["uuid"], {"vcpus": ctx.a["vcpus"]})


# --- vm-install (model.md §3.3) --------------------------------------------------------------------------------
def resolve_template(txn, text: str) -> dict:
    """A template by uuid or by a name-label unique among templates (not snapshots)."""
    from vmctl.units import is_uuid

    if text.startswith("@") or is_uuid(text):
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
    from vmctl.commands import vmstorage  # the storage layer's VM copies (vm-clone / vm-copy)

    disk_srs = {txn.get("vdi", b["vdi"])["sr"] for b in disks if txn.get("vdi", b["vdi"])}
    if sr is not None and disks and disk_srs != {sr["uuid"]}:
        new = vmstorage.copy_vm(txn, tpl, name, sr["uuid"], quiet=bool(ctx.opts.get("quiet")))
    else:
        new = vmstorage.clone_vm(txn, tpl, name, quiet=bool(ctx.opts.get("quiet")))
    changes = {"is-a-template": False, "name-label": name}
    if "new-name-description" in ctx.a:
        changes["name-description"] = ctx.a["new-name-description"]
    txn.update("vm", new, changes)
    return Value(new)


def select_vms(ctx: Ctx) -> list[dict]:
    """cli.md §2 VM selectors: ``vm=`` and/or field filters, as xe selects VMs. Several matches
    need ``--multiple`` (else MULTIPLE_MATCHES); none fails as an unknown ``vm=`` does
    (UUID_INVALID). Shared by every command that takes a selector."""
    from vmctl import derived
    from vmctl.commands.fields import matches
    from vmctl.commands.generic import hidden_filter

    txn = ctx.txn
    text = ctx.a.get("vm")
    if text is None and not ctx.filters:
        raise VmctlError(
            "MISSING_PARAMETER", "Name the VM with vm= or select VMs with field filters", [("name", "vm")]
        )
    filter_fields = {f for f, _, _ in ctx.filters}
    shown = " ".join(
        ([text] if text is not None else [])
        + [f"{k}={v}" for k, v in ctx.raw_pairs if k.split(":", 1)[0] in filter_fields]
    )
    if text is not None:
        rows = txn.resolve("vm", text, multiple=True)
    else:
        rows = txn.all("vm")
        keep = hidden_filter("vm", ctx, ctx.filters)
        if keep is not None:
            rows = [r for r in rows if keep(r)]
    if ctx.filters:
        need = {f for f in filter_fields if not CLASSES["vm"].fields[f].stored}
        if need:
            derived.fill(txn, "vm", rows, need)
        rows = [r for r in rows if matches("vm", r, ctx.filters)]
    if not rows:
        raise VmctlError("UUID_INVALID", f"No VM matches {shown}", [("class", "vm"), ("value", shown)])
    if len(rows) > 1 and not ctx.flag("multiple"):
        raise VmctlError(
            "MULTIPLE_MATCHES",
            f"{len(rows)} VMs match {shown}; add --multiple to act on all of them",
            [("class", "vm"), ("value", shown)],
        )
    return sorted(rows, key=lambda r: (r["name-label"].encode(), r["uuid"]))
