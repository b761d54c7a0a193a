"""The object model of model.md §1: every class, its fields, their types and access rules.

This catalog is the one description of the inventory's shape. The SQL schema
(`store/schema.py`), the generic `<class>-list` / `<class>-param-*` commands, field filters,
`params=`, and the renderers all read it. Derived fields (computed when read) are declared
here and computed in `vmctl/derived.py`.

Field types: uuid, string, int, float, size, rate, duration, bool, enum, ref:<class>,
set, set:<class> (a set of refs), map, time.
Access: RO (changed only by commands), RW, RWh (VM field writable only while halted),
RWhr (halted or running), D (derived).
"""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1024**3
MiB = 1024**2

RO, RW, RWh, RWhr, D = "RO", "RW", "RWh", "RWhr", "D"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str = "string"
    access: str = RO
    default: object = None
    values: tuple[str, ...] = ()  # enum members
    help: str = ""

    @property
    def column(self) -> str:
        return self.name.replace("-", "_")

    @property
    def stored(self) -> bool:
        return self.access != D

    @property
    def writable(self) -> bool:
        return self.access in (RW, RWh, RWhr)

    @property
    def is_ref(self) -> bool:
        return self.type.startswith("ref:")

    @property
    def ref_class(self) -> str | None:
        if self.type.startswith("ref:"):
            return self.type[4:]
        if self.type.startswith("set:"):
            return self.type[4:]
        return None

    @property
    def kind(self) -> str:
        """set, map or scalar: how the value is stored and rendered."""
        if self.type == "map":
            return "map"
        if self.type == "set" or self.type.startswith("set:"):
            return "set"
        return "scalar"

    def empty(self) -> object:
        if self.default is not None:
            return self.default
        k = self.kind
        if k == "map":
            return {}
        if k == "set":
            return []
        if self.type in ("string", "time", "enum") or self.is_ref:
            return ""
        if self.type == "bool":
            return False
        return 0


@dataclass(slots=True)
class ObjClass:
    name: str
    fields: dict[str, Field]
    columns: tuple[str, ...]  # default list columns, cli.md §3
    named: bool = True
    table: str = ""
    pooled: bool = True  # has a `pool` field

    def __post_init__(self):
        if not self.table:
            self.table = self.name.replace("-", "_")

    @property
    def stored_fields(self) -> list[Field]:
        return [f for f in self.fields.values() if f.stored]


def _common(named: bool) -> list[Field]:
    out = [Field("uuid", "uuid", RO)]
    if named:
        out += [
            Field("name-label", "string", RW, "", help="the object's name"),
            Field("name-description", "string", RW, "", help="a free-text description"),
            Field("tags", "set", RW, help="a set of tags"),
        ]
    out.append(Field("other-config", "map", RW, help="free key/value pairs; some keys tune the engine"))
    return out


def _cls(name: str, fields: list[Field], columns: str, named: bool = True, pooled: bool = True) -> ObjClass:
    fs = _common(named) + fields
    if pooled and not any(f.name == "pool" for f in fields):
        fs.append(Field("pool", "ref:pool", RO, help="the pool the object belongs to"))
    return ObjClass(name, {f.name: f for f in fs}, tuple(columns.split()), named=named, pooled=pooled)


POLICIES = ("pack", "spread", "balanced")
DRIVERS = ("sim", "libvirt")  # drivers.md §2: what acts on a pool's hosts (sim: the inventory is the world)
# What each placement policy does (engine.md §2.2), for the help of every policy= argument.
POLICY_HELP = (
    "balanced (the default) spreads the load over the hosts while keeping each host's memory and "
    "vCPU use in the pool's proportions, so neither is stranded; spread spreads on each host's "
    "tightest resource alone; pack consolidates, filling occupied hosts before it opens an empty one"
)

CLASSES: dict[str, ObjClass] = {}


def _register(c: ObjClass) -> None:
    CLASSES[c.name] = c


_register(
    _cls(
        "pool",
        [
            Field("master", "ref:host", RO, help="the pool master: the first host to join"),
            Field(
                "driver",
                "enum",
                RO,
                "sim",
                DRIVERS,
                help="sim (records only) or libvirt (real hosts); fixed at pool-create",
            ),
            Field("hosts", "set:host", D),
            Field("host-count", "int", D),
            Field("default-sr", "ref:sr", RW, "", help="default SR for new disks and suspend images"),
            Field(
                "memory-overcommit-policy",
                "enum",
                RW,
                "dynamic",
                ("none", "dynamic"),
                help="what a running VM charges its host: dynamic (XAPI's start check: dynamic-min, "
                "ballooning) or none (static-max, no overcommit)",
            ),
            Field("cpu-vendor", "string", D),
            Field("software-version", "string", D),
            Field("network-backend", "string", D),
            Field("cpu-flags", "set", D),
            Field("placement-policy", "enum", RW, "balanced", POLICIES, help=POLICY_HELP),
            Field("placement-seed", "int", RW, 0),
            Field("master-bias", "bool", RW, True),
            Field("vcpu-allocation-ratio", "float", RW, 4.0, help="vCPUs per logical CPU"),
            Field("rebalance-policy", "enum", RW, "spread", POLICIES),
            Field("migration-network", "ref:network", RW, ""),
            Field("migration-downtime", "duration", RW, 0.3),
            Field("migration-stream-bandwidth", "rate", RW, 128 * MiB),
            Field("default-dirty-rate", "rate", RW, 32 * MiB),
            Field("ha-host-failures-to-tolerate", "int", RW, 1),
            Field("ha-allow-overcommit", "bool", RW, False),
            Field("ha-plan-exact-limit", "int", RW, 200000),
            Field("ha-enabled", "bool", RO, False),
            Field("ha-overcommitted", "bool", RO, False),
            Field("ha-plan-exists-for", "int", RO, 0),
        ],
        "uuid name-label master host-count placement-policy ha-enabled",
        pooled=False,
    )
)

_register(
    _cls(
        "host",
        [
            Field("address", "string", RO, "", help="IPv4, IPv6 or DNS name; unique"),
            Field("enabled", "bool", RO, True),
            Field("live", "bool", RO, True),
            Field("current-operations", "set", RO),
            Field("driver-uri", "string", RO, "", help="libvirt pools: the host's libvirt URI"),
            Field("ovsdb", "string", RO, "", help="libvirt pools: the host's Open vSwitch database remote"),
            Field("cpu-vendor", "string", RO, "GenuineIntel"),
            Field("cpu-model", "string", RO, ""),
            Field("cpu-family", "int", RO, 0),
            Field("cpu-flags", "set", RO),
            Field("cpu-count", "int", RO, 1),
            Field("memory-total", "size", RO, 0),
            Field("memory-overhead", "size", RO, 0),
            Field("memory-committed", "size", D),
            Field("memory-free", "size", D),
            Field("software-version", "string", RO, "1.0.0"),
            Field("network-backend", "enum", RO, "openvswitch", ("openvswitch", "bridge")),
            Field("pool", "ref:pool", RO),
            Field("resident-vms", "set:vm", D),
            Field("resident-vm-count", "int", D),
            Field("pifs", "set:pif", D),
            Field("pbds", "set:pbd", D),
        ],
        "uuid name-label address enabled live cpu-count memory-total memory-free resident-vm-count",
    )
)

_VM_FIELDS = [
    Field("power-state", "enum", RO, "halted", ("halted", "running", "paused", "suspended")),
    Field("current-operations", "set", RO, help="operations a pending task is running on the VM"),
    Field("pool", "ref:pool", RO),
    Field("is-a-template", "bool", RWh, False),
    Field("is-default-template", "bool", RO, False),
    Field("is-a-snapshot", "bool", RO, False),
    Field("snapshot-of", "ref:vm", RO, ""),
    Field("snapshot-time", "time", RO, ""),
    Field("parent", "ref:vm", RO, ""),
    Field("vcpus", "int", RWh, 1),
    Field("memory-static-min", "size", RWh, GiB),
    Field("memory-dynamic-min", "size", RWhr, GiB),
    Field("memory-dynamic-max", "size", RWhr, GiB),
    Field("memory-static-max", "size", RWh, GiB),
    Field("memory-reservation", "size", RWhr, 0),
    Field("memory-overhead", "size", D),
    Field("memory-actual", "size", D),
    Field("resident-on", "ref:host", RO, ""),
    Field("domid", "int", RO, -1),
    Field("affinity", "ref:host", RW, ""),
    Field("scheduled-to-be-resident-on", "ref:host", RO, ""),
    Field("groups", "set:vm-group", RW),
    Field("ha-restart-priority", "enum", RW, "no-restart", ("restart", "best-effort", "no-restart")),
    Field("order", "int", RW, 0),
    Field("last-boot-cpu-vendor", "string", RO, ""),
    Field("last-boot-cpu-flags", "set", RO),
    Field("platform", "map", RW),
    Field("suspend-sr", "ref:sr", RW, ""),
    Field("suspend-vdi", "ref:vdi", RO, ""),
    Field("snapshots", "set:vm", D),
    Field("vbds", "set:vbd", D),
    Field("vifs", "set:vif", D),
    Field("allowed-operations", "set", D),
    Field("blocked-operations", "map", RW),
    # xe's fields scripts read to pick a device or skip dom0: free device numbers, and vmctl
    # models no control domain
    Field("allowed-vbd-devices", "set", D, help="the device numbers no VBD of the VM uses"),
    Field("allowed-vif-devices", "set", D, help="the device numbers no VIF of the VM uses"),
    Field("is-control-domain", "bool", D, False, help="always false: no control domain is modelled"),
]
_register(_cls("vm", _VM_FIELDS, "uuid name-label power-state resident-on vcpus memory-static-max"))

_register(
    _cls(
        "vm-group",
        [
            Field("placement", "enum", RO, "normal", ("normal", "affinity", "anti-affinity")),
            Field("strict", "bool", RW, False),
            Field("vms", "set:vm", D),
            Field("vm-count", "int", D),
        ],
        "uuid name-label placement strict vm-count",
    )
)

SR_TYPES = ("ext", "lvm", "nfs", "iscsi", "file")
PROVISIONING = ("thin", "thick-lazy", "thick-eager")
_register(
    _cls(
        "sr",
        [
            Field("type", "enum", RO, "ext", SR_TYPES),
            Field("content-type", "enum", RO, "user", ("user", "iso")),
            Field("shared", "bool", RO, False),
            Field("host", "ref:host", RO, ""),
            Field("physical-size", "size", RW, 0),
            Field("physical-utilisation", "size", D),
            Field("virtual-allocation", "size", D),
            Field("free-space", "size", D),
            Field("overprovisioning", "float", D),
            Field("default-provisioning", "enum", RW, "thin", PROVISIONING),
            Field("pbds", "set:pbd", D),
            Field("vdis", "set:vdi", D),
        ],
        "uuid name-label type shared physical-size physical-utilisation free-space",
    )
)

_register(
    _cls(
        "pbd",
        [
            Field("host", "ref:host", RO, ""),
            Field("sr", "ref:sr", RO, ""),
            Field("device-config", "map", RO),
            Field("currently-attached", "bool", RO, True),
        ],
        "uuid host sr currently-attached",
        named=False,
    )
)

_register(
    _cls(
        "vdi",
        [
            Field("sr", "ref:sr", RO, ""),
            Field("vbds", "set:vbd", D),
            Field("virtual-size", "size", RO, 0),
            Field("physical-utilisation", "size", RO, 0),
            Field("provisioning", "enum", RO, "thin", PROVISIONING),
            Field("type", "enum", RO, "user", ("user", "system", "suspend", "iso")),
            Field("sharable", "bool", RW, False),
            Field("read-only", "bool", RO, False),
            Field("managed", "bool", RO, True),
            Field("parent", "ref:vdi", RO, ""),
            Field("is-a-snapshot", "bool", RO, False),
            Field("snapshot-of", "ref:vdi", RO, ""),
            Field("snapshot-time", "time", RO, ""),
            Field("current-operations", "set", RO, help="operations a pending task is running on the disk"),
            Field(
                "location",
                "string",
                RO,
                help="the disk's volume (file name) in its SR on a libvirt pool; empty on a simulated pool",
            ),
        ],
        "uuid name-label sr virtual-size physical-utilisation provisioning read-only",
    )
)

_register(
    _cls(
        "vbd",
        [
            Field("vm", "ref:vm", RO, ""),
            Field("vdi", "ref:vdi", RO, ""),
            Field("device", "int", RO, 0),
            Field("type", "enum", RO, "disk", ("disk", "cd")),
            Field("mode", "enum", RO, "RW", ("RW", "RO")),
            Field("bootable", "bool", RW, False),
            Field("unpluggable", "bool", RW, True),
            Field("currently-attached", "bool", RO, False),
            Field("empty", "bool", D, help="no VDI (an empty CD drive)"),
        ],
        "uuid vm vdi device type mode currently-attached",
        named=False,
    )
)

_register(
    _cls(
        "network",
        [
            Field("bridge", "string", RO, ""),
            Field("mtu", "int", RW, 1500),
            Field("managed", "bool", RO, True),
            Field("tunnel-key", "int", RO, 0),
            Field("pifs", "set:pif", D),
            Field("vifs", "set:vif", D),
        ],
        "uuid name-label bridge mtu managed",
    )
)

_register(
    _cls(
        "pif",
        [
            Field("host", "ref:host", RO, ""),
            Field("network", "ref:network", RO, ""),
            Field("device", "string", RO, ""),
            Field("mac", "string", RO, ""),
            Field("vlan", "int", RO, -1),
            Field("mtu", "int", D),
            Field("physical", "bool", RO, True),
            Field("management", "bool", RO, False),
            Field("speed", "int", RW, 0, help="link speed in Mbit/s, 0 = unknown"),
            Field("plugged", "bool", RO, True),
            Field("currently-attached", "bool", D),
            Field("ip-configuration-mode", "enum", RO, "none", ("none", "dhcp", "static")),
            Field("ip", "string", RO, ""),
            Field("netmask", "string", RO, ""),
            Field("gateway", "string", RO, ""),
            Field("dns", "string", RO, ""),
            Field("bond-master-of", "set:bond", D),
            Field("bond-slave-of", "ref:bond", D),
            Field("vlan-master-of", "ref:vlan", D),
            Field("vlan-slave-of", "set:vlan", D),
            Field("tunnel-access-pif-of", "set:tunnel", D),
            Field("tunnel-transport-pif-of", "set:tunnel", D),
        ],
        "uuid host device network vlan management currently-attached",
        named=False,
    )
)

_register(
    _cls(
        "vif",
        [
            Field("vm", "ref:vm", RO, ""),
            Field("network", "ref:network", RO, ""),
            Field("device", "int", RO, 0),
            Field("mac", "string", RO, ""),
            Field("mac-autogenerated", "bool", RO, False),
            Field("mtu", "int", D),
            Field("plugged", "bool", RO, False),
            Field("currently-attached", "bool", D),
        ],
        "uuid vm network device mac currently-attached",
        named=False,
    )
)

_register(
    _cls(
        "vlan",
        [
            Field("tagged-pif", "ref:pif", RO, ""),
            Field("untagged-pif", "ref:pif", RO, ""),
            Field("tag", "int", RO, 0),
        ],
        "uuid tagged-pif untagged-pif tag",
        named=False,
    )
)

_register(
    _cls(
        "bond",
        [
            Field("master", "ref:pif", RO, ""),
            Field("slaves", "set:pif", RO),
            Field("primary-slave", "ref:pif", RO, ""),
            Field("mode", "enum", RW, "balance-slb", ("balance-slb", "active-backup", "lacp")),
        ],
        "uuid master slaves mode",
        named=False,
    )
)

_register(
    _cls(
        "tunnel",
        [
            Field("access-pif", "ref:pif", RO, ""),
            Field("transport-pif", "ref:pif", RO, ""),
            Field("protocol", "enum", RO, "gre", ("gre", "vxlan")),
        ],
        "uuid access-pif transport-pif protocol",
        named=False,
    )
)

_register(
    ObjClass(
        "task",
        {
            f.name: f
            for f in [
                Field("uuid", "uuid", RO),
                Field("name-label", "string", RO, ""),
                Field("status", "enum", RO, "pending", ("pending", "success", "failure", "cancelled")),
                Field("progress", "float", RO, 0.0),
                Field("created", "time", RO, ""),
                Field("finished", "time", RO, ""),
                Field("result", "string", RO, ""),
                Field("error-code", "string", RO, ""),
                Field("error-params", "map", RO),
                Field("objects", "set", RO),
                Field("other-config", "map", RW),
            ]
        },
        ("uuid", "name-label", "status", "progress", "created"),
        named=False,
        pooled=False,
    )
)

JOURNAL_FIELDS = {
    f.name: f
    for f in [
        Field("seq", "int", RO),
        Field("time", "time", RO),
        Field("user", "string", RO),
        Field("command", "string", RO),
        Field("created", "set", RO),
        Field("changed", "set", RO),
        Field("destroyed", "set", RO),
        Field("changes", "map", RO),
        Field("prev-hash", "string", RO),
        Field("hash", "string", RO),
    ]
}
JOURNAL = ObjClass("journal", JOURNAL_FIELDS, ("seq", "time", "user", "command"), named=False, pooled=False)

# Views that list a subset of vm rows (cli.md §3 default columns).
TEMPLATE_COLUMNS = ("uuid", "name-label", "vcpus", "memory-static-max", "is-default-template")
SNAPSHOT_COLUMNS = ("uuid", "name-label", "snapshot-of", "snapshot-time", "power-state")

# xe accepts these upper-case spellings for a few fields (model.md §1.7), as command arguments too
# (network-create MTU=, pif-reconfigure-ip IP= DNS=).
ALIASES = {"MTU": "mtu", "MAC": "mac", "VLAN": "vlan", "IP": "ip", "DNS": "dns"}

# xe's names for vmctl's fields, where they differ (xen-api's ocaml/xapi-cli-server/records.ml),
# so that xe scripts run as written: they are read wherever a field is named (list filters and VM
# selectors, params=, param-name=, *-param-set, creation arguments) and shown under the name they
# were asked by. vmctl's own, more regular names stay the documented ones. xe's upper-case `VCPUs`
# fields all name vmctl's one vcpus count; xe's `<ref>-uuid` fields are the reference fields.
XE_FIELDS: dict[str, dict[str, str]] = {
    "pool": {"default-SR": "default-sr", "coordinator-bias": "master-bias"},
    "host": {"host-metrics-live": "live", "memory-free-computed": "memory-free"},
    "vm": {
        "VCPUs-max": "vcpus",
        "VCPUs-at-startup": "vcpus",
        "VCPUs-number": "vcpus",
        "dom-id": "domid",
        "suspend-VDI-uuid": "suspend-vdi",
        "suspend-SR-uuid": "suspend-sr",
        "last-boot-CPU-flags": "last-boot-cpu-flags",
        "VBDs": "vbds",
        "allowed-VBD-devices": "allowed-vbd-devices",
        "allowed-VIF-devices": "allowed-vif-devices",
    },
    "vm-group": {"vm-uuids": "vms"},
    "sr": {"VDIs": "vdis", "PBDs": "pbds"},
    "pbd": {"host-uuid": "host", "sr-uuid": "sr"},
    "vdi": {"sr-uuid": "sr", "vbd-uuids": "vbds"},
    "vbd": {"vm-uuid": "vm", "vdi-uuid": "vdi", "userdevice": "device"},
    "network": {"VIF-uuids": "vifs", "PIF-uuids": "pifs", "MTU": "mtu"},
    "pif": {
        "MAC": "mac",
        "MTU": "mtu",
        "VLAN": "vlan",
        "IP": "ip",
        "DNS": "dns",
        "IP-configuration-mode": "ip-configuration-mode",
        "network-uuid": "network",
        "host-uuid": "host",
        "tunnel-access-PIF-of": "tunnel-access-pif-of",
        "tunnel-transport-PIF-of": "tunnel-transport-pif-of",
    },
    "vif": {
        "vm-uuid": "vm",
        "network-uuid": "network",
        "MAC": "mac",
        "MAC-autogenerated": "mac-autogenerated",
        "MTU": "mtu",
    },
    "vlan": {"tagged-PIF": "tagged-pif", "untagged-PIF": "untagged-pif"},
    "tunnel": {"access-PIF": "access-pif", "transport-PIF": "transport-pif"},
}

# xe's `<ref>-name-label` fields: the name-label of the object a reference field names. As a
# filter one selects by that name (as the reference field does); in params= and param-get it
# shows the name. Read-only, as in xe.
XE_NAME_FIELDS: dict[str, dict[str, str]] = {
    "pbd": {"host-name-label": "host", "sr-name-label": "sr"},
    "vdi": {"sr-name-label": "sr"},
    "vbd": {"vm-name-label": "vm", "vdi-name-label": "vdi"},
    "pif": {"network-name-label": "network", "host-name-label": "host"},
    "vif": {"vm-name-label": "vm", "network-name-label": "network"},
}

# How xe prints an enum's members where its spelling differs from vmctl's (records.ml): every
# output shows these, and every input takes a member in any case (`type=Disk`, `type=disk`).
XE_SPELLING: dict[tuple[str, str], dict[str, str]] = {
    ("vbd", "type"): {"disk": "Disk", "cd": "CD"},
    ("vdi", "type"): {"user": "User", "system": "System", "suspend": "Suspend"},
    ("pif", "ip-configuration-mode"): {"none": "None", "dhcp": "DHCP", "static": "Static"},
}


def field_name(cls: str, name: str) -> str:
    """vmctl's name for a field of cls named `name` in vmctl's or xe's spelling (the name itself
    when it is neither: the caller reports it)."""
    return XE_FIELDS.get(cls, {}).get(name) or ALIASES.get(name, name)
