"""The generic database commands get, set, clear and list (network.md §5). Table and column
names are matched, and values read and written, by vmctl.ovs.generic."""

from __future__ import annotations

from vmctl.commands.table import Ctx, Text
from vmctl.errors import OvsError
from vmctl.ovs import generic as g
from vmctl.ovs import owned
from vmctl.ovs.datum import atom_str, datum_bare, datum_json, datum_str, json_quote, parse_atom, parse_token
from vmctl.ovs.reply import reply
from vmctl.ovs.schema import COLUMNS
from vmctl.ovs.selection import switch


def get(ctx: Ctx) -> Text:
    s = switch(ctx)
    o = ctx.options
    a = ctx.args
    must = "--if-exists" not in o
    table = g.resolve_table(a[0])
    row = s.get_row(table, a[1], must)
    if row is None:
        return reply(ctx, "")
    out: list[str] = []
    for arg in a[2:]:
        if g.is_uuid_item(arg):
            out.append(row["uuid"] + "\n")
            continue
        tok, pos = g.column_token(arg)
        col = g.resolve_column(table, tok)
        key = None
        if pos < len(arg) and arg[pos] == ":":
            key, pos = parse_token(arg, pos + 1)
        if pos < len(arg):
            raise OvsError(f'{arg}: trailing garbage "{arg[pos:]}" in argument')
        d = g.read_datum(col, row)
        if key is not None:
            t = col.type
            if not t.is_map:
                raise OvsError(f"cannot specify key to get for non-map column {col.name}")
            k = parse_atom(t.key, key)[0]
            keys, values = d
            if k in keys:
                out.append(atom_str(t.value.kind, values[keys.index(k)]))  # type: ignore[index,union-attr]
            elif must:
                raise OvsError(f'no key "{key}" in {table} record "{a[1]}" column {col.name}')
        else:
            out.append(datum_str(col.type, d))
        out.append("\n")
    return reply(ctx, "".join(out))


def set_(ctx: Ctx) -> Text:
    return _edit_columns(ctx, lambda s, table, row, arg: s.set_column(table, row, arg))


def clear(ctx: Ctx) -> Text:
    return _edit_columns(ctx, _clear_column)


def _edit_columns(ctx: Ctx, edit) -> Text:
    """set and clear: the row named by the first two arguments (none with --if-exists: nothing
    to do), refused when the xe layer owns it, then edit(session, table, row, arg) for each
    further argument."""
    s = switch(ctx)
    a = ctx.args
    table = g.resolve_table(a[0])
    row = s.get_row(table, a[1], "--if-exists" not in ctx.options)
    if row is None:
        return reply(ctx, "")
    owned.check_edit_row(ctx, s, table, row)
    tags = row.get("tag") if table == "Port" else None
    for arg in a[2:]:
        edit(s, table, row, arg)
    # of the settable columns only Port.tag shapes the view
    s.discard_view(table == "Port" and row["tag"] != tags)
    return reply(ctx, "")


def _clear_column(s, table: str, row: dict, arg: str) -> None:
    col = g.resolve_column(table, arg)
    if not col.mutable and row["uuid"] not in s.inserted:
        raise OvsError(f"cannot modify read-only column {col.name} in table {table}")
    if col.type.n_min > 0:
        raise OvsError(
            f'"clear" operation cannot be applied to column {col.name} of table {table}, '
            "which is not allowed to be empty"
        )
    s.check_mutable(table, row, col)
    g.write_datum(col, row, ([], {} if col.type.is_map else None))  # type: ignore[arg-type]
    s.dirty = True


def list_(ctx: Ctx) -> Text:
    s = switch(ctx)
    s.set_display(ctx.opts.get("bare"), ctx.opts.get("no_headings"))
    o = ctx.options
    a = ctx.args
    table = g.resolve_table(a[0])
    spec = o.get("--columns")
    cols: list | None
    allcols = COLUMNS[table]
    if spec is None:
        cols = [None, *allcols.values()]
    else:
        cols = [None if w.lower() == "_uuid" else g.resolve_column(table, w) for w in g.split_columns(spec)]
        if not cols:
            raise OvsError("must specify at least one column name")
    must = "--if-exists" not in o
    if len(a) > 1:
        rows = [r for r in (s.get_row(table, rid, must) for rid in a[1:]) if r is not None]
    else:
        rows = sorted(s.rows_of(table).values(), key=lambda r: (r["name"], r["uuid"]))
    if ctx.fmt == "json":
        # ovs-vsctl --format=json: one object a table, whatever --no-headings says (--bare prints text)
        if not s.bare:
            return Text(_list_json(table, cols, rows))
    out: list[str] = []
    if s.tables_printed:
        out.append("\n")
    s.tables_printed += 1
    for n, row in enumerate(rows):
        if n:
            out.append("\n")
        for col in cols:
            if col is None:
                name, text = "_uuid", row["uuid"]
            else:
                d = g.read_datum(col, row)
                name = col.name
                text = datum_bare(col.type, d) if s.bare else datum_str(col.type, d)
            if s.headings:
                out.append(f"{name:<20}: ")
            out.append(text + "\n")
    return Text("".join(out))  # tables are printed as they are, also with --oneline


def _list_json(table: str, cols: list, rows: list[dict]) -> str:
    """`list` as ovs-vsctl --format=json prints it: {"data":[[...],...],"headings":[...]}."""
    data = []
    for row in rows:
        cells = []
        for col in cols:
            if col is None:
                cells.append(f'["uuid",{json_quote(row["uuid"])}]')
            else:
                cells.append(datum_json(col.type, g.read_datum(col, row)))
        data.append("[" + ",".join(cells) + "]")
    heads = ",".join(json_quote("_uuid" if c is None else c.name) for c in cols)
    return '{"data":[' + ",".join(data) + '],"headings":[' + heads + "]}\n"
