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
    "UNKNOWN_PARAMETER": "The command does not take this parameter; vmctl help COMMAND lists its parameters",
    "DUPLICATE_PARAMETER": "The same parameter is given under two names; give it once",
    "INVALID_VALUE": "The value given is invalid",
    "UUID_INVALID": "No object of that class has this uuid or name-label",
    "MULTIPLE_MATCHES": "The name matches several objects; use a uuid or --multiple",
    "UNKNOWN_COMMAND": "There is no such command; vmctl --help lists every command",
    "USAGE": "Invalid command line",
    "HOST_REQUIRED": "Several hosts exist: name one with --host or VMCTL_HOST",
    "POOL_REQUIRED": "Several pools exist: name one with pool=",
    "NOT_IN_SAME_POOL": "The objects belong to different pools",
    "POOL_NOT_EMPTY": "The pool still holds hosts, VMs, SRs or networks",
    "CANNOT_EJECT_MASTER": "The pool master cannot be ejected; designate another master first",
    "HOST_ADDRESS_IN_USE": "Another host already has this address",
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
    "VM_TOO_MANY_VCPUS": "Too many vCPUs for a VM (at most 256)",
    "VM_MEMORY_SIZE_TOO_LOW": "The memory size is below the minimum of 16 MiB",
    "MEMORY_CONSTRAINT_VIOLATION": "A memory limit breaks a constraint (memory-reservation <= memory-dynamic-max)",
    "MEMORY_CONSTRAINT_VIOLATION_ORDER": "Memory limits must satisfy static-min <= dynamic-min <= dynamic-max <= static-max",
    "OPERATION_BLOCKED": "The operation is blocked on this VM (its blocked-operations); remove the key to allow it",
    "NOT_SUPPORTED_DURING_UPGRADE": "Not supported while the pool's hosts run different software versions (a rolling upgrade); upgrade every host first",
    "REVERT_ONLY_ALLOWED_ON_SNAPSHOT": "Only a snapshot can be reverted to; name a snapshot",
    "OPERATION_NOT_ALLOWED": "The operation is not allowed",
    "OTHER_OPERATION_IN_PROGRESS": "Another operation is in progress on this object; wait for its task to finish (task-list)",
    "DRIVER_ERROR": "A host refused or failed the action; nothing was changed (the message gives the host's reason)",
    "DRIVER_UNAVAILABLE": "The driver this pool needs is not installed",
    "VM_SHUTDOWN_TIMEOUT": "The guest did not shut down in time and still runs; vm-shutdown --force halts it at once",
    "HOST_NOT_ENOUGH_FREE_MEMORY": "The host does not have enough free memory",
    "HOST_OFFLINE": "The host is offline",
    "HOST_NOT_LIVE": "The host is not live",
    "HOST_DISABLED": "The host is disabled",
    "HOST_NOT_DISABLED": "The host must be disabled first",
    "HOST_HAS_RESIDENT_VMS": "The host still has running or paused VMs",
    "HOST_IS_LIVE": "The host is live (or the pool master); only a host that is not live can be forgotten",
    "HOST_EVACUATE_VM_NOT_HA_PROTECTED": "HA is enabled and the VM is not protected; shut it down or suspend it before evacuating the host",
    "DUPLICATE_PIF_DEVICE_NAME": "The host already has a network interface with this device name",
    "HOSTS_NOT_COMPATIBLE": "The hosts are not compatible",
    "HOSTS_NOT_HOMOGENEOUS": "The hosts are not homogeneous",
    "HA_IS_ENABLED": "The operation is not allowed while HA is enabled",
    "SR_FULL": "The storage repository does not have enough free space",
    "INTERNAL_ERROR": "An inventory invariant would be broken; nothing was changed",
    # printed by the manager's client (vmctl/daemon/client.py, which imports nothing of vmctl's)
    "MANAGER_ENDED": "The manager ended while running the command; what it had not committed was not",
    "DATABASE_ERROR": "The inventory database cannot be used",
    "INVENTORY_BUSY": "The inventory stayed locked past the timeout; retrying is safe",
    "SCHEMA_TOO_NEW": "The inventory was written by a newer vmctl",
    "SCHEMA_TOO_OLD": "The inventory's schema is older than this vmctl's; run any write command to upgrade it",
    "NO_HOSTS_AVAILABLE": "No host can run the VM",
    "BRIDGE_NAME_EXISTS": "A bridge with this name already exists",
    "OVS_ERROR": "The bridge command failed; see the message for what ovs-vsctl would say",
    # Placement and relocation (engine filters, evacuation, waves)
    "CANNOT_EVACUATE_HOST": "The host cannot be evacuated: move or shut down the VMs listed, then retry",
    "HOST_EVACUATE_IN_PROGRESS": "The host is being evacuated; choose another host",
    "HOST_NOT_ENOUGH_PCPUS": "The VM has more vCPUs than the host has physical CPUs; give it fewer vCPUs or choose a larger host",
    "HOST_NOT_ENOUGH_VCPUS": "The host has too few free vCPUs for the VM; choose another host or stop VMs on it",
    "VM_GROUP_RULE_VIOLATED": "The VM's group placement rule forbids this host; choose another host or relax the rule (strict=false)",
    "VM_INCOMPATIBLE_WITH_THIS_HOST": "The VM's CPU requirements are not met by this host; choose a compatible host",
    "VM_REQUIRES_NETWORK": "The host cannot reach a network the VM needs; choose a host connected to it",
    "VM_REQUIRES_SR": "The host cannot reach a storage repository the VM needs; choose a host that can, or move the disks",
    "VM_IS_IMMOBILE": "The VM cannot be migrated (for example platform:nomigrate or a local device); shut it down or use --force where allowed",
    "MIGRATION_WOULD_NOT_CONVERGE": "The migration is predicted not to converge; raise the bandwidth or the downtime, or use --force",
    "TOO_MANY_MIGRATIONS": "Too many migrations would use this resource at once; wait for some to finish",
    # HA
    "HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED": "An HA-protected VM needs its disks on shared storage; move them to a shared SR or lower its restart priority",
    "HA_CONSTRAINT_VIOLATION_NETWORK_NOT_SHARED": "An HA-protected VM needs networks every host reaches; connect the network on all hosts or lower its restart priority",
    "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN": "The operation would leave too little capacity for the HA failover plan; add capacity or lower ha-host-failures-to-tolerate",
    "CANNOT_CREATE_STATE_FILE": "No SR can hold the HA statefile; attach an nfs, iscsi, ext or file SR with 3,808 MiB free to every host",
    "SR_SOURCE_SPACE_INSUFFICIENT": "The SR has too little free space for this",
    "HA_CANNOT_CHANGE_BOND_STATUS_OF_MGMT_IFACE": "The bond status of the management interface cannot change while HA is enabled; disable HA first",
    # Pool join
    "JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS": "The joining host is the master of other hosts; eject them from its pool first",
    "JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS": "The joining host has shared SRs; forget them before joining",
    "JOINING_HOST_CANNOT_HAVE_RUNNING_VMS": "The joining host has running VMs; shut them down or move them first",
    "JOINING_HOST_CANNOT_HAVE_VMS_WITH_CURRENT_OPERATIONS": "The joining host has VMs with operations in progress; wait for them to finish",
    "POOL_JOINING_HOST_HAS_BONDS": "The joining host has bonds; destroy them before joining",
    "POOL_JOINING_HOST_HAS_NON_MANAGEMENT_VLANS": "The joining host has VLANs other than its management VLAN; destroy them before joining",
    "POOL_JOINING_HOST_HAS_TUNNELS": "The joining host has tunnels; destroy them before joining",
    "POOL_JOINING_HOST_MANAGEMENT_VLAN_DOES_NOT_MATCH": "The joining host's management VLAN differs from the pool master's; use the same VLAN on both",
    # Networking
    "CANNOT_ADD_TUNNEL_TO_BOND_SLAVE": "A bond member cannot carry a tunnel; use the bond's PIF instead",
    "CANNOT_ADD_VLAN_TO_BOND_SLAVE": "A bond member cannot carry a VLAN; use the bond's PIF instead",
    "IS_TUNNEL_ACCESS_PIF": "The PIF is a tunnel's access PIF; use the tunnel's transport PIF instead",
    "NETWORK_ALREADY_CONNECTED": "The host already has a PIF on this network; use that PIF or another network",
    "NETWORK_CONTAINS_PIF": "The network still has PIFs; destroy or forget them first",
    "NETWORK_CONTAINS_VIF": "The network still has VIFs; destroy them or move them to another network first",
    "NETWORK_INCOMPATIBLE_WITH_TUNNEL": "The network already carries physical, VLAN, bond or other-protocol traffic; use a new network for the tunnel",
    "NETWORK_UNMANAGED": "The network is not managed by vmctl (managed=false); its bridges are made by hand with add-br",
    "OPENVSWITCH_NOT_ACTIVE": "Tunnels need the openvswitch network backend on the host",
    "PIF_ALREADY_BONDED": "The PIF is already a member of a bond; destroy that bond first or choose another PIF",
    "PIF_BOND_MORE_THAN_ONE_IP": "At most one member of a bond may have an IP configuration; clear the others (ip-configuration-mode=none)",
    "PIF_BOND_NEEDS_MORE_MEMBERS": "A bond needs at least one member PIF",
    "PIF_CANNOT_BOND_CROSS_HOST": "The members of a bond must all be on the same host",
    "PIF_IS_MANAGEMENT_INTERFACE": "The PIF is the host's management interface; move management to another PIF first",
    "PIF_IS_NOT_PHYSICAL": "The PIF is not a physical interface; name a physical PIF",
    "PIF_IS_VLAN": "The PIF is a VLAN; name the physical or bond PIF underneath it",
    "PIF_TUNNEL_STILL_EXISTS": "The PIF still carries tunnels; destroy them first",
    "PIF_VLAN_EXISTS": "The PIF already carries a VLAN with this tag; choose another tag",
    "PIF_VLAN_STILL_EXISTS": "The PIF still carries VLANs; destroy them first",
    "TRANSPORT_PIF_NOT_CONFIGURED": "The tunnel's transport PIF has no IP configuration; configure one first",
    "VLAN_TAG_INVALID": "A VLAN tag is a whole number from 0 to 4094",
    "MAC_INVALID": "The MAC address is not valid; write six colon-separated hexadecimal pairs such as 02:00:00:00:00:01",
    "DEVICE_ALREADY_ATTACHED": "The device is already attached",
    "DEVICE_ALREADY_DETACHED": "The device is not attached",
    "DEVICE_ALREADY_EXISTS": "A device with this name or number already exists; choose another",
    "INVALID_DEVICE": "The device number is not valid; give an unsigned integer (a VBD: below 2^20, or autodetect)",
    # Storage
    "DEFAULT_SR_NOT_FOUND": "The pool has no default SR; name an SR with sr-uuid= or set the pool's default SR",
    "SR_BACKEND_FAILURE_46": "The VDI is not available: its volume is missing on the host (vdi-destroy still removes the record)",
    "SR_BACKEND_FAILURE_47": "The SR is not available on the host: plug its PBD there",
    "SR_BACKEND_FAILURE_79": "The storage backend refused the operation (VDI shrinking is not supported)",
    "SR_BACKEND_FAILURE_109": "The storage backend refused the operation (the VDI chain would be too deep); copy the disk instead of cloning it",
    "SR_HAS_NO_PBDS": "The SR is not attached to any host; plug one of its PBDs first",
    "SR_NOT_EMPTY": "The SR still holds VDIs; destroy them first",
    "SR_HAS_PBD": "The SR is still attached to a host; unplug its PBDs first (pbd-unplug)",
    "SR_OPERATION_NOT_SUPPORTED": "This SR type does not support the operation",
    "VBD_CDS_MUST_BE_READONLY": "A CD drive is always read-only; attach it read-only",
    "VBD_NOT_UNPLUGGABLE": "The VBD cannot be unplugged while the VM runs (unpluggable=false); shut the VM down first",
    "VDI_INCOMPATIBLE_TYPE": "The VDI's type does not fit this SR or operation",
    "VDI_IN_USE": "The VDI is in use by a running VM; unplug it or shut the VM down first",
    "VDI_IS_SHARABLE": "The operation is not allowed on a sharable VDI",
    "VDI_NOT_MANAGED": "The VDI is a base copy and cannot be used directly",
    "VDI_READONLY": "The VDI is read-only",
    "VDI_TOO_LARGE": "The VDI is larger than allowed here; choose a smaller size or another SR",
    "VDI_TOO_SMALL": "The size is below the VDI's minimum; choose a larger size",
    "VM_NO_SUSPEND_SR": "The VM has no suspend SR and its pool no default SR; set the VM's suspend SR or the pool's default SR",
    "VM_IS_NOT_A_SNAPSHOT": "The VM is not a snapshot; name a snapshot",
    "VM_IS_NOT_A_TEMPLATE": "The VM is not a template (or is a snapshot); name a template",
    "VDI_NEEDS_VM_FOR_MIGRATE": "No VM uses the VDI; vdi-copy copies a disk no VM uses",
    # The lab of real hosts (drivers.md §5)
    "LAB_PACKAGES_MISSING": "The lab needs packages that are not installed; the message gives the apt-get line",
    "LAB_NEEDS_ROOT": "Root is needed for vmctl lab up and down (namespaces, links and mounts)",
    "LAB_ALREADY_UP": "A lab is already up on this machine; vmctl lab down removes it",
    "LAB_NOT_UP": "No lab is up; vmctl lab up builds one",
    "LAB_POOL_EXISTS": "The inventory already has a pool named lab; destroy it or use another inventory",
    "LAB_FAILED": "A step of the lab failed; what it had made is undone (the message names the step)",
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
    """A command-line syntax error. An ovs-vsctl-style invocation (or one that names no command)
    prints it as ovs-vsctl does, `vmctl: <message>` (byte-for-byte contracts); any other prints
    :meth:`xe_error`, `vmctl: CODE: Message; what to do`, which honours `-f json`.
    `command` is the command it concerns, when known; `hint` says what to do; `xe_message`
    replaces the message in the xe form where ovs-vsctl's wording does not fit it."""

    def __init__(
        self,
        message: str,
        code: str = "USAGE",
        params: list | None = None,
        hint: str | None = None,
        command: str | None = None,
        xe_message: str | None = None,
    ):
        super().__init__(message)
        self.xe_message = xe_message
        self.code = code
        self.params = list(params or [])
        self.hint = hint
        self.command = command

    def xe_error(self) -> VmctlError:
        text = self.xe_message or self.message or ""
        params = list(self.params)
        if self.command and text.startswith(f"{self.command}: "):  # argparse's prefix
            text = text[len(self.command) + 2 :]
            params.insert(0, ("command", self.command))
        text = text[:1].upper() + text[1:]
        hint = self.hint
        if hint is None and "--help" not in text:
            hint = f"vmctl help {self.command} shows its usage" if self.command else "see vmctl --help"
        if hint:
            text = f"{text}; {hint}"
        return VmctlError(self.code, text, params)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C after part of the invocation committed (the steps before it): `message` says what
    stays done, instead of "nothing was changed"."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConfirmationNeeded(Exception):
    """Raised inside a first, rolled-back pass so the CLI can ask the user on a terminal."""

    def __init__(self, what: list[str]):
        self.what = what
        super().__init__("confirmation needed")
