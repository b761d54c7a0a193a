"""Schema creation and upgrades. Each step moves the schema from version N-1 to N inside the
writer's lock; `SCHEMA_VERSION` in store/schema.py is the newest."""

from __future__ import annotations

import sqlalchemy as sa

from vmctl.store import schema


def _add_columns(*fields: tuple[str, str]):
    """An upgrade step adding (class, field) columns, every existing row taking the field's
    empty value (its default), as a new row would."""

    def step(conn: sa.Connection) -> None:
        import json

        from vmctl.model import CLASSES

        for cls, name in fields:
            f = CLASSES[cls].fields[name]
            column = schema.TABLES[cls].c[f.column]
            value = f.empty()
            if f.kind != "scalar":
                value = json.dumps(value, sort_keys=True, separators=(",", ":"))
            ddl_type = column.type.compile(dialect=conn.dialect)
            table = CLASSES[cls].table
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {f.column} {ddl_type} NOT NULL DEFAULT ''")
            conn.execute(sa.update(schema.TABLES[cls]).values({f.column: value}))

    return step


# version -> function(conn) upgrading from version-1. Version 1 is the first release's schema.
STEPS: dict[int, object] = {
    # 2: real hosts (drivers.md §2): pool driver, host driver-uri and ovsdb, pending operations
    2: _add_columns(
        ("pool", "driver"),
        ("host", "driver-uri"),
        ("host", "ovsdb"),
        ("vm", "current-operations"),
        ("vdi", "current-operations"),
    ),
    # 3: a disk's volume on a real pool (its file in the SR; a clone moves it, drivers.md §3)
    3: _add_columns(("vdi", "location")),
}


def upgrade(conn: sa.Connection, current: int) -> None:
    if current == schema.SCHEMA_VERSION:
        return
    if current == 0:
        schema.metadata.create_all(conn)
    else:
        for v in range(current + 1, schema.SCHEMA_VERSION + 1):
            STEPS[v](conn)  # type: ignore[operator]
    t = schema.meta
    conn.execute(t.delete().where(t.c.key == "schema-version"))
    conn.execute(t.insert(), [{"key": "schema-version", "value": str(schema.SCHEMA_VERSION)}])
