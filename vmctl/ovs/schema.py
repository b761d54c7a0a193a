"""Column types of the Open_vSwitch schema 8.3.1 tables that vmctl serves (network.md §5).

Only the facts needed for matching names, parsing values and printing empty columns are kept:
the element types, their constraints, the value counts and whether vmctl stores the column.
"""

from __future__ import annotations

from dataclasses import dataclass

UNLIMITED = 2**32 - 1  # OVSDB's "unlimited" maximum, as the C code stores it

# The 19 table names of the schema, in the order the generated IDL lists them (byte order).
TABLE_NAMES = (
    "AutoAttach",
    "Bridge",
    "CT_Timeout_Policy",
    "CT_Zone",
    "Controller",
    "Datapath",
    "Flow_Sample_Collector_Set",
    "Flow_Table",
    "IPFIX",
    "Interface",
    "Manager",
    "Mirror",
    "NetFlow",
    "Open_vSwitch",
    "Port",
    "QoS",
    "Queue",
    "SSL",
    "sFlow",
)
SUPPORTED = ("Bridge", "Port", "Interface")


@dataclass(frozen=True)
class Base:
    """One atomic type: kind is integer, string, boolean, uuid or real."""

    kind: str
    lo: int | None = None
    hi: int | None = None
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ColType:
    key: Base
    value: Base | None
    n_min: int
    n_max: int

    @property
    def is_map(self) -> bool:
        return self.value is not None

    @property
    def scalar(self) -> bool:
        return self.n_min == 1 and self.n_max == 1


@dataclass(frozen=True)
class Column:
    name: str
    type: ColType
    mutable: bool = True  # False only for `name` (schema "mutable": false)
    # How vmctl keeps it: "settable" (generic set/clear allowed), "maintained" (stored, changed
    # only by commands), "fixed" (never stored, always the empty value).
    access: str = "fixed"


STR = Base("string")
INT = Base("integer")
BOOL = Base("boolean")
UUID = Base("uuid")
VLAN = Base("integer", 0, 4095)


def _one(b: Base) -> ColType:
    return ColType(b, None, 1, 1)


def _opt(b: Base) -> ColType:
    return ColType(b, None, 0, 1)


def _set(b: Base, n: int = UNLIMITED) -> ColType:
    return ColType(b, None, 0, n)


def _map(k: Base = STR, v: Base = STR) -> ColType:
    return ColType(k, v, 0, UNLIMITED)


def _enum(*values: str) -> Base:
    return Base("string", enum=tuple(sorted(values)))


UPDOWN = _enum("up", "down")


def _table(*cols: Column) -> dict[str, Column]:
    return {c.name: c for c in sorted(cols, key=lambda c: c.name)}


def _c(name: str, t: ColType, access: str = "fixed") -> Column:
    return Column(name, t, True, access)


_NAME = Column("name", _one(STR), False, "maintained")

COLUMNS: dict[str, dict[str, Column]] = {
    "Bridge": _table(
        _c("auto_attach", _opt(UUID)),
        _c("controller", _set(UUID), "maintained"),
        _c("datapath_id", _opt(STR)),
        _c("datapath_type", _one(STR), "settable"),
        _c("datapath_version", _one(STR)),
        _c("external_ids", _map(), "settable"),
        _c("fail_mode", _opt(_enum("standalone", "secure")), "settable"),
        _c("flood_vlans", _set(VLAN, 4096)),
        _c("flow_tables", _map(Base("integer", 0, 254), UUID)),
        _c("ipfix", _opt(UUID)),
        _c("mcast_snooping_enable", _one(BOOL)),
        _c("mirrors", _set(UUID)),
        _NAME,
        _c("netflow", _opt(UUID)),
        _c("other_config", _map(), "settable"),
        _c("ports", _set(UUID), "maintained"),
        _c(
            "protocols",
            _set(_enum("OpenFlow10", "OpenFlow11", "OpenFlow12", "OpenFlow13", "OpenFlow14", "OpenFlow15")),
        ),
        _c("rstp_enable", _one(BOOL)),
        _c("rstp_status", _map()),
        _c("sflow", _opt(UUID)),
        _c("status", _map()),
        _c("stp_enable", _one(BOOL)),
    ),
    "Port": _table(
        _c("bond_active_slave", _opt(STR)),
        _c("bond_downdelay", _one(INT)),
        _c("bond_fake_iface", _one(BOOL), "maintained"),
        _c("bond_mode", _opt(_enum("balance-tcp", "balance-slb", "active-backup")), "settable"),
        _c("bond_updelay", _one(INT)),
        _c("cvlans", _set(VLAN, 4096)),
        _c("external_ids", _map(), "settable"),
        _c("fake_bridge", _one(BOOL), "maintained"),
        _c("interfaces", ColType(UUID, None, 1, UNLIMITED), "maintained"),
        _c("lacp", _opt(_enum("active", "passive", "off")), "settable"),
        _c("mac", _opt(STR)),
        _NAME,
        _c("other_config", _map(), "settable"),
        _c("protected", _one(BOOL)),
        _c("qos", _opt(UUID)),
        _c("rstp_statistics", _map(STR, INT)),
        _c("rstp_status", _map()),
        _c("statistics", _map(STR, INT)),
        _c("status", _map()),
        _c("tag", _opt(VLAN), "settable"),
        _c("trunks", _set(VLAN, 4096), "settable"),
        _c(
            "vlan_mode",
            _opt(_enum("trunk", "access", "native-tagged", "native-untagged", "dot1q-tunnel")),
            "settable",
        ),
    ),
    "Interface": _table(
        _c("admin_state", _opt(UPDOWN)),
        _c("bfd", _map()),
        _c("bfd_status", _map()),
        _c("cfm_fault", _opt(BOOL)),
        _c("cfm_fault_status", _set(STR)),
        _c("cfm_flap_count", _opt(INT)),
        _c("cfm_health", _opt(Base("integer", 0, 100))),
        _c("cfm_mpid", _opt(INT)),
        _c("cfm_remote_mpids", _set(INT)),
        _c("cfm_remote_opstate", _opt(UPDOWN)),
        _c("duplex", _opt(_enum("half", "full"))),
        _c("error", _opt(STR)),
        _c("external_ids", _map(), "settable"),
        _c("ifindex", _opt(Base("integer", 0, 4294967295))),
        _c("ingress_policing_burst", _one(Base("integer", 0))),
        _c("ingress_policing_kpkts_burst", _one(Base("integer", 0))),
        _c("ingress_policing_kpkts_rate", _one(Base("integer", 0))),
        _c("ingress_policing_rate", _one(Base("integer", 0))),
        _c("lacp_current", _opt(BOOL)),
        _c("link_resets", _opt(INT)),
        _c("link_speed", _opt(INT)),
        _c("link_state", _opt(UPDOWN)),
        _c("lldp", _map()),
        _c("mac", _opt(STR)),
        _c("mac_in_use", _opt(STR)),
        _c("mtu", _opt(INT)),
        _c("mtu_request", _opt(Base("integer", 1))),
        _NAME,
        _c("ofport", _opt(INT)),
        _c("ofport_request", _opt(Base("integer", 1, 65279))),
        _c("options", _map(), "settable"),
        _c("other_config", _map(), "settable"),
        _c("statistics", _map(STR, INT)),
        _c("status", _map()),
        _c("type", _one(STR), "settable"),
    ),
}

# Record key (vmctl.store format) of each table.
RECORD_KEY = {"Bridge": "bridge", "Port": "port", "Interface": "interface"}


def _stored(shape) -> frozenset[str]:
    return frozenset(
        c.name for cols in COLUMNS.values() for c in cols.values() if c.access != "fixed" and shape(c.type)
    )


# The stored columns by the shape of their value in a row: sets (lists, except the uuid sets, which
# vmctl.ovs.session holds as insertion-ordered dicts uuid -> None) and maps (dicts).
SET_COLUMNS = _stored(lambda t: not t.is_map and t.n_max > 1)  # ports, interfaces, controller, trunks
UUID_SET_COLUMNS = _stored(lambda t: not t.is_map and t.n_max > 1 and t.key.kind == "uuid")
MAP_COLUMNS = _stored(lambda t: t.is_map)  # external_ids, other_config, options
