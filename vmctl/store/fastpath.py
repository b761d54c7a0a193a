"""Fast read paths in plain sqlite3, without SQLAlchemy, typer or rich (architecture.md §3):
`<class>-list` with stored-field columns and filters in every format but a terminal table,
and `<class>-param-get` of a stored field. Anything else, or any doubt, returns None and the
normal path runs (and produces the errors). tests/test_fastpath.py checks both paths agree.
"""

from __future__ import annotations

import json
import os
import sys

_OUTPUT = {"--minimal": "minimal", "--no-headings": "no_headings"}


def _split(argv: list[str]):
    """Global options this path understands, then one command and its words."""
    g = {"db": None, "fmt": None, "minimal": False, "no_headings": False}
    i = 0
    while i < len(argv):
        w = argv[i]
        if w.startswith("--db="):
            g["db"] = w[5:]
        elif w == "--db" and i + 1 < len(argv):
            i += 1
            g["db"] = argv[i]
        elif w.startswith("--format="):
            g["fmt"] = w[9:]
        elif w in ("-f", "--format") and i + 1 < len(argv):
            i += 1
            g["fmt"] = argv[i]
        elif w in _OUTPUT:
            g[_OUTPUT[w]] = True
        elif w.startswith("-"):
            return None
        else:
            break
        i += 1
    if i >= len(argv):
        return None
    return g, argv[i], argv[i + 1 :]


def try_run(argv: list[str]) -> int | None:
    try:
        return _try(argv)
    except Exception:  # any doubt: the normal path decides (and reports errors properly)
        return None


def _try(argv: list[str]) -> int | None:
    if _looks_ovs(argv):
        return _ovs_read_only(argv)
    parts = _split(argv)
    if parts is None:
        return None
    g, name, words = parts
    if "--" in words:
        return None
    if name.endswith("-param-get"):
        cls, op = name[: -len("-param-get")], "get"
    elif name.endswith("-list") and name not in ("journal-list",) and not name.endswith("-param-list"):
        cls, op = name[: -len("-list")], "list"
    else:
        return None
    view = cls
    if cls in ("template", "snapshot"):
        if op == "get":
            return None  # template-param-get checks its object is a template: the normal path
        cls = "vm"
    from vmctl.model import CLASSES, SNAPSHOT_COLUMNS, TEMPLATE_COLUMNS

    c = CLASSES.get(cls)
    if c is None:
        return None
    pairs: list[tuple[str, str]] = []
    show_all = False
    it = iter(words)
    for w in it:
        if w in ("-f", "--format"):
            g["fmt"] = next(it, None)
            if g["fmt"] is None:
                return None
        elif w.startswith("--format="):
            g["fmt"] = w[9:]
        elif w == "--all":
            show_all = True
        elif w == "--minimal":
            g["minimal"] = True
        elif w == "--no-headings":
            g["no_headings"] = True
        elif "=" in w and not w.startswith("-"):
            k, _, v = w.partition("=")
            pairs.append((k, v))
        else:
            return None
    fmt = g["fmt"] or os.environ.get("VMCTL_FORMAT") or "table"
    from vmctl.cli.grammar import FORMATS

    if fmt not in FORMATS or fmt == "yaml":
        return None
    if fmt == "table" and not g["minimal"] and sys.stdout.isatty():
        return None
    db = g["db"] or os.environ.get("VMCTL_DB")
    if db is None:
        from vmctl.store.txn_paths import default_db

        db = default_db()
    if "://" in db or not os.path.isfile(db):
        return None
    conn = _connect(db)
    if conn is None:
        return None
    try:
        if op == "get":
            return _param_get(conn, c, dict(pairs), len(pairs))
        default = {"template": TEMPLATE_COLUMNS, "snapshot": SNAPSHOT_COLUMNS}.get(view, c.columns)
        return _list(conn, c, view, pairs, show_all, default, fmt, g)
    finally:
        conn.close()


def inventory_stamp(db: str) -> tuple | None:
    """What tells one state of an SQLite inventory from another, for the manager's cache of
    these reads (vmctl/daemon/warm.py): the file (device, inode), its schema version and its
    journal head (every committed change appends an entry). None when it cannot be read."""
    import sqlite3

    try:
        st = os.stat(db)
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    except (OSError, sqlite3.Error):
        return None
    try:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema-version'").fetchone()
        head = conn.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return (st.st_dev, st.st_ino, version, head)


def _connect(db: str):
    import sqlite3

    from vmctl.store.schema_version import SCHEMA_VERSION

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        v = conn.execute("SELECT value FROM meta WHERE key = 'schema-version'").fetchone()
    except sqlite3.Error:
        conn.close()
        return None
    if v is None or int(v[0]) != SCHEMA_VERSION:
        conn.close()
        return None
    return conn


def _decode(f, v):
    if f.kind != "scalar":
        return json.loads(v)
    if f.type == "bool":
        return bool(v)
    return v


def _list(conn, c, view, pairs, show_all, default, fmt, g) -> int | None:
    from vmctl.cli.output import render_records
    from vmctl.fields import matches
    from vmctl.model import field_name

    fields = list(default)
    filters = []
    for k, v in pairs:
        if k == "params":
            if v == "all":
                return None
            fields = [x.strip() for x in v.split(",") if x.strip()] or list(default)
            continue
        if ":" in k:
            return None
        filters.append((field_name(c.name, k), None, v))  # xe's names too (model.XE_FIELDS)
    filters = _resolve(conn, c, filters)
    if filters is None:
        return None
    if g["minimal"]:
        fields = fields[:1]  # --minimal prints only the first field: derived later ones do not matter
    # a column asked by an xe name shows its field under that name
    canonical = {n: field_name(c.name, n) for n in fields}
    if not filters and fmt in ("json", "csv", "tsv") or (not filters and g["minimal"]):
        served = _list_in_sql(conn, c, view, show_all, fields, canonical, fmt, g)
        if served is not None:
            return served
    need = {canonical[n] for n in fields} | {f for f, _, _ in filters}
    if view in ("vm", "template", "snapshot"):
        need |= {"is-a-template", "is-a-snapshot"}
    if view == "vdi":
        need.add("managed")
    if c.named:
        need |= {"name-label"}
    need.add("uuid")
    fobjs = []
    for n in sorted(need):
        f = c.fields.get(n)
        if f is None or not f.stored:
            return None
        fobjs.append(f)
    cols = ", ".join(f'"{f.column}"' for f in fobjs)
    rows = []
    for rec in conn.execute(f'SELECT {cols} FROM "{c.table}"'):
        rows.append({f.name: _decode(f, v) for f, v in zip(fobjs, rec)})
    if view == "vm" and not show_all:
        names = {f for f, _, _ in filters}
        st, ss = "is-a-template" in names, "is-a-snapshot" in names
        rows = [
            r
            for r in rows
            if (st or not r["is-a-template"] or r["is-a-snapshot"]) and (ss or not r["is-a-snapshot"])
        ]
    elif view == "template":
        rows = [r for r in rows if r["is-a-template"] and not r["is-a-snapshot"]]
    elif view == "snapshot":
        rows = [r for r in rows if r["is-a-snapshot"]]
    elif view == "vdi" and not show_all:
        rows = [r for r in rows if r["managed"]]
    if filters:
        rows = [r for r in rows if matches(c.name, r, filters)]
    if c.named:
        rows.sort(key=lambda r: (r["name-label"].encode(), r["uuid"]))
    else:
        rows.sort(key=lambda r: r["uuid"])
    shown = [(n, cn) for n, cn in canonical.items() if n != cn]
    for r in rows if shown else ():
        for n, cn in shown:
            r[n] = r[cn]
    sys.stdout.write(render_records(c.name, rows, fields, fmt, g["minimal"], g["no_headings"]))
    return 0


def _resolve(conn, c, filters):
    """Filters as the normal path checks and resolves them (fields.parse_filters and
    resolve_filters), or None when only the normal path can: an unknown field, an enum value that
    is not a member (the error), a reference naming nothing (the error) or an @name."""
    from vmctl.fields import canonical_enum, resolve_filters
    from vmctl.model import CLASSES

    for i, (name, key, v) in enumerate(filters):
        f = c.fields.get(name)
        if f is not None and f.type == "enum":
            v = canonical_enum(f, v)  # any case, as xe reads enums
            filters[i] = (name, key, v)
        if f is None or (f.type == "enum" and v not in f.values) or (f.is_ref and v.startswith("@")):
            return None

    def lookup(cls: str, text: str) -> list[str]:
        rc = CLASSES[cls]
        hits = conn.execute(f'SELECT uuid FROM "{rc.table}" WHERE uuid = ?', (text,)).fetchall()
        if not hits and rc.named:
            hits = conn.execute(f'SELECT uuid FROM "{rc.table}" WHERE name_label = ?', (text,)).fetchall()
        if not hits:
            raise LookupError(text)
        return [h[0] for h in hits]

    try:
        return resolve_filters(c.name, filters, lookup)
    except LookupError:
        return None


_HIDDEN_SQL = {
    "vm": "is_a_template = 0 OR is_a_snapshot = 1) AND (is_a_snapshot = 0",
    "template": "is_a_template = 1 AND is_a_snapshot = 0",
    "snapshot": "is_a_snapshot = 1",
    "vdi": "managed = 1",
}


def _list_in_sql(conn, c, view, show_all, fields, canonical, fmt, g) -> int | None:
    """An unfiltered list: SQLite hides and orders the rows (its BINARY collation is byte order,
    the order sort_rows uses) and each tuple is rendered directly, without building row dicts."""
    from vmctl.cli.output import escape_minimal, json_safe, plain, text
    from vmctl.model import XE_SPELLING

    fobjs = [c.fields.get(canonical[n]) for n in fields]
    if any(f is None or not f.stored for f in fobjs):
        return None
    if any((c.name, f.name) in XE_SPELLING for f in fobjs):
        return None  # enum members xe spells otherwise: the row path renders them
    where = ""
    cond = _HIDDEN_SQL.get(view)
    if cond and not (show_all and view in ("vm", "vdi")):
        where = f" WHERE ({cond})"
    order = "name_label, uuid" if c.named else "uuid"
    cols = ", ".join(f'"{f.column}"' for f in fobjs)
    cur = conn.execute(f'SELECT {cols} FROM "{c.table}"{where} ORDER BY {order}')
    simple = all(f.kind == "scalar" and f.type != "bool" for f in fobjs)
    if g["minimal"]:
        f0 = fobjs[0]
        if simple:
            out = ",".join(escape_minimal(str(r[0])) for r in cur)
        else:
            out = ",".join(escape_minimal(plain(_decode(f0, r[0]), f0.type)) for r in cur)
        sys.stdout.write(out + "\n")
        return 0
    if fmt == "json":
        names = list(fields)
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
        if simple:
            parts = [dumps(dict(zip(names, r))) for r in cur]
        else:
            parts = [dumps({n: _decode(f, v) for n, f, v in zip(names, fobjs, r)}) for r in cur]
        sys.stdout.write(json_safe("[\n  " + ",\n  ".join(parts) + "\n]\n") if parts else "[]\n")
        return 0
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
    if not g["no_headings"]:
        w.writerow(fields)
    for r in cur:
        w.writerow([text(_decode(f, v), f.type) for f, v in zip(fobjs, r)])
    sys.stdout.write(buf.getvalue())
    return 0


def _param_get(conn, c, args: dict, n: int) -> int | None:
    from vmctl.cli.output import text
    from vmctl.model import XE_SPELLING, field_name

    if set(args) - {"uuid", "param-name", "param-key"} or n != len(args) or "uuid" not in args:
        return None
    f = c.fields.get(field_name(c.name, args.get("param-name", "")))
    if f is None or not f.stored:
        return None
    rec = conn.execute(f'SELECT "{f.column}" FROM "{c.table}" WHERE uuid = ?', (args["uuid"],)).fetchone()
    if rec is None:
        return None
    value = _decode(f, rec[0])
    if "param-key" in args:
        if f.kind != "map" or args["param-key"] not in value:
            return None
        value = value[args["param-key"]]
    elif f.type == "enum":
        value = XE_SPELLING.get((c.name, f.name), {}).get(value, value)
    sys.stdout.write(text(value, f.type) + "\n")
    return 0


# --- read-only ovs-style chains (list-br, list-ports, show, br-exists, get, list, ...) -------------------
def _looks_ovs(argv: list[str]) -> bool:
    from vmctl.ovs.commands import COMMANDS

    return any(w in COMMANDS for w in argv)


def _ovs_read_only(argv: list[str]) -> int | None:
    """A chain made only of read-only ovs-style commands, on SQLite: load the host's rows with
    sqlite3 and run the pure session. Any error falls back to the normal path, which produces
    the same message (warnings are held back until success for that reason)."""
    from vmctl import ovs
    from vmctl.cli.grammar import FORMATS, check_arg_count, check_command_options, parse
    from vmctl.ovs.commands import COMMANDS

    inv = parse(argv)
    o = inv.opts
    if not inv.segments or set(o) - {
        "db",
        "host",
        "oneline",
        "format",
        "minimal",
        "no-headings",
        "quiet",
        "bare",
        "timeout",
        "no-wait",
        "retry",
        "no-syslog",
        "verbose",
        "log-file",
    }:
        return None
    # invalid global values: the normal path reports them
    if "timeout" in o and not (str(o["timeout"]).isdigit() and int(str(o["timeout"])) > 0):
        return None
    if "format" in o and o["format"] not in FORMATS:
        return None
    for seg in inv.segments:
        spec = COMMANDS.get(seg.name)
        if spec is None or not spec.read_only or "--help" in seg.options:
            return None
        check_command_options(seg, spec.options)
        check_arg_count(seg, spec.min_args, spec.max_args)
        ovs.check(seg.name, seg.options, seg.args)
    db = o.get("db") or os.environ.get("VMCTL_DB")
    if db is None:
        from vmctl.store.txn_paths import default_db

        db = default_db()
    if "://" in str(db) or not os.path.isfile(str(db)):
        return None
    conn = _connect(str(db))
    if conn is None:
        return None
    try:
        name = o.get("host") or os.environ.get("VMCTL_HOST")
        if name:
            hosts = (
                conn.execute("SELECT uuid FROM host WHERE uuid = ?", (name,)).fetchall()
                or conn.execute("SELECT uuid FROM host WHERE name_label = ?", (name,)).fetchall()
            )
        else:
            hosts = conn.execute("SELECT uuid FROM host").fetchall()
        if len(hosts) != 1:
            return None
        host = hosts[0][0]
        records = {}
        for table, js in (
            ("bridge", ("ports", "controller", "external_ids", "other_config")),
            ("port", ("interfaces", "trunks", "external_ids", "other_config")),
            ("interface", ("options", "external_ids", "other_config")),
            ("controller", ()),
        ):
            cur = conn.execute(f"SELECT * FROM ovs_{table} WHERE host = ? ORDER BY uuid", (host,))
            cols = [d[0] for d in cur.description]
            rows = []
            for rec in cur:
                d = dict(zip(cols, rec))
                d.pop("host")
                for k in js:
                    d[k] = json.loads(d[k])
                for k in ("fake_bridge", "bond_fake_iface"):
                    if k in d:
                        d[k] = bool(d[k])
                rows.append(d)
            records[table] = rows
    finally:
        conn.close()
    warnings: list[str] = []
    session = ovs.Session(host, records, lambda: "", warnings.append)
    outs = [
        session.run(
            seg.name,
            seg.options,
            seg.args,
            oneline=bool(o.get("oneline")),
            bare=bool(o.get("bare")),
            no_headings=bool(o.get("no-headings")),
            fmt=str(o.get("format") or os.environ.get("VMCTL_FORMAT") or "table"),
        )
        for seg in inv.segments
    ]
    for w in warnings:
        sys.stderr.write(w + "\n")
    sys.stdout.write("".join(outs))
    return 0
