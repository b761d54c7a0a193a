"""Schema creation and upgrades. Each step moves the schema from version N-1 to N inside the
writer's lock; `SCHEMA_VERSION` in store/schema.py is the newest."""

from __future__ import annotations

import sqlalchemy as sa

from vmctl.store import schema

# version -> function(conn) upgrading from version-1. Version 1 is the first release's schema.
STEPS: dict[int, object] = {}


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
