"""VM rules shared by every command that acts on VMs (model.md §0, §1.3, §2, §3.3): the
operation checks in their order, the memory and vCPU limits, VM selection (cli.md §2), and the
power transitions: every move into running or paused goes through :func:`boot` (resident-on,
domid, CPU levelling, then the power-transition hooks that attach VBDs and plug VIFs); every move
out of a host through :func:`leave` (the hooks first). Starts, migration, evacuation and HA
restarts all use both."""

from __future__ import annotations

from vmctl import domains, hooks
from vmctl.admission import admit
from vmctl.commands.table import Ctx
from vmctl.errors import VmctlError
from vmctl.fields import hidden_filter, matches, txn_filters
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
    """model.md §0 check order (3) class, (4) blocked-operations, (5) pending operations,
    (6) power state."""
    if vm["is-a-snapshot"] and not snapshots:
        raise VmctlError("VM_IS_SNAPSHOT", params=[("vm", txn.ref("vm", vm)), ("operation", op)])
    if vm["is-a-template"] and not vm["is-a-snapshot"] and not templates:
        raise VmctlError("VM_IS_TEMPLATE", params=[("vm", txn.ref("vm", vm)), ("operation", op)])
    if op in vm["blocked-operations"]:
        raise VmctlError(
            "OPERATION_BLOCKED",
            params=[("vm", txn.ref("vm", vm)), ("operation", op), ("reason", vm["blocked-operations"][op])],
        )
    txn.check_not_held("vm", vm["uuid"])
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


def destroy_vm_records(txn, vm: dict) -> None:
    """Remove the VM with its VBDs, VIFs and suspend VDI; keep its other VDIs and snapshots."""
    for vbd in txn.select("vbd", vm=vm["uuid"]):
        txn.delete("vbd", vbd["uuid"])
    for vif in txn.select("vif", vm=vm["uuid"]):
        txn.delete("vif", vif["uuid"])
    if vm["suspend-vdi"]:
        destroy_vdi(txn, vm["suspend-vdi"])
    txn.delete("vm", vm["uuid"])


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
    used = capacity.committed_on(txn, host_uuid, policy)
    free = capacity.host_capacity(host) - used
    if added > free:
        raise VmctlError(
            "HOST_NOT_ENOUGH_FREE_MEMORY", params=[("needed", added), ("available", max(0, free))]
        )
    from vmctl.engine_adapter import vm_value

    admit(txn, old["pool"], vm_updates=[vm_value({**new, "uuid": old["uuid"]})])


def select_vms(ctx: Ctx) -> list[dict]:
    """cli.md §2 VM selectors: ``vm=`` and/or field filters, as xe selects VMs. Several matches
    need ``--multiple`` (else MULTIPLE_MATCHES); none fails as an unknown ``vm=`` does
    (UUID_INVALID). Shared by every command that takes a selector."""
    from vmctl import derived

    txn = ctx.txn
    text = ctx.a.get("vm")
    if text is None and not ctx.filters and not ctx.flag("multiple"):
        # xe acts on every VM when no selector is given; vmctl asks for --multiple to say so
        raise VmctlError(
            "MISSING_PARAMETER",
            "Name the VM with vm= or select VMs with field filters (--multiple alone: every VM)",
            [("name", "vm")],
        )
    filter_fields = {f for f, _, _ in ctx.filters}
    shown = (
        " ".join(
            ([text] if text is not None else [])
            + [f"{k}={v}" for k, v in ctx.raw_pairs if k.split(":", 1)[0] in filter_fields]
        )
        or "every VM"
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
        filters = txn_filters(txn, "vm", ctx.filters)
        rows = [r for r in rows if matches("vm", r, filters)]
    if not rows:
        raise VmctlError("UUID_INVALID", f"No VM matches {shown}", [("class", "vm"), ("value", shown)])
    if len(rows) > 1 and not ctx.flag("multiple"):
        raise VmctlError(
            "MULTIPLE_MATCHES",
            f"{len(rows)} VMs match {shown}; add --multiple to act on all of them",
            [("class", "vm"), ("value", shown)],
        )
    return sorted(rows, key=lambda r: (r["name-label"].encode(), r["uuid"]))


def free_domid(txn, host_uuid: str, skip: str | None = None) -> int:
    """The smallest integer ≥ 1 unused by the host's other resident VMs (model.md §1.3)."""
    used = set()
    for st in ("running", "paused"):
        for v in txn.select("vm", resident_on=host_uuid, power_state=st):
            if v["uuid"] != skip:
                used.add(v["domid"])
    d = 1
    while d in used:
        d += 1
    return d


def boot(txn, vm: dict, host_uuid: str, paused: bool = False, record_cpu: bool = True) -> dict:
    """Make a halted or suspended VM resident on a host. A cold boot (start, HA restart) records
    last-boot-cpu-vendor/-flags with CPU levelling (engine.md §1); a resume keeps them."""
    from vmctl.engine_adapter import levelled_flags, sync_vm

    writes_before = txn.writes
    # a resume restores the suspend image (read now: the update below changes `vm` in place)
    image = vm["suspend-vdi"] if vm["power-state"] == "suspended" else ""
    changes: dict = {
        "power-state": "paused" if paused else "running",
        "resident-on": host_uuid,
        "domid": free_domid(txn, host_uuid, vm["uuid"]),
        "scheduled-to-be-resident-on": "",
    }
    if record_cpu:
        vendor, flags = levelled_flags(txn, vm, txn.get("host", host_uuid))
        changes.update({"last-boot-cpu-vendor": vendor, "last-boot-cpu-flags": flags})
    new = txn.update("vm", vm["uuid"], changes)
    hooks.became_resident(txn, new, host_uuid)
    sync_vm(txn, new, writes_before)
    domains.start(txn, new, host_uuid, paused, image)  # a real pool: the domain starts there
    return new


def leave(txn, vm: dict, state: str) -> dict:
    """A running or paused VM leaves its host for halted or suspended: the hooks detach its VBDs
    and VIF ports first, then resident-on clears and domid becomes −1 (model.md §2)."""
    from vmctl.engine_adapter import sync_vm

    writes_before = txn.writes
    if vm["resident-on"]:
        hooks.leaving_host(txn, vm, vm["resident-on"])
    new = txn.update(
        "vm",
        vm["uuid"],
        {"power-state": state, "resident-on": "", "domid": -1, "scheduled-to-be-resident-on": ""},
    )
    sync_vm(txn, new, writes_before)
    return new


def destroy_vdi(txn, vdi_uuid: str) -> None:
    """Through the storage layer (VBDs on it go, chains merge, model.md §3.5)."""
    from vmctl import storage

    row = txn.get("vdi", vdi_uuid)
    if row is not None:
        storage.destroy_vdi(txn, row, check=False)


def discard_suspend_image(txn, vm: dict) -> dict:
    if vm["suspend-vdi"]:
        vdi = vm["suspend-vdi"]
        vm = txn.update("vm", vm["uuid"], {"suspend-vdi": ""})
        destroy_vdi(txn, vdi)
    return vm


def hard_halt(txn, vm: dict) -> dict:
    """vm-shutdown --force: from running, paused or suspended to halted."""
    if vm["power-state"] in ("running", "paused"):
        vm = leave(txn, vm, "halted")
    elif vm["power-state"] == "suspended":
        vm = txn.update("vm", vm["uuid"], {"power-state": "halted"})
        vm = discard_suspend_image(txn, vm)
    return vm
