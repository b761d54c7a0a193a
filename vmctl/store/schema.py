"""SQLAlchemy Core schema, generated from the object catalog (vmctl.model).

One table per class; refs are uuid text (`""` when unset); sets and maps are JSON text. The
per-host switch rows of network.md §3.1 live in the ovs_* tables; the journal and the schema
version in `journal` and `meta`. Plain sqlite3 code in store/fastpath.py reads the same layout,
and a test checks it against these tables.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
)

from vmctl.model import CLASSES, Field
from vmctl.store.schema_version import SCHEMA_VERSION  # noqa: E402,F401

metadata = MetaData()


def _sqltype(f: Field):
    t = f.type
    if t in ("int", "size", "rate"):
        return BigInteger
    if t in ("float", "duration"):
        return Float
    if t == "bool":
        return Boolean
    return Text


def _columns_for(cls_name: str) -> list[Column]:
    cols: list[Column] = []
    for f in CLASSES[cls_name].stored_fields:
        if f.name == "uuid":
            cols.append(Column("uuid", Text, primary_key=True))
        else:
            cols.append(Column(f.column, _sqltype(f), nullable=False))
    return cols


TABLES: dict[str, Table] = {}
for _name, _cls in CLASSES.items():
    _t = Table(_cls.table, metadata, *_columns_for(_name))
    TABLES[_name] = _t
    # Lookups by name and by every reference are the common access paths.
    if _cls.named:
        Index(f"ix_{_cls.table}_name_label", _t.c.name_label)
    for _f in _cls.stored_fields:
        if _f.is_ref:
            Index(f"ix_{_cls.table}_{_f.column}", _t.c[_f.column])
Index("ix_host_address", TABLES["host"].c.address)

# --- per-host switch rows (network.md §3.1); sets and maps as JSON text -------------------------
OVS_TABLES: dict[str, Table] = {
    "bridge": Table(
        "ovs_bridge",
        metadata,
        Column("uuid", Text, primary_key=True),
        Column("host", Text, nullable=False, index=True),
        Column("name", Text, nullable=False),
        Column("ports", Text, nullable=False),
        Column("controller", Text, nullable=False),
        Column("fail_mode", Text),
        Column("datapath_type", Text, nullable=False),
        Column("external_ids", Text, nullable=False),
        Column("other_config", Text, nullable=False),
    ),
    "port": Table(
        "ovs_port",
        metadata,
        Column("uuid", Text, primary_key=True),
        Column("host", Text, nullable=False, index=True),
        Column("name", Text, nullable=False),
        Column("interfaces", Text, nullable=False),
        Column("tag", BigInteger),
        Column("trunks", Text, nullable=False),
        Column("vlan_mode", Text),
        Column("fake_bridge", Boolean, nullable=False),
        Column("bond_fake_iface", Boolean, nullable=False),
        Column("bond_mode", Text),
        Column("lacp", Text),
        Column("external_ids", Text, nullable=False),
        Column("other_config", Text, nullable=False),
    ),
    "interface": Table(
        "ovs_interface",
        metadata,
        Column("uuid", Text, primary_key=True),
        Column("host", Text, nullable=False, index=True),
        Column("name", Text, nullable=False),
        Column("type", Text, nullable=False),
        Column("options", Text, nullable=False),
        Column("external_ids", Text, nullable=False),
        Column("other_config", Text, nullable=False),
    ),
    "controller": Table(
        "ovs_controller",
        metadata,
        Column("uuid", Text, primary_key=True),
        Column("host", Text, nullable=False, index=True),
        Column("target", Text, nullable=False),
        Column("inactivity_probe", BigInteger),
    ),
}
# Which switch columns hold JSON (sets and maps).
OVS_JSON = {
    "bridge": ("ports", "controller", "external_ids", "other_config"),
    "port": ("interfaces", "trunks", "external_ids", "other_config"),
    "interface": ("options", "external_ids", "other_config"),
    "controller": (),
}

journal = Table(
    "journal",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("time", Text, nullable=False),
    Column("user", Text, nullable=False),
    Column("command", Text, nullable=False),
    Column("created", Text, nullable=False),
    Column("changed", Text, nullable=False),
    Column("destroyed", Text, nullable=False),
    Column("changes", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)
