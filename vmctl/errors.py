"""One error type with a stable code, a message and ordered params.

Every failure a user can cause is raised as :class:`VmctlError` (xe-style commands) or
:class:`OvsError` (ovs-vsctl-style commands, whose text must equal ovs-vsctl's). The CLI turns
them into one stderr line plus ``  key: value`` lines; nothing else ever reaches the user.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_FAILURE = 1
EXIT_BR_MISSING = 2
EXIT_BUSY = 75


@dataclass(frozen=True)
class Ref:
    """A reference to an object inside error params: printed `uuid (name-label)`."""

    cls: str
    uuid: str
    name: str | None = None

    def render(self) -> str:
        if self.name is None:
            return self.uuid
        return f"{self.uuid} ({self.name})"

    def __str__(self) -> str:  # pragma: no cover - convenience
        return self.render()


# Human messages per code. Codes are stable; messages may improve. XAPI's wording where it has one.
MESSAGES: dict[str, str] = {
    "MISSING_PARAMETER": "A required parameter is missing",
    "UNKNOWN_PARAMETER": "Unknown parameter",
    "DUPLICATE_PARAMETER": "The same parameter is given under two names",
    "INVALID_VALUE": "The value given is invalid",
    "UUID_INVALID": "No object of that class has this uuid or name-label",
    "MULTIPLE_MATCHES": "The name matches several objects; use a uuid or --multiple",
    "UNKNOWN_COMMAND": "Unknown command",
    "USAGE": "Invalid command line",
    "HOST_REQUIRED": "Several hosts exist: name one with --host or VMCTL_HOST",
    "POOL_REQUIRED": "Several pools exist: name one with pool=",
    "NOT_IN_SAME_POOL": "The objects belong to different pools",
    "POOL_NOT_EMPTY": "The pool still holds hosts, VMs, SRs or networks",
    "CANNOT_EJECT_MASTER": "The pool master cannot be ejected; designate another master first",
    "HOST_ADDRESS_IN_USE": "Another host already has this address",
    "MAC_IN_USE": "The MAC address is already in use",
    "CONFIRMATION_REQUIRED": "This command destroys objects: confirm with --yes or --force",
    "UNKNOWN_FIELD": "The class has no field of that name",
    "FIELD_READ_ONLY": "The field is read-only",
    "FIELD_TYPE_ERROR": "The field cannot be set that way",
    "MAP_KEY_NOT_FOUND": "The map has no such key",
    "MAP_DUPLICATE_KEY": "The map already has this key",
    "INVENTORY_NOT_EMPTY": "The inventory already holds pools; use --db PATH for a new file",
    "VM_BAD_POWER_STATE": "The VM is not in a power state that allows this operation",
    "VM_IS_TEMPLATE": "The operation is not allowed on a template",
    "VM_IS_SNAPSHOT": "The operation is not allowed on a snapshot",
    "VM_CANNOT_DELETE_DEFAULT_TEMPLATE": "Default templates cannot be destroyed",
    "VM_NO_VCPUS": "A VM needs at least one vCPU",
    "VM_TOO_MANY_VCPUS": "Too many vCPUs for a VM (at most 256)",
    "VM_MEMORY_SIZE_TOO_LOW": "The memory size is below the minimum of 16 MiB",
    "MEMORY_CONSTRAINT_VIOLATION": "Memory limits must satisfy static-min <= dynamic-min <= dynamic-max <= static-max",
    "OPERATION_BLOCKED": "The operation is blocked on this VM",
    "OPERATION_NOT_ALLOWED": "The operation is not allowed",
    "OTHER_OPERATION_IN_PROGRESS": "Another operation is in progress on this object",
    "HOST_NOT_ENOUGH_FREE_MEMORY": "The host does not have enough free memory",
    "HOST_OFFLINE": "The host is offline",
    "HOST_NOT_LIVE": "The host is not live",
    "HOST_DISABLED": "The host is disabled",
    "HOST_NOT_DISABLED": "The host must be disabled first",
    "HOST_HAS_RESIDENT_VMS": "The host still has running or paused VMs",
    "HOST_CANNOT_DESTROY_SELF": "The master of a pool with other hosts cannot be forgotten",
    "DUPLICATE_PIF_DEVICE_NAME": "The host already has a network interface with this device name",
    "HOSTS_NOT_COMPATIBLE": "The hosts are not compatible",
    "HOSTS_NOT_HOMOGENEOUS": "The hosts are not homogeneous",
    "HA_IS_ENABLED": "The operation is not allowed while HA is enabled",
    "SR_FULL": "The storage repository does not have enough free space",
    "INTERNAL_ERROR": "An inventory invariant would be broken; nothing was changed",
    "DATABASE_ERROR": "The inventory database cannot be used",
    "INVENTORY_BUSY": "The inventory stayed locked past the timeout; retrying is safe",
    "SCHEMA_TOO_NEW": "The inventory was written by a newer vmctl",
    "NO_HOSTS_AVAILABLE": "No host can run the VM",
    "BRIDGE_NAME_EXISTS": "A bridge with this name already exists",
}


class VmctlError(Exception):
    """An xe-style failure: ``vmctl: CODE: message`` plus ``  key: value`` lines."""

    exit_code = EXIT_FAILURE

    def __init__(self, code: str, message: str | None = None, params: dict | list | None = None, **kw):
        self.code = code
        self.message = message or MESSAGES.get(code, code.replace("_", " ").capitalize())
        items: list[tuple[str, object]] = []
        if isinstance(params, dict):
            items.extend(params.items())
        elif params:
            items.extend(params)
        items.extend((k.replace("_", "-"), v) for k, v in kw.items())
        self.params = items
        super().__init__(f"{code}: {self.message}")


class BusyError(VmctlError):
    exit_code = EXIT_BUSY

    def __init__(self, seconds: float):
        super().__init__("INVENTORY_BUSY", params=[("timeout", f"{seconds:g}s")])


class OvsError(Exception):
    """An ovs-vsctl-style failure: stderr is exactly ``vmctl: <message>`` (or nothing when
    ``message`` is None, as for ``br-exists`` on a missing bridge, exit 2)."""

    def __init__(self, message: str | None, exit_code: int = EXIT_FAILURE):
        self.message = message
        self.exit_code = exit_code
        super().__init__(message or "")


class UsageError(OvsError):
    """Command-line syntax errors (getopt-style); rendered like ovs-vsctl's."""


class ConfirmationNeeded(Exception):
    """Raised inside a first, rolled-back pass so the CLI can ask the user on a terminal."""

    def __init__(self, what: list[str]):
        self.what = what
        super().__init__("confirmation needed")
