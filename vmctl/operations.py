"""XAPI's VM operations (xapi-project/xen-api, xapi_vm_lifecycle.ml): their names, the power
states each allows, what templates, snapshots and immobile VMs may do, what a rolling upgrade
still allows, and the checks of one operation that read the VM alone. A module of plain tables
and functions of a VM row, so the rules (vmctl/vms.py) and the derived field allowed-operations
(vmctl/derived.py) read the same ones."""

from __future__ import annotations

ALL_STATES = ("halted", "paused", "suspended", "running")  # allowed_power_states' own order

#: The power states each of XAPI's VM operations allows, in XAPI's order
#: (xapi_vm_lifecycle.allowed_power_states): VM_BAD_POWER_STATE's `expected` lists them so.
OPERATION_STATES: dict[str, tuple[str, ...]] = {
    "start": ("halted",),
    "start_on": ("halted",),
    "make_into_template": ("halted",),
    "changing_VCPUs": ("halted",),
    "changing_static_range": ("halted",),
    "changing_memory_limits": ("halted",),
    "unpause": ("paused",),
    "resume": ("suspended",),
    "resume_on": ("suspended",),
    "clean_reboot": ("running",),
    "clean_shutdown": ("running",),
    "pause": ("running",),
    "pool_migrate": ("running",),
    "suspend": ("running",),
    "changing_dynamic_range": ("halted", "running"),
    "clone": ("halted",),  # and suspended, for a snapshot source (below)
    "copy": ("halted",),
    "destroy": ("halted", "suspended"),
    "hard_reboot": ("paused", "running"),
    "checkpoint": ("paused", "suspended", "running"),
    "hard_shutdown": ("paused", "suspended", "running"),
    "migrate_send": ("halted", "suspended", "running"),
    "power_state_reset": ALL_STATES,
    "revert": ALL_STATES,
    "snapshot": ALL_STATES,
}

#: Every name of XAPI's vm_operations enum (datamodel_vm.ml; xapi_vm_lifecycle
#: .allowed_power_states matches each one): the keys blocked-operations takes, each blocking the
#: operation of that name. xe's own table (Record_util.vm_operation_table) lacks a few
#: (changing_VCPUs, changing_memory_limits, create_template, query_services) that the API takes.
VM_OPERATIONS = frozenset(OPERATION_STATES) | frozenset(
    (
        "assert_operation_valid",
        "awaiting_memory_live",
        "call_plugin",
        "changing_NVRAM",
        "changing_VCPUs_live",
        "changing_memory_live",
        "changing_shadow_memory",
        "changing_shadow_memory_live",
        "create_template",
        "create_vtpm",
        "csvm",
        "data_source_op",
        "export",
        "get_boot_record",
        "import",
        "metadata_export",
        "provision",
        "query_services",
        "reverting",
        "send_sysrq",
        "send_trigger",
        "shutdown",
        "snapshot_with_quiesce",
        "sysprep",
        "update_allowed_operations",
    )
)

#: What a template allows (xapi_vm_lifecycle.check_template); destroy and migrate_send too,
#: unless it is a default template.
TEMPLATE_OPERATIONS = frozenset(
    ("changing_dynamic_range", "changing_static_range", "changing_memory_limits", "changing_VCPUs")
    + ("clone", "copy", "export", "metadata_export", "provision")
)
#: What a snapshot allows (xapi_vm_lifecycle.check_snapshot).
SNAPSHOT_OPERATIONS = frozenset(("revert", "clone", "copy", "export", "destroy", "hard_shutdown"))
#: What an immobile VM (platform:nomigrate) refuses (xapi_vm_lifecycle.check_operation_error).
MOBILITY_OPERATIONS = frozenset(("suspend", "checkpoint", "pool_migrate", "migrate_send"))
#: What a rolling pool upgrade still allows (Xapi_globs.rpu_allowed_vm_operations).
UPGRADE_OPERATIONS = frozenset(
    ("clean_reboot", "clean_shutdown", "clone", "copy", "destroy", "hard_reboot", "hard_shutdown")
    + ("make_into_template", "migrate_send", "pause", "pool_migrate", "power_state_reset", "provision")
    + ("resume", "resume_on", "start", "start_on", "suspend", "unpause", "export")
)


def allowed_states(vm: dict, op: str) -> tuple[str, ...]:
    """The states XAPI allows `op` in; a snapshot (a checkpoint) is also cloned suspended."""
    states = OPERATION_STATES[op]
    if op in ("clone", "copy") and vm["is-a-snapshot"]:
        states = ("halted", "suspended")
    return states


def immobile(vm: dict) -> bool:
    """Not to be moved (xapi_vm_lifecycle.is_mobile): platform:nomigrate or platform:nested-virt
    true or 1 (Vm_platform.is_true)."""
    platform = vm["platform"]
    return any(str(platform.get(key, "")).lower() in ("true", "1") for key in ("nomigrate", "nested-virt"))


def operation_error(
    vm: dict, op: str, states=None, templates: bool = False, snapshots: bool = False, strict: bool = True
) -> str | None:
    """The first of XAPI's checks of one VM operation that reads the VM alone and fails
    (xapi_vm_lifecycle.check_operation_error, in its order): "blocked", "power", "template",
    "snapshot", "not-snapshot" (revert) or "immobile"; None when they pass. `op` is XAPI's operation name for the
    operations XAPI has (their states, template and snapshot rules come from the tables above);
    vmctl's own device commands pass their states and whether templates and snapshots may do
    them. `strict=False` (vm-migrate --force) lets an immobile VM move, as XAPI's pool_migrate
    ~strict:(not force) does."""
    if op in vm["blocked-operations"]:
        return "blocked"
    xapi_op = op in OPERATION_STATES
    if vm["power-state"] not in (allowed_states(vm, op) if xapi_op else tuple(states or ())):
        return "power"
    if vm["is-a-template"] and not vm["is-a-snapshot"]:
        if xapi_op:
            ok = op in TEMPLATE_OPERATIONS or (
                op in ("destroy", "migrate_send") and not vm["is-default-template"]
            )
        else:
            ok = templates
        if not ok:
            return "template"
    if vm["is-a-snapshot"] and not (op in SNAPSHOT_OPERATIONS if xapi_op else snapshots):
        return "snapshot"
    if op == "revert" and not vm["is-a-snapshot"]:
        return "not-snapshot"
    if op in MOBILITY_OPERATIONS and strict and immobile(vm):
        return "immobile"
    return None


#: XAPI's operations vmctl implements that allowed-operations lists: XAPI leaves out
#: changing_VCPUs, changing_memory_limits and power_state_reset
#: (xapi_vm_lifecycle.ignored_ops), though they stay valid.
ALLOWABLE = (
    "changing_dynamic_range",
    "changing_static_range",
    "checkpoint",
    "clean_reboot",
    "clean_shutdown",
    "clone",
    "copy",
    "destroy",
    "hard_reboot",
    "hard_shutdown",
    "make_into_template",
    "migrate_send",
    "pause",
    "pool_migrate",
    "resume",
    "resume_on",
    "revert",
    "snapshot",
    "start",
    "start_on",
    "suspend",
    "unpause",
)


def allowed_operations(vm: dict, held: bool = False, upgrading: bool = False) -> list[str]:
    """XAPI's VM.allowed_operations (xapi_vm_lifecycle.update_allowed_operations): the
    operations of ALLOWABLE whose checks pass now, by name. While a pending task holds the VM
    (its current-operations) none does: vmctl runs no operation beside another
    (OTHER_OPERATION_IN_PROGRESS; README: Differences from XAPI). During a rolling upgrade only
    those Xapi_globs.rpu_allowed_vm_operations names."""
    if held:
        return []
    ops = (op for op in ALLOWABLE if operation_error(vm, op) is None)
    return sorted(op for op in ops if not upgrading or op in UPGRADE_OPERATIONS)
