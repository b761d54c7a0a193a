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
from vmctl.operations import (
    OPERATION_STATES,
    UPGRADE_OPERATIONS,
    VM_OPERATIONS,
    allowed_states,
    operation_error,
)

MiB, GiB, TiB = 1024**2, 1024**3, 1024**4
MEMORY = ("memory-static-min", "memory-dynamic-min", "memory-dynamic-max", "memory-static-max")


def bad_power_state(txn, vm: dict, allowed) -> VmctlError:
    """VM_BAD_POWER_STATE [vm, expected, actual], `expected` in the order given (XAPI's order for
    its operations, xapi_vm_lifecycle.report_power_state_error)."""
    expected = ", ".join(allowed)
    return VmctlError(
        "VM_BAD_POWER_STATE",
        f"The VM must be {expected.replace(', ', ' or ')} for this operation (it is {vm['power-state']})",
        [("vm", txn.ref("vm", vm)), ("expected", expected), ("actual", vm["power-state"])],
    )


def rolling_upgrade(txn, pool_uuid: str) -> bool:
    """A rolling pool upgrade is in progress while the pool's hosts run different software
    versions (Helpers.Checks.RPU.pool_has_different_host_platform_versions)."""
    return len({h["software-version"] for h in txn.select("host", pool=pool_uuid)}) > 1


def not_during_upgrade(what: str) -> VmctlError:
    return VmctlError(
        "NOT_SUPPORTED_DURING_UPGRADE",
        f"{what} is not supported while the pool's hosts run different software versions "
        "(a rolling pool upgrade); finish upgrading every host first",
        [],
    )


def check_blocked_operations(blocked: dict) -> None:
    """blocked-operations keys are XAPI's operation names; any other is refused as xe refuses it
    (Record_util.string_to_vm_operation: INVALID_VALUE [blocked_operation, key])."""
    for key in sorted(blocked):
        if key not in VM_OPERATIONS:
            raise VmctlError(
                "INVALID_VALUE",
                f"{key} is not one of XAPI's VM operations (for example start, clean_shutdown, "
                "hard_shutdown, pool_migrate, migrate_send, suspend, snapshot, clone, destroy)",
                [("name", "blocked_operation"), ("value", key)],
            )


def check_vm_operation(
    txn,
    vm: dict,
    op: str,
    states=None,
    templates: bool = False,
    snapshots: bool = False,
    strict: bool = True,
) -> None:
    """Raise the first failing check of one VM operation, in XAPI's order: blocked-operations,
    power state, template, snapshot, mobility, rolling upgrade (see :func:`operation_error` for
    the arguments). An operation in progress (OTHER_OPERATION_IN_PROGRESS), which XAPI checks
    after the power state, is checked before it: vmctl records a long operation's outcome when
    it is decided, so a VM still shutting down already reads halted, and only this order gives
    XAPI's answer (wait for the task) rather than a power state the VM is not yet in."""
    failure = operation_error(vm, op, states, templates, snapshots, strict)
    ref = txn.ref("vm", vm)
    if failure == "blocked":
        reason = vm["blocked-operations"][op]
        raise VmctlError(
            "OPERATION_BLOCKED",
            f"The operation {op} is blocked on this VM: {reason}",
            [("vm", ref), ("operation", op), ("reason", reason)],
        )
    txn.check_not_held("vm", vm["uuid"])
    if failure == "power":
        raise bad_power_state(
            txn, vm, allowed_states(vm, op) if op in OPERATION_STATES else tuple(states or ())
        )
    if failure == "template":
        raise VmctlError("VM_IS_TEMPLATE", params=[("vm", ref), ("operation", op)])
    if failure == "snapshot":
        raise VmctlError("VM_IS_SNAPSHOT", params=[("vm", ref), ("operation", op)])
    if failure == "not-snapshot":
        raise VmctlError(
            "REVERT_ONLY_ALLOWED_ON_SNAPSHOT", "Only a snapshot can be reverted to", [("vm", ref)]
        )
    if failure == "immobile":
        raise VmctlError(
            "VM_IS_IMMOBILE",
            "The VM cannot move: its platform:nomigrate or nested-virt is true",
            [("vm", ref)],
        )
    if op in OPERATION_STATES and op not in UPGRADE_OPERATIONS and rolling_upgrade(txn, vm["pool"]):
        raise not_during_upgrade(f"The VM operation {op}")


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
            # XAPI's code for an unordered set of limits, without params
            # (Xapi_vm_memory_constraints.assert_valid); the message names the broken pair
            raise VmctlError(
                "MEMORY_CONSTRAINT_VIOLATION_ORDER",
                f"Memory limits must satisfy static-min <= dynamic-min <= dynamic-max <= static-max "
                f"({lo} {vm[lo]} > {hi} {vm[hi]})",
                [],
            )
    if vm["memory-reservation"] > vm["memory-dynamic-max"]:
        raise VmctlError(
            "MEMORY_CONSTRAINT_VIOLATION", params=[("constraint", "memory-reservation <= memory-dynamic-max")]
        )


def check_vcpus(txn, vm: dict) -> None:
    """vcpus from 1 (INVALID_VALUE) to 256 (VM_TOO_MANY_VCPUS)."""
    ref = txn.ref("vm", vm) if vm.get("uuid") else None
    if vm["vcpus"] < 1:
        # xapi_vm.set_VCPUs_max: INVALID_VALUE, not VM_NO_VCPUS (which XAPI never raises)
        raise VmctlError(
            "INVALID_VALUE", "A VM needs at least one vCPU", [("name", "vcpus"), ("value", vm["vcpus"])]
        )
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
