"""The inventory store: opening, locking, schema creation and upgrade, and one transaction
per invocation with a small unit of work and the journal.

Writers serialize on one lock per inventory (architecture.md §1): SQLite `BEGIN IMMEDIATE` in
WAL mode; PostgreSQL a transaction-scoped advisory lock in a SERIALIZABLE transaction. Reads
never lock. Rows are plain dicts keyed by dash-case field names; writes are buffered per class
and flushed (executemany) before any read of that class and at commit, which keeps a batch of
thousands of creates fast.

A class a transaction keeps querying is read whole once (when its queries have cost about as
much as that read) and from then on answered from memory, through equality indexes on its
fields that every insert, update and delete keeps current: a batch or a demo of thousands of
commands costs each command what it touches, not what the inventory holds.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from vmctl.errors import BusyError, Ref, VmctlError
from vmctl.model import CLASSES, ObjClass
from vmctl.redact import redact, redact_word
from vmctl.store import schema
from vmctl.units import UuidSource, is_uuid

HOLDABLE = frozenset(("vm", "vdi", "host", "sr"))  # classes a long operation can hold (drivers.md §4)

PG_LOCK_KEY = 0x766D63746C  # "vmctl": the advisory lock all writers of one database share


from vmctl.store.txn_paths import default_db  # noqa: E402  (re-exported)


def is_url(db: str) -> bool:
    return "://" in db


def now_iso(micro: bool = False) -> str:
    t = datetime.now(UTC)
    if micro:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers): fall back to the uid
        return str(os.getuid())


def _db_error(exc: BaseException, db: str) -> VmctlError:
    """A database failure as DATABASE_ERROR (or BusyError); `db` is the inventory as it may be
    printed (credentials masked, see Store.shown_db), and so is the driver's message."""
    msg = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
    msg = redact(msg)
    low = msg.lower()
    if "locked" in low or "lock timeout" in low or "canceling statement due to lock timeout" in low:
        return BusyError(0)
    if "not a database" in low or "malformed" in low:
        text = "The inventory file is not a valid vmctl database"
    elif "readonly" in low or "read-only" in low:
        text = "The inventory is read-only"
    elif "unable to open" in low:
        text = "The inventory file cannot be opened"
    else:
        text = "The inventory database failed"
    return VmctlError("DATABASE_ERROR", text, [("db", db), ("reason", msg)])


# --- value conversion between Python rows and SQL columns ------------------------------------------
def _json_fields(c: ObjClass) -> tuple[str, ...]:
    return tuple(f.name for f in c.stored_fields if f.kind != "scalar")


_JSON = {name: _json_fields(c) for name, c in CLASSES.items()}
_COLS = {name: [(f.name, f.column) for f in c.stored_fields] for name, c in CLASSES.items()}
# per class, what insert() fills in: (field, whether a set, its empty value), in column order
_DEFAULTS = {
    name: [(f.name, f.kind == "set", f.empty()) for f in c.stored_fields] for name, c in CLASSES.items()
}
_SETS = {name: frozenset(f.name for f in c.stored_fields if f.kind == "set") for name, c in CLASSES.items()}
# the fields an in-memory index may key (sets and maps are lists and dicts: not hashable)
_SCALARS = {
    name: frozenset(f.name for f in c.stored_fields if f.kind == "scalar") for name, c in CLASSES.items()
}
# The cost of SQL queries, counted in rows loaded (fetched and decoded into a row dict): a class
# is read whole once its queries in a transaction have cost as many rows as it holds, so a
# transaction pays at most about twice the cheaper of the two ways, whatever the queries to come.
# A statement costs about as much as loading 16 rows; the database scans about 32 rows (an index
# range, then each row's other columns) in the time one row is loaded.
QUERY_COST_ROWS = 16
SCANNED_PER_LOADED = 32


def _narrowing(cls: str) -> dict[str, str | None]:
    """The fields an SQL index of the class (store/schema.py) narrows a query by -> the class a
    reference points to (a query reads about the class's share of one such object), or None
    for about one row (uuid, name-label, address)."""
    t = schema.TABLES[cls]
    cols = {c.name for c in t.primary_key.columns} | {c.name for i in t.indexes for c in i.columns}
    fields = CLASSES[cls].fields
    return {
        f: (fields[f].ref_class if fields[f].is_ref else None) for f in (c.replace("_", "-") for c in cols)
    }


_NARROWING = {name: _narrowing(name) for name in CLASSES}

# sets and maps as stored (one encoder for every row: json.dumps would build one per value)
_to_json = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def _json_text(v: object) -> str:
    if not v and type(v) in (dict, list):  # most rows' sets and maps: no encoder needed
        return "{}" if type(v) is dict else "[]"
    return _to_json(v)


def to_sql(cls: str, row: dict) -> dict:
    out = {}
    js = _JSON[cls]
    for fname, col in _COLS[cls]:
        v = row[fname]
        if fname in js:
            v = _json_text(v)
        out[col] = v
    return out


_NAMES = {name: tuple(f for f, _ in cols) for name, cols in _COLS.items()}


def from_sql(cls: str, rec) -> dict:
    row = dict(zip(_NAMES[cls], rec))
    for f in _JSON[cls]:
        v = row[f]
        # most sets and maps are empty: no decoder call for them (every read of many rows)
        row[f] = [] if v == "[]" else {} if v == "{}" else json.loads(v)
    return row


_EMPTY: dict[str, None] = {}


def _hashable(v: object) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


class Txn:
    """One open transaction. Command functions get one; they never commit."""

    def __init__(self, store: Store, conn: sa.Connection, write: bool, uuids: UuidSource):
        self.store = store
        self.conn = conn
        self.write = write
        self.new_uuid = uuids
        self._rows: dict[str, dict[str, dict]] = {c: {} for c in CLASSES}
        self._new: dict[str, dict[str, None]] = {c: {} for c in CLASSES}
        self._dirty: dict[str, dict[str, None]] = {c: {} for c in CLASSES}
        self._deleted: dict[str, dict[str, None]] = {c: {} for c in CLASSES}
        self._complete: set[str] = set()  # classes whose rows are all in the identity map
        # complete classes only: cls -> field -> value -> {uuid: None}, each bucket in identity-map
        # order (the order a scan returns) unless named in _unordered; _pos ranks that order
        self._indexes: dict[str, dict[str, dict[object, dict[str, None]]]] = {c: {} for c in CLASSES}
        self._unordered: set[tuple[str, str, object]] = set()
        self._pos: dict[str, dict[str, int]] = {c: {} for c in CLASSES}
        self._next_pos = 0
        self._sql_cost: dict[str, int] = {}  # rows' worth of SQL queries per incomplete class
        self._stored: dict[str, int] = {}  # rows per class when this transaction first asked
        self.created: dict[str, None] = {}
        self.changed: dict[str, None] = {}
        self.destroyed: dict[str, None] = {}
        self.changes: dict[str, dict[str, list]] = {}
        self.refs: dict[str, tuple[str, str]] = {}  # @name -> (class, uuid)
        self.switches: dict[str, object] = {}  # host uuid -> vmctl.ovs.Session
        # hosts whose sessions were handed out since the last invalidate_views(): only those can
        # have built a view since (a view is built through the session, got from switch())
        self._handed_out: dict[str, None] = {}
        self._switch_loaded: dict[str, dict] = {}
        self.warnings: list[str] = []
        self.cache: dict[object, object] = {}  # per-transaction memo for commands
        # bumped by every write (and by mutating ovs-style commands, see cli/app.py): memoized
        # views of the inventory, such as the engine's pool snapshots, are valid while it is unchanged
        self.writes = 0
        self.on_commit: list = []  # called once it ended without error (committed, or read only or dry run)
        self.on_abort: list = []  # called if it fails after the hosts were acted on (vmctl/drivers)
        self.own_task = ""  # the pending task this transaction closes: its objects are not busy to it
        self._held: dict[str, dict] | None = None  # "class:uuid" -> the pending task holding it
        self.journal_entry: tuple[int, str] | None = None  # (seq, hash) this transaction appended
        # totals kept current by insert/update/delete: (cls, field, by, only) -> {by value: sum}
        self._sums: dict[tuple, dict] = {}

    # --- reading ------------------------------------------------------------------------------
    def get(self, cls: str, uuid: str) -> dict | None:
        if not uuid:
            return None
        row = self._rows[cls].get(uuid)
        if row is not None:
            return row
        if uuid in self._deleted[cls] or cls in self._complete:
            return None
        t = schema.TABLES[cls]
        rec = self.conn.execute(sa.select(t).where(t.c.uuid == uuid)).first()
        if rec is None:
            return None
        row = from_sql(cls, rec)
        self._rows[cls][uuid] = row
        return row

    def all(self, cls: str) -> list[dict]:
        """Every row of a class (cached for the rest of the transaction)."""
        if cls not in self._complete:
            self._load(cls)
        return list(self._rows[cls].values())

    def _load(self, cls: str) -> None:
        """Read the whole class into the identity map, in the order the database returns it (the
        order of an SQL query's results), keeping the dicts already handed out."""
        self.flush(cls)
        t = schema.TABLES[cls]
        cache = self._rows[cls]
        rows: dict[str, dict] = {}
        for rec in self.conn.execute(sa.select(t)):
            u = rec[0]
            row = cache.get(u)
            rows[u] = row if row is not None else from_sql(cls, rec)
        self._rows[cls] = rows
        pos = self._pos[cls]
        for u in rows:
            pos[u] = self._next_pos
            self._next_pos += 1
        self._complete.add(cls)

    def select(self, cls: str, **where) -> list[dict]:
        """Rows whose fields equal the given values (keyword names use `_` for `-`), in the
        order the database returns them."""
        crit = {k.replace("_", "-"): v for k, v in where.items()}
        if cls in self._complete:
            return list(self._matching(cls, crit))
        return self._select_stored(cls, crit)

    def exists(self, cls: str, **where) -> bool:
        """Whether select() would return a row (stops at the first)."""
        crit = {k.replace("_", "-"): v for k, v in where.items()}
        if cls in self._complete:
            return next(self._matching(cls, crit), None) is not None
        return bool(self._select_stored(cls, crit, limit=1))

    def _select_stored(self, cls: str, crit: dict, limit: int | None = None) -> list[dict]:
        self.flush(cls)
        t = schema.TABLES[cls]
        q = sa.select(t)
        for k, v in crit.items():
            q = q.where(t.c[k.replace("-", "_")] == v)
        if limit is not None:
            q = q.limit(limit)
        cache = self._rows[cls]
        out = []
        for rec in self.conn.execute(q):
            u = rec[0]
            row = cache.get(u)
            if row is None:
                row = cache[u] = from_sql(cls, rec)
            out.append(row)
        scanned = self._rows_scanned(cls, crit)
        cost = self._sql_cost.get(cls, 0) + QUERY_COST_ROWS + len(out) + scanned // SCANNED_PER_LOADED
        self._sql_cost[cls] = cost
        if cost >= self._stored_rows(cls):
            self._load(cls)
        return out

    def _rows_scanned(self, cls: str, crit: dict) -> int:
        """About how many rows the database reads to answer a query: those its most narrowing
        indexed criterion leaves, rows spread evenly (a pool= criterion alone leaves the pool's
        share of the class, which is all of it in a one-pool inventory); all without one."""
        n = stored = self._stored_rows(cls)
        for k in crit:
            if k in _NARROWING[cls]:
                ref = _NARROWING[cls][k]
                n = min(n, 1 if ref is None else -(-stored // max(1, self._stored_rows(ref))))
        return n

    def _stored_rows(self, cls: str) -> int:
        n = self._stored.get(cls)
        if n is None:
            t = schema.TABLES[cls]
            n = self._stored[cls] = self.conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
        return n

    def _matching(self, cls: str, crit: dict) -> Iterator[dict]:
        """The rows of a class read whole that select() returns, in order: the smallest bucket
        of an indexed criterion, filtered by every criterion exactly as a scan would be; a scan
        when no criterion can be indexed."""
        rows = self._rows[cls]
        bucket: dict[str, None] | None = None
        field = value = None
        for k, v in crit.items():
            if k not in _SCALARS[cls] or not _hashable(v):
                continue
            b = self._index(cls, k).get(v, _EMPTY)
            if bucket is None or len(b) < len(bucket):
                bucket, field, value = b, k, v
        if bucket is None:
            found: Iterable[dict] = rows.values()
        else:
            if (cls, field, value) in self._unordered:
                self._sort_bucket(cls, field, value)
                bucket = self._indexes[cls][field][value]  # type: ignore[index]
            found = map(rows.__getitem__, bucket)
        # consumed by select() and exists() before any write can change a bucket
        return (r for r in found if all(r[k] == v for k, v in crit.items()))

    def _index(self, cls: str, field: str) -> dict[object, dict[str, None]]:
        idx = self._indexes[cls].get(field)
        if idx is None:
            idx = self._indexes[cls][field] = {}
            for u, row in self._rows[cls].items():
                idx.setdefault(row[field], {})[u] = None
        return idx

    def _sort_bucket(self, cls: str, field: str, value: object) -> None:
        idx, pos = self._indexes[cls][field], self._pos[cls]
        idx[value] = dict.fromkeys(sorted(idx[value], key=pos.__getitem__))
        self._unordered.discard((cls, field, value))

    def _index_add(self, cls: str, uuid: str, row: dict, fields) -> None:
        pos = self._pos[cls]
        for f in fields:
            idx = self._indexes[cls].get(f)
            if idx is None:
                continue
            v = row[f]
            b = idx.get(v)
            if b is None:
                idx[v] = {uuid: None}
                continue
            if pos[next(reversed(b))] > pos[uuid]:
                self._unordered.add((cls, f, v))  # an update moved an older row in
            b[uuid] = None

    def _index_remove(self, cls: str, uuid: str, old: dict) -> None:
        """Drop uuid from the buckets of the fields in `old` (field -> the value it was under)."""
        for f, v in old.items():
            idx = self._indexes[cls].get(f)
            if idx is None:
                continue
            b = idx[v]
            del b[uuid]
            if not b:
                del idx[v]
                self._unordered.discard((cls, f, v))

    def select_containing(self, cls: str, field: str, value: str) -> list[dict]:
        """Rows whose set field `field` holds `value` (a VM group's members, say): the database
        narrows them by the JSON text, the exact test is on the parsed set."""
        if cls in self._complete:
            return [r for r in self._rows[cls].values() if value in r[field]]
        self.flush(cls)
        t = schema.TABLES[cls]
        col = t.c[field.replace("-", "_")]
        cache = self._rows[cls]
        out = []
        for rec in self.conn.execute(sa.select(t).where(col.contains(json.dumps(value), autoescape=True))):
            row = cache.get(rec[0])
            if row is None:
                row = cache[rec[0]] = from_sql(cls, rec)
            if value in row[field]:
                out.append(row)
        return out

    def one_or_none(self, cls: str, **where) -> dict | None:
        rows = self.select(cls, **where)
        return rows[0] if rows else None

    def count(self, cls: str, **where) -> int:
        if cls in self._complete or where:
            return len(self.select(cls, **where)) if where else len(self._rows[cls])
        self.flush(cls)
        t = schema.TABLES[cls]
        return self.conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()

    def total(self, cls: str, field: str, by: str, key: str, only: tuple[str, object] | None = None) -> int:
        """Σ `field` over the rows of `cls` whose `by` equals `key` (and whose only[0] equals
        only[1]): one GROUP BY the first time, then maintained by every write of this
        transaction, so accounting checks in a batch of thousands of creates stay O(1)."""
        sig = (cls, field, by, only)
        sums = self._sums.get(sig)
        if sums is None:
            self.flush(cls)
            t = schema.TABLES[cls]
            col = lambda name: t.c[name.replace("-", "_")]  # noqa: E731
            q = sa.select(col(by), sa.func.sum(col(field))).group_by(col(by))
            if only is not None:
                q = q.where(col(only[0]) == only[1])
            sums = {k: int(v or 0) for k, v in self.conn.execute(q)}
            self._sums[sig] = sums
        return sums.get(key, 0)

    def _account(self, cls: str, row: dict, sign: int) -> None:
        for (c, field, by, only), sums in self._sums.items():
            if c == cls and (only is None or row[only[0]] == only[1]):
                sums[row[by]] = sums.get(row[by], 0) + sign * row[field]

    # --- writing ------------------------------------------------------------------------------
    def insert(self, cls: str, values: dict) -> str:
        row = {}
        for name, is_set, empty in _DEFAULTS[cls]:
            if name in values:
                v = values[name]
            else:
                v = empty
                if isinstance(v, (list, dict)):
                    v = type(v)(v)
            if is_set:
                v = sorted(set(v))
            row[name] = v
        unknown = set(values) - set(row)
        if unknown:  # a programming error, not a user error
            raise KeyError(f"{cls} has no stored fields {sorted(unknown)}")
        if not row["uuid"]:
            row["uuid"] = self.new_uuid()
        u = row["uuid"]
        self.writes += 1
        self._rows[cls][u] = row
        self._new[cls][u] = None
        if cls in self._complete:
            self._pos[cls][u] = self._next_pos
            self._next_pos += 1
            if self._indexes[cls]:
                self._index_add(cls, u, row, self._indexes[cls])
        if self._sums:
            self._account(cls, row, +1)
        key = f"{cls}:{u}"
        self.created[key] = None
        self.changes[key] = {k: [None, v] for k, v in row.items()}
        return u

    def update(self, cls: str, uuid: str, values: dict) -> dict:
        row = self.get(cls, uuid)
        if row is None:
            raise KeyError(f"{cls} {uuid} does not exist")
        key = f"{cls}:{uuid}"
        if cls in HOLDABLE:
            self.check_not_held(cls, uuid)
        rec = self.changes.setdefault(key, {})
        touched = False
        if self._sums:
            self._account(cls, row, -1)
        indexes = self._indexes[cls]
        moved: dict[str, object] = {}  # indexed field -> the value it was under
        sets = _SETS[cls]
        for k, v in values.items():
            if k in sets:
                v = sorted(set(v))
            old = row[k]
            if old == v and type(old) is type(v):
                continue
            if k in rec:
                rec[k][1] = v
            else:
                rec[k] = [old, v]
            if k in indexes and k not in moved:
                moved[k] = old
            row[k] = v
            touched = True
        if moved:
            self._index_remove(cls, uuid, moved)
            self._index_add(cls, uuid, row, moved)
        if self._sums:
            self._account(cls, row, +1)
        if touched:
            self.writes += 1
            if uuid not in self._new[cls]:
                self._dirty[cls][uuid] = None
            if key not in self.created:
                self.changed[key] = None
        elif not rec:
            del self.changes[key]
        return row

    def delete(self, cls: str, uuid: str) -> None:
        row = self.get(cls, uuid)
        if row is None:
            return
        key = f"{cls}:{uuid}"
        if cls in HOLDABLE:
            self.check_not_held(cls, uuid)
        self.writes += 1
        if self._sums:
            self._account(cls, row, -1)
        if self._indexes[cls]:
            self._index_remove(cls, uuid, {f: row[f] for f in self._indexes[cls]})
        self._pos[cls].pop(uuid, None)
        del self._rows[cls][uuid]
        self._dirty[cls].pop(uuid, None)
        if uuid in self._new[cls]:
            # Created and destroyed in one transaction: the journal sees neither.
            del self._new[cls][uuid]
            self.created.pop(key, None)
            self.changes.pop(key, None)
            return
        self._deleted[cls][uuid] = None
        self.changed.pop(key, None)
        self.destroyed[key] = None
        before = self.changes.get(key, {})
        self.changes[key] = {k: [before.get(k, [v])[0], None] for k, v in row.items()}

    # --- pending operations (drivers.md §4) -------------------------------------------------------
    def held_by(self, cls: str, uuid: str) -> dict | None:
        """The pending task holding an object, unless it is the one this transaction closes."""
        if self._held is None:
            self._held = {}
            for t in self.select("task", status="pending"):
                for key in t["objects"]:
                    self._held[key] = t
        t = self._held.get(f"{cls}:{uuid}")
        return None if t is None or t["uuid"] == self.own_task else t

    def release(self, task_uuid: str) -> None:
        """Treat a pending task's objects as free in this transaction (a task whose process is
        gone, being closed by host-sync --fix)."""
        self.held_by("task", "")
        self._held = {k: t for k, t in (self._held or {}).items() if t["uuid"] != task_uuid}

    def check_not_held(self, cls: str, uuid: str) -> None:
        """model.md §0 check (5): an object a pending task holds is changed by that task only."""
        t = self.held_by(cls, uuid)
        if t is not None:
            row = self.get(cls, uuid)
            raise VmctlError(
                "OTHER_OPERATION_IN_PROGRESS",
                params=[
                    ("class", cls),
                    ("object", self.ref(cls, row or uuid)),
                    ("operation", ", ".join(row.get("current-operations", [])) if row else ""),
                    ("task", t["uuid"]),
                ],
            )

    def restore(self, created, destroyed, changed, changes: dict) -> None:
        """Put back what an earlier transaction did, from its journal record: what it created
        goes, what it destroyed comes back, changed fields take their old values. Switch rows
        are written here directly; this transaction must not have loaded those switches."""
        self.flush()
        for key in created:
            table, uuid = key.split(":", 1)
            if table in CLASSES:
                self.delete(table, uuid)
            elif table in schema.OVS_TABLES:
                t = schema.OVS_TABLES[table]
                self.conn.execute(t.delete().where(t.c.uuid == uuid))
                self._record_switch(
                    table, uuid, changes[key] and {k: v[1] for k, v in changes[key].items()}, None
                )
        for key in destroyed:
            table, uuid = key.split(":", 1)
            before = {k: v[0] for k, v in changes[key].items()}
            if table in CLASSES:
                self.insert(table, {k: v for k, v in before.items() if k in CLASSES[table].fields})
            elif table in schema.OVS_TABLES:
                self._write_switch_row(table, before, insert=True)
                self._record_switch(table, uuid, None, before)
        for key in changed:
            table, uuid = key.split(":", 1)
            before = {k: v[0] for k, v in changes[key].items()}
            if table in CLASSES:
                if self.get(table, uuid) is not None:
                    self.update(table, uuid, before)
            elif table in schema.OVS_TABLES:
                self._write_switch_row(table, {"uuid": uuid, **before}, insert=False)
                self.changed[key] = None
                self.changes[key] = {k: [v[1], v[0]] for k, v in changes[key].items()}

    def _write_switch_row(self, table: str, row: dict, insert: bool) -> None:
        t = schema.OVS_TABLES[table]
        d = dict(row)
        for k in schema.OVS_JSON[table]:
            if k in d:
                d[k] = json.dumps(d[k], sort_keys=True, separators=(",", ":"))
        if insert:
            self.conn.execute(t.insert(), [d])
        else:
            u = d.pop("uuid")
            if d:
                self.conn.execute(t.update().where(t.c.uuid == u).values(d))

    def flush(self, cls: str | None = None) -> None:
        for c in [cls] if cls else list(CLASSES):
            if not (self._deleted[c] or self._new[c] or self._dirty[c]):
                continue
            t = schema.TABLES[c]
            dels = list(self._deleted[c])
            if dels:
                for i in range(0, len(dels), 500):
                    self.conn.execute(t.delete().where(t.c.uuid.in_(dels[i : i + 500])))
                self._deleted[c].clear()
            news = list(self._new[c])
            if news:
                rows = self._rows[c]
                self.conn.execute(t.insert(), [to_sql(c, rows[u]) for u in news])
                self._new[c].clear()
            dirty = list(self._dirty[c])
            if dirty:
                rows = self._rows[c]
                stmt = t.update().where(t.c.uuid == sa.bindparam("_uuid"))
                params = []
                for u in dirty:
                    p = to_sql(c, rows[u])
                    p["_uuid"] = p.pop("uuid")
                    params.append(p)
                self.conn.execute(stmt, params)
                self._dirty[c].clear()

    # --- references -----------------------------------------------------------------------------
    def ref(self, cls: str, uuid_or_row) -> Ref:
        row = uuid_or_row if isinstance(uuid_or_row, dict) else self.get(cls, uuid_or_row)
        if row is None:
            return Ref(cls, str(uuid_or_row), None)
        return Ref(cls, row["uuid"], row.get("name-label") if CLASSES[cls].named else None)

    def resolve(self, cls: str, value: str, multiple: bool = False, label: str | None = None) -> list[dict]:
        """A uuid, a name-label or an @name -> rows (exactly one unless multiple). An @name the
        chain defined (`--id=@name`) wins; any other is a name-label (an object named `@w`)."""
        label = label or cls
        value = str(value)
        hit = self.refs.get(value) if value.startswith("@") else None
        if hit is not None:
            row = self.get(cls, hit[1]) if hit[0] == cls else None
            if row is not None:
                return [row]
            raise VmctlError(
                "UUID_INVALID", f"No {label} is known as {value}", [("class", label), ("value", value)]
            )
        if is_uuid(value):
            row = self.get(cls, value)
            if row is not None:
                return [row]
        rows = []
        if CLASSES[cls].named and value:
            rows = self.select(cls, name_label=value)
        if not rows:
            raise VmctlError(
                "UUID_INVALID",
                f"No {label} has the uuid or name-label {value}",
                [("class", label), ("value", value)],
            )
        if len(rows) > 1 and not multiple:
            raise VmctlError(
                "MULTIPLE_MATCHES",
                f"{len(rows)} objects of class {label} are named {value}",
                [("class", label), ("value", value)],
            )
        return sorted(rows, key=lambda r: r["uuid"])

    def resolve_one(self, cls: str, value: str, label: str | None = None) -> dict:
        return self.resolve(cls, value, label=label)[0]

    # --- the per-host switch rows (network.md §3) ------------------------------------------------
    def switch(self, host_uuid: str):
        self._handed_out[host_uuid] = None
        s = self.switches.get(host_uuid)
        if s is None:
            from vmctl import ovs

            records = self._load_switch(host_uuid)
            s = ovs.Session(host_uuid, records, self.new_uuid, self.warn_raw)
            self.switches[host_uuid] = s
        return s

    def load_switches(self, hosts: list[str]) -> None:
        """Read the switch rows of many hosts at once (one query per table, not per host): what
        `switch` then returns for each, as if it had read them itself."""
        from vmctl import ovs

        todo = [h for h in dict.fromkeys(hosts) if h not in self.switches]
        if len(todo) < 2:
            return
        for i in range(0, len(todo), 500):
            chunk = todo[i : i + 500]
            for host, records in self._read_switches(chunk).items():
                self.switches[host] = ovs.Session(host, records, self.new_uuid, self.warn_raw)

    def _load_switch(self, host: str) -> dict[str, list[dict]]:
        return self._read_switches([host])[host]

    def _read_switches(self, hosts: list[str]) -> dict[str, dict[str, list[dict]]]:
        out: dict[str, dict[str, list[dict]]] = {h: {} for h in hosts}
        for name, t in schema.OVS_TABLES.items():
            js = schema.OVS_JSON[name]
            for h in hosts:
                out[h][name] = []
            q = sa.select(t).where(t.c.host.in_(hosts)).order_by(t.c.host, t.c.uuid)
            for rec in self.conn.execute(q):
                d = dict(rec._mapping)
                host = d.pop("host")
                for k in js:
                    d[k] = json.loads(d[k])
                out[host][name].append(d)
        self._switch_loaded.update(out)
        return out

    def drop_switch(self, host: str) -> None:
        """Forget a host's switch rows entirely (host-forget)."""
        s = self.switches.get(host)
        if s is None:
            self.switch(host)
        self.switches[host] = None  # type: ignore[assignment]

    def invalidate_views(self) -> None:
        for host in self._handed_out:
            s = self.switches.get(host)
            if s is not None:
                s.invalidate_view()
        self._handed_out.clear()

    def _flush_switches(self) -> None:
        for host, s in self.switches.items():
            before = self._switch_loaded.get(host, {})
            after = {} if s is None else s.records()
            if s is not None and not s.changed:
                continue
            for name, t in schema.OVS_TABLES.items():
                old = {r["uuid"]: r for r in before.get(name, [])}
                new = {r["uuid"]: r for r in after.get(name, [])}
                js = schema.OVS_JSON[name]
                gone = [u for u in old if u not in new]
                for i in range(0, len(gone), 500):
                    self.conn.execute(t.delete().where(t.c.uuid.in_(gone[i : i + 500])))
                for u in gone:
                    self._record_switch(name, u, old[u], None)
                ins, upd = [], []
                for u, r in new.items():
                    o = old.get(u)
                    if o == r:
                        continue
                    d = dict(r)
                    d["host"] = host
                    for k in js:
                        d[k] = _json_text(d[k])
                    (upd if o is not None else ins).append(d)
                    self._record_switch(name, u, o, r)
                if ins:
                    self.conn.execute(t.insert(), ins)
                if upd:
                    stmt = t.update().where(t.c.uuid == sa.bindparam("_uuid"))
                    for d in upd:
                        d["_uuid"] = d.pop("uuid")
                    self.conn.execute(stmt, upd)

    def _record_switch(self, table: str, uuid: str, old: dict | None, new: dict | None) -> None:
        key = f"{table}:{uuid}"
        if old is None:
            self.created[key] = None
            self.changes[key] = {k: [None, v] for k, v in new.items()}  # type: ignore[union-attr]
        elif new is None:
            self.destroyed[key] = None
            self.changes[key] = {k: [v, None] for k, v in old.items()}
        else:
            self.changed[key] = None
            self.changes[key] = {k: [old.get(k), v] for k, v in new.items() if old.get(k) != v}

    # --- warnings --------------------------------------------------------------------------------
    def warn(self, text: str) -> None:
        """`vmctl: warning: TEXT` on stderr (suppressed by -q)."""
        self.warn_raw(f"vmctl: warning: {text}")

    def warn_raw(self, line: str) -> None:
        line = redact(line)
        self.warnings.append(line)
        cb = self.store.on_warning
        if cb is not None:
            cb(line)

    def journal_head(self) -> tuple[int, str]:
        """(seq, hash) of the last journal entry as this transaction sees it; (0, "") for none.
        Every committed change appends one, so an unchanged head means an unchanged inventory."""
        t = schema.journal
        last = self.conn.execute(sa.select(t.c.seq, t.c.hash).order_by(t.c.seq.desc()).limit(1)).first()
        return (int(last[0]), last[1]) if last else (0, "")

    @property
    def dirty(self) -> bool:
        return bool(self.created or self.changed or self.destroyed) or any(
            s is None or s.changed for s in self.switches.values()
        )


class Store:
    """An opened inventory. `transaction()` yields a Txn; commit happens on success.

    Only a writing store (the default; the runner opens one for a chain with a writing command)
    creates or upgrades an inventory. A read-only store (`read_only=True`) and a dry run never
    create, change or upgrade it: a missing or empty SQLite inventory reads as an empty one (in
    memory, neither file nor directory is created), an older schema is read through an upgraded
    in-memory copy. A database holding other tables and no vmctl schema is refused by every
    command (DATABASE_ERROR "not a vmctl inventory"), and on PostgreSQL, where a database is
    always named explicitly, a read of a database without vmctl's tables is refused likewise."""

    def __init__(
        self,
        db: str | None = None,
        timeout: float = 30.0,
        dry_run: bool = False,
        uuids: UuidSource | None = None,
        on_warning=None,
        read_only: bool = False,
    ):
        self.db = db or default_db()
        self.shown_db = redact_word(self.db)  # the inventory as printed: never a password
        self.timeout = float(timeout)
        self.dry_run = dry_run
        self.read_only = read_only
        self.uuids = uuids or UuidSource()
        self.on_warning = on_warning
        self.memory = False
        self._wal = False  # set WAL mode on connect: once the file is known to be vmctl's (or new)
        self._kept = _kept_engine(self.db)
        if self._kept is not None:
            self.engine, self.dialect, self._wal = self._kept.engine, self._kept.dialect, True
        else:
            self.engine = self._make_engine()
            self.dialect = self.engine.dialect.name
            self._ensure_schema()
            self._kept = _keep_engine(self)

    @property
    def may_create(self) -> bool:
        """Whether this store may create or upgrade the inventory (a writing, real run)."""
        return not (self.read_only or self.dry_run)

    # --- engine and schema -----------------------------------------------------------------------
    def _make_engine(self) -> sa.Engine:
        db = self.db
        if is_url(db):
            url = db
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://") :]
            try:
                if url.startswith("sqlite"):
                    path = _sqlite_file(url)
                    if path is not None and not path.exists() and not self.may_create:
                        return self._memory_engine()
                    eng = sa.create_engine(url)
                    self._sqlite_events(eng)
                    return eng
                # a kept engine's connections outlive a command: check them before use
                kept = _KEPT is not None
                return sa.create_engine(url, isolation_level="SERIALIZABLE", pool_pre_ping=kept)
            except (SQLAlchemyError, ImportError, ValueError) as exc:
                raise VmctlError(
                    "DATABASE_ERROR",
                    "Cannot use that database URL",
                    [("db", self.shown_db), ("reason", redact(str(exc).splitlines()[0]))],
                ) from None
        path = Path(db)
        if path.is_dir():
            raise VmctlError("DATABASE_ERROR", "The inventory path is a directory", [("db", self.shown_db)])
        if not path.exists():
            if not self.may_create:
                # A read or a dry run never creates the inventory file (nor its directory): it
                # works on an empty in-memory one.
                return self._memory_engine()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise VmctlError(
                    "DATABASE_ERROR",
                    "Cannot create the inventory directory",
                    [("db", self.shown_db), ("reason", exc.strerror or str(exc))],
                ) from None
        eng = sa.create_engine(f"sqlite:///{path}")
        self._sqlite_events(eng)
        return eng

    def _memory_engine(self) -> sa.Engine:
        self.memory = True
        self._wal = True
        eng = sa.create_engine("sqlite://")
        self._sqlite_events(eng)
        return eng

    def _sqlite_events(self, eng: sa.Engine) -> None:
        timeout_ms = int(self.timeout * 1000)

        @event.listens_for(eng, "connect")
        def _connect(dbapi_conn, rec):
            # We issue BEGIN ourselves (IMMEDIATE for writers): disable pysqlite's own handling.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            rec.info["vmctl_busy_ms"] = timeout_ms
            if self._wal:
                _set_wal(dbapi_conn)
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.close()

        @event.listens_for(eng, "begin")
        def _begin(conn):
            # a kept engine's connection serves transactions of other timeouts (-t) too
            busy = conn.info.get("vmctl_busy_wanted")
            if busy is not None and busy != conn.info.get("vmctl_busy_ms"):
                conn.exec_driver_sql(f"PRAGMA busy_timeout = {busy}")
                conn.info["vmctl_busy_ms"] = busy
            mode = conn.info.get("vmctl_begin", "BEGIN")
            conn.exec_driver_sql(mode)

    def _inspect(self, conn: sa.Connection) -> tuple[int | None, list[str]]:
        """(schema version, tables): version 0 for an empty database, None for one that holds
        other tables and no vmctl schema (its `meta` table with a schema-version)."""
        insp = sa.inspect(conn)
        tables = sorted(insp.get_table_names())
        if "meta" in tables and {"key", "value"} <= {c["name"] for c in insp.get_columns("meta")}:
            v = conn.execute(
                sa.select(schema.meta.c.value).where(schema.meta.c.key == "schema-version")
            ).scalar()
            if v is not None:
                text = str(v)
                if not (text.isascii() and text.isdigit()):
                    raise VmctlError(
                        "DATABASE_ERROR",
                        "The inventory's schema version is not a number: the file was not written by vmctl "
                        "or is damaged; restore it from a backup or use another inventory (--db PATH)",
                        [("db", self.shown_db), ("schema-version", text)],
                    )
                return int(text), tables
        return (0 if not tables else None), tables

    def _schema_version(self, conn: sa.Connection) -> int:
        version, tables = self._inspect(conn)
        if version is None:
            raise self._not_an_inventory(tables)
        return version

    def _not_an_inventory(self, tables: list[str]) -> VmctlError:
        if tables:
            shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
            reason = f"it holds other tables ({shown}) and no vmctl schema"
        else:
            reason = "it has no vmctl tables; any write command creates them"
        return VmctlError(
            "DATABASE_ERROR",
            "The database is not a vmctl inventory",
            [("db", self.shown_db), ("reason", reason)],
        )

    def _ensure_schema(self) -> None:
        try:
            with self.engine.connect() as conn:
                version, tables = self._inspect(conn)
                conn.rollback()
                # WAL mode on vmctl's own files only; never even a header into an empty file we only read
                if self.dialect == "sqlite" and not self.memory and version is not None:
                    if version or self.may_create:
                        _set_wal(conn.connection.driver_connection)
        except SQLAlchemyError as exc:
            raise _db_error(exc, self.shown_db) from None
        if version is None:
            raise self._not_an_inventory(tables)
        self._wal = True
        if version == schema.SCHEMA_VERSION:
            return
        if version > schema.SCHEMA_VERSION:
            raise VmctlError(
                "SCHEMA_TOO_NEW",
                params=[
                    ("db", self.shown_db),
                    ("schema-version", version),
                    ("supported", schema.SCHEMA_VERSION),
                ],
            )
        if not self.may_create and not self.memory:
            # Never create or upgrade the real inventory in a read or a dry run.
            if version == 0 and self.read_only and self.dialect != "sqlite":
                raise self._not_an_inventory([])
            if version == 0:
                self.engine.dispose()  # an empty database: an empty inventory in memory
                self.engine = self._memory_engine()
                self.dialect = "sqlite"
            else:
                self._copy_to_memory(version)  # an older schema: read through an upgraded copy
        from vmctl.store.migrate import upgrade

        with self._locked_connection(write=True) as conn:
            upgrade(conn, self._schema_version(conn))

    def _copy_to_memory(self, version: int) -> None:
        import sqlite3

        path = _sqlite_file(self.db) if is_url(self.db) else Path(self.db)
        if self.dialect != "sqlite" or path is None:
            raise VmctlError(
                "SCHEMA_TOO_OLD",
                params=[
                    ("db", self.shown_db),
                    ("schema-version", version),
                    ("supported", schema.SCHEMA_VERSION),
                ],
            )
        src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        self.engine.dispose()
        eng = self._memory_engine()
        raw = eng.raw_connection()
        src.backup(raw.driver_connection)
        src.close()
        self.engine, self.dialect = eng, "sqlite"
        self._mem_raw = raw  # keep the single in-memory connection alive

    # --- transactions ------------------------------------------------------------------------------
    @contextmanager
    def _locked_connection(self, write: bool):
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                conn = self.engine.connect()
            except SQLAlchemyError as exc:
                raise _db_error(exc, self.shown_db) from None
            try:
                if self.dialect == "sqlite":
                    conn.info["vmctl_begin"] = "BEGIN IMMEDIATE" if write else "BEGIN"
                    conn.info["vmctl_busy_wanted"] = int(self.timeout * 1000)
                    conn.begin()
                else:
                    conn.begin()
                    if write:
                        ms = max(1, int((deadline - time.monotonic()) * 1000))
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
                break
            except DBAPIError as exc:
                conn.close()
                err = _db_error(exc, self.shown_db)
                if isinstance(err, BusyError):
                    if time.monotonic() >= deadline:
                        raise BusyError(self.timeout) from None
                    time.sleep(0.05)
                    continue
                raise err from None
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def run(self, fn, write: bool, finish=None):
        """Run fn(txn) in one transaction, retrying on lock contention, deadlocks and
        serialization failures until the timeout. `finish(txn)` runs before commit (journal)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return self._run_once(fn, write, finish)
            except DBAPIError as exc:
                err = _db_error(exc, self.shown_db)
                retryable = isinstance(err, BusyError) or _is_serialization_failure(exc)
                if retryable and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                if retryable:
                    raise BusyError(self.timeout) from None
                raise err from None

    def _run_once(self, fn, write, finish):
        txn = None
        try:
            with self._locked_connection(write) as conn:
                txn = Txn(self, conn, write, self.uuids)
                result = fn(txn)
                if write and not self.dry_run and txn.dirty:
                    txn.flush()
                    txn._flush_switches()
                    if finish is not None:
                        finish(txn)
                else:
                    conn.rollback()
        except BaseException:
            # the hosts were acted on for a transaction that did not commit: undo that too
            for callback in txn.on_abort if txn is not None else ():
                callback()
            raise
        for callback in txn.on_commit:
            callback()
        return result, txn

    # --- journal -----------------------------------------------------------------------------------
    def append_journal(self, txn: Txn, command: str) -> int:
        t = schema.journal
        command = redact(
            command
        )  # callers mask each word already (runner.command_line); never store a password
        last, prev = txn.journal_head()
        seq = last + 1
        entry = {
            "seq": seq,
            "time": now_iso(micro=True),
            "user": current_user(),
            "command": command,
            "created": sorted(txn.created),
            "changed": sorted(txn.changed),
            "destroyed": sorted(txn.destroyed),
            "changes": txn.changes,
            "prev-hash": prev,
        }
        entry["hash"] = journal_hash(entry)
        txn.journal_entry = (seq, entry["hash"])
        txn.conn.execute(
            t.insert(),
            [
                {
                    "seq": seq,
                    "time": entry["time"],
                    "user": entry["user"],
                    "command": command,
                    "created": json.dumps(entry["created"]),
                    "changed": json.dumps(entry["changed"]),
                    "destroyed": json.dumps(entry["destroyed"]),
                    "changes": json.dumps(txn.changes, sort_keys=True, separators=(",", ":"), default=str),
                    "prev_hash": prev,
                    "hash": entry["hash"],
                }
            ],
        )
        # the head, in the same transaction: deleting the newest entries leaves a valid shorter
        # chain, which only a head kept elsewhere tells apart (db-check, I16)
        m = schema.meta
        txn.conn.execute(m.delete().where(m.c.key == JOURNAL_HEAD_KEY))
        txn.conn.execute(m.insert(), [{"key": JOURNAL_HEAD_KEY, "value": f"{seq} {entry['hash']}"}])
        return seq

    def dispose(self) -> None:
        if self._kept is None:
            self.engine.dispose()


# --- engines kept between transactions ---------------------------------------------------------------
# A process that runs command after command (the manager, vmctl/daemon) keeps each inventory's
# engine: SQLAlchemy compiles each statement once per engine, and a connection that stays open
# spares the next command opening the file again. A kept engine is used again only while the
# file is the same one (not replaced or removed) and its schema the current one; the connections
# are closed when the commands stop for a while (release_kept_connections), so that an idle
# manager holds no inventory open. None: every Store makes its own engine and disposes of it.
_KEPT: dict[str, _KeptEngine] | None = None
_KEPT_LOCK = threading.Lock()


class _KeptEngine:
    def __init__(self, engine: sa.Engine, dialect: str, identity: tuple | None) -> None:
        self.engine = engine
        self.dialect = dialect
        self.identity = identity  # the SQLite file's (device, inode); None for a database server

    def still_current(self, db: str) -> bool:
        if self.identity is not None and _file_identity(db) != self.identity:
            return False
        try:
            with self.engine.connect() as conn:
                conn.info["vmctl_begin"] = "BEGIN"
                m = schema.meta
                v = conn.execute(sa.select(m.c.value).where(m.c.key == "schema-version")).scalar()
                conn.rollback()
        except SQLAlchemyError:
            return False
        return str(v) == str(schema.SCHEMA_VERSION)


def keep_engines() -> None:
    """From now on, keep each inventory's engine between transactions (a long-running process)."""
    global _KEPT
    if _KEPT is None:
        _KEPT = {}


def release_kept_connections() -> None:
    """Close the kept engines' idle connections (they reopen on the next transaction)."""
    with _KEPT_LOCK:
        engines = [k.engine for k in (_KEPT or {}).values()]
    for engine in engines:
        engine.dispose()


def _kept_engine(db: str | None) -> _KeptEngine | None:
    if _KEPT is None:
        return None
    db = db or default_db()
    with _KEPT_LOCK:
        kept = _KEPT.get(db)
    if kept is None or kept.still_current(db):
        return kept
    with _KEPT_LOCK:
        if _KEPT.get(db) is kept:
            del _KEPT[db]
    kept.engine.dispose()
    return None


def _keep_engine(store: Store) -> _KeptEngine | None:
    """Keep the engine of a store just opened, when it is the inventory itself (not an in-memory
    stand-in for a missing, empty or older one)."""
    if _KEPT is None or store.memory or getattr(store, "_mem_raw", None) is not None:
        return None
    identity = None
    if store.dialect == "sqlite":
        identity = _file_identity(store.db)
        if identity is None:
            return None
    kept = _KeptEngine(store.engine, store.dialect, identity)
    with _KEPT_LOCK:
        old = _KEPT.get(store.db)
        _KEPT[store.db] = kept
    if old is not None:
        old.engine.dispose()
    return kept


def _file_identity(db: str) -> tuple | None:
    path = _sqlite_file(db) if is_url(db) else Path(db)
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


JOURNAL_HEAD_KEY = "journal-head"  # meta: "<seq> <hash>" of the newest journal entry


def stored_journal_head(conn: sa.Connection) -> tuple[int, str] | None:
    """The head append_journal recorded in meta; None in an inventory no vmctl with this
    record has written to yet (fresh, or older)."""
    m = schema.meta
    v = conn.execute(sa.select(m.c.value).where(m.c.key == JOURNAL_HEAD_KEY)).scalar()
    if v is None:
        return None
    seq, _, digest = str(v).partition(" ")
    return (int(seq), digest) if seq.isascii() and seq.isdigit() else (-1, digest)


def _sqlite_file(url: str) -> Path | None:
    """The file a plain `sqlite:///PATH` URL names; None for memory, a `file:` URI or options."""
    try:
        u = sa.engine.make_url(url)
    except (SQLAlchemyError, ValueError):
        return None
    if u.username or u.password or u.host or u.port or u.query:
        return None  # not a plain file URL: create_engine decides (and refuses what it cannot use)
    if not u.database or u.database == ":memory:" or u.database.startswith("file:"):
        return None
    return Path(u.database)


def _set_wal(dbapi_conn) -> None:
    try:
        dbapi_conn.execute("PRAGMA journal_mode = WAL")
    except Exception:  # read-only file: keep whatever mode it has
        pass


def journal_hash(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_serialization_failure(exc: DBAPIError) -> bool:
    code = getattr(getattr(exc, "orig", None), "sqlstate", None) or getattr(
        getattr(exc, "orig", None), "pgcode", None
    )
    return code in ("40001", "40P01", "55P03")


def journal_rows(conn: sa.Connection) -> Iterable[dict]:
    t = schema.journal
    for rec in conn.execute(sa.select(t).order_by(t.c.seq)):
        d = dict(rec._mapping)
        yield {
            "seq": d["seq"],
            "time": d["time"],
            "user": d["user"],
            "command": d["command"],
            "created": json.loads(d["created"]),
            "changed": json.loads(d["changed"]),
            "destroyed": json.loads(d["destroyed"]),
            "changes": json.loads(d["changes"]),
            "prev-hash": d["prev_hash"],
            "hash": d["hash"],
        }
