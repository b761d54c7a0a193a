"""`<class>-list` and `<class>-param-list|get|set|add|remove|clear` for every class
(model.md §3.8), generated from the object catalog."""

from __future__ import annotations

from vmctl import derived, units
from vmctl.commands.table import COMMANDS, Arg, Command, Ctx, Records, Value, register
from vmctl.errors import MESSAGES, VmctlError
from vmctl.fields import (
    PARAM_HOOKS,
    PARAM_SETTER_HELP,
    PARAM_SETTERS,
    fill_columns,
    hidden_filter,
    lookup_field,
    matches,
    named_ref,
    parse_params,
    parse_value,
    txn_filters,
)
from vmctl.model import CLASSES, SNAPSHOT_COLUMNS, TEMPLATE_COLUMNS, XE_SPELLING, field_name

# Per-class checks param-set/add/remove/clear run before applying a change, so that a param
# command enforces the same rules as the dedicated command. fn(ctx, row, changes) may raise.


# Read-only fields that <class>-param-set may still write under the class's own rule (a thin
# disk's physical-utilisation records guest writes): (class, field) -> fn(ctx, row, text). They are
# set after the plain fields of the same command, the last value given winning.


def sort_rows(rows: list[dict], cls: str) -> list[dict]:
    if CLASSES[cls].named:
        return sorted(rows, key=lambda r: (r["name-label"].encode(), r["uuid"]))
    return sorted(rows, key=lambda r: r["uuid"])


def list_rows(ctx: Ctx, cls: str, view: str, default_columns) -> Records:
    txn = ctx.txn
    filters = txn_filters(txn, cls, ctx.filters)
    fields = (
        parse_params(cls, ctx.a["params"], list(default_columns))
        if "params" in ctx.a
        else list(default_columns)
    )
    rows = txn.all(cls)
    keep = hidden_filter(view, ctx, filters)
    if keep is not None:
        rows = [r for r in rows if keep(r)]
    if filters:
        need = {f for f, _, _ in filters if not CLASSES[cls].fields[f].stored}
        if need:
            derived.fill(txn, cls, rows, need)
        rows = [r for r in rows if matches(cls, r, filters)]
    return Records(cls, sort_rows(fill_columns(txn, cls, rows, fields), cls), fields)


# The views xe has of the vm class (template-*, snapshot-*): what their objects must be, and
# the code naming one that is not.
VIEWS = {
    "template": (lambda r: r["is-a-template"] and not r["is-a-snapshot"], "VM_IS_NOT_A_TEMPLATE"),
    "snapshot": (lambda r: r["is-a-snapshot"], "VM_IS_NOT_A_SNAPSHOT"),
}


def _row(ctx: Ctx, cls: str, view: str | None = None) -> dict:
    row = ctx.txn.resolve_one(cls, ctx.a["uuid"], label=view)
    if view is not None:
        belongs, code = VIEWS[view]
        if not belongs(row):
            raise VmctlError(code, params=[("vm", ctx.txn.ref(cls, row)), ("operation", ctx.cmd.name)])
    return row


def param_list(ctx: Ctx, cls: str, view: str | None = None) -> Records:
    row = _row(ctx, cls, view)
    fields = (
        parse_params(cls, ctx.a["params"], list(CLASSES[cls].fields))
        if "params" in ctx.a
        else list(CLASSES[cls].fields)
    )
    return Records(cls, fill_columns(ctx.txn, cls, [row], fields), fields, single=True)


def param_get(ctx: Ctx, cls: str, view: str | None = None) -> Value:
    row = _row(ctx, cls, view)
    name = ctx.a["param-name"]
    f = lookup_field(cls, name)
    if named_ref(cls, name) is not None:  # xe's <ref>-name-label: the name, read-only
        if "param-key" in ctx.a:
            raise VmctlError("FIELD_TYPE_ERROR", f"{name} is not a map", [("field", name)])
        return Value(fill_columns(ctx.txn, cls, [row], [name])[0][name])
    if not f.stored:
        derived.fill(ctx.txn, cls, [row], [f.name])
    value = row[f.name]
    if f.type == "enum":
        value = XE_SPELLING.get((cls, f.name), {}).get(value, value)
    key = ctx.a.get("param-key")
    if key is not None:
        if f.kind != "map":
            raise VmctlError("FIELD_TYPE_ERROR", f"{f.name} is not a map", [("field", f.name)])
        if key not in value:
            raise VmctlError("MAP_KEY_NOT_FOUND", params=[("field", f.name), ("key", key)])
        value = value[key]
    return Value(value, f.type)


def _writable(cls: str, f) -> None:
    if not f.writable:
        raise VmctlError("FIELD_READ_ONLY", f"{f.name} is read-only", [("class", cls), ("field", f.name)])


def apply_changes(ctx: Ctx, cls: str, row: dict, changes: dict) -> None:
    for hook in PARAM_HOOKS.get(cls, []):
        hook(ctx, row, changes)
    if changes:
        ctx.txn.update(cls, row["uuid"], changes)


def param_set(ctx: Ctx, cls: str, view: str | None = None) -> None:
    row = _row(ctx, cls, view)
    changes: dict = {}
    special: dict[str, str] = {}
    for key, text in ctx.raw_pairs:
        if key == "uuid":
            continue
        if (cls, field_name(cls, key)) in PARAM_SETTERS:
            special[field_name(cls, key)] = text
            continue
        mkey = None
        if ":" in key:
            key, mkey = key.split(":", 1)
        f = lookup_field(cls, key)
        _writable(cls, f)
        if f.kind == "set" or (f.kind == "map" and mkey is None):
            raise VmctlError(
                "FIELD_TYPE_ERROR",
                f"{f.name} cannot be set as a whole: use param-add/param-remove",
                [("field", f.name)],
            )
        if f.kind == "map":
            m = dict(changes.get(f.name, row[f.name]))
            m[mkey] = text
            changes[f.name] = m
            continue
        if mkey is not None:
            raise VmctlError("FIELD_TYPE_ERROR", f"{f.name} is not a map", [("field", f.name)])
        try:
            changes[f.name] = parse_value(
                f, text, ctx.txn, row.get("pool") if CLASSES[cls].pooled else None, cls=cls
            )
        except VmctlError as e:
            if e.code == "INVALID_VALUE":
                specific = e.message != MESSAGES["INVALID_VALUE"]
                raise VmctlError(
                    "FIELD_TYPE_ERROR",
                    e.message if specific else f"{text!r} is not a valid value for {f.name}",
                    [("field", f.name), ("value", text)],
                ) from None
            raise
    apply_changes(ctx, cls, row, changes)
    for key, text in special.items():
        PARAM_SETTERS[(cls, key)](ctx, ctx.txn.get(cls, row["uuid"]), text)


def param_add(ctx: Ctx, cls: str, view: str | None = None) -> None:
    row = _row(ctx, cls, view)
    f = lookup_field(cls, ctx.a["param-name"])
    _writable(cls, f)
    pairs = [(k, v) for k, v in ctx.raw_pairs if k not in ("uuid", "param-name", "param-key")]
    if f.kind == "set":
        items = list(row[f.name])
        keys = [ctx.a["param-key"]] if "param-key" in ctx.a else []
        if not keys:
            raise VmctlError("MISSING_PARAMETER", params=[("name", "param-key")])
        for k in keys:
            if f.ref_class:
                k = ctx.txn.resolve_one(f.ref_class, k)["uuid"]
            if k not in items:
                items.append(k)
        apply_changes(ctx, cls, row, {f.name: items})
    elif f.kind == "map":
        m = dict(row[f.name])
        if "param-key" in ctx.a:
            pairs.append((ctx.a["param-key"], ""))
        if not pairs:
            raise VmctlError("MISSING_PARAMETER", params=[("name", "param-key")])
        for k, v in pairs:
            if k in m:
                raise VmctlError("MAP_DUPLICATE_KEY", params=[("class", cls), ("field", f.name), ("key", k)])
            m[k] = v
        apply_changes(ctx, cls, row, {f.name: m})
    else:
        raise VmctlError("FIELD_TYPE_ERROR", f"{f.name} is neither a set nor a map", [("field", f.name)])


def param_remove(ctx: Ctx, cls: str, view: str | None = None) -> None:
    row = _row(ctx, cls, view)
    f = lookup_field(cls, ctx.a["param-name"])
    _writable(cls, f)
    key = ctx.a["param-key"]
    if f.kind == "set":
        items = list(row[f.name])
        k = key
        if f.ref_class:
            hits = [i for i in items if i == key] or [
                i for i in items if (ctx.txn.get(f.ref_class, i) or {}).get("name-label") == key
            ]
            k = hits[0] if hits else key
        if k not in items:
            raise VmctlError("MAP_KEY_NOT_FOUND", params=[("field", f.name), ("key", key)])
        items.remove(k)
        apply_changes(ctx, cls, row, {f.name: items})
    elif f.kind == "map":
        m = dict(row[f.name])
        if key not in m:
            raise VmctlError("MAP_KEY_NOT_FOUND", params=[("field", f.name), ("key", key)])
        del m[key]
        apply_changes(ctx, cls, row, {f.name: m})
    else:
        raise VmctlError("FIELD_TYPE_ERROR", f"{f.name} is neither a set nor a map", [("field", f.name)])


def param_clear(ctx: Ctx, cls: str, view: str | None = None) -> None:
    row = _row(ctx, cls, view)
    f = lookup_field(cls, ctx.a["param-name"])
    _writable(cls, f)
    if f.kind == "map":
        value: object = {}
    elif f.kind == "set":
        value = []
    elif f.type == "string" or f.is_ref:
        value = ""
        if f.name == "name-label" and cls != "pool":
            raise units.empty_name(f.name)
    else:
        raise VmctlError("FIELD_TYPE_ERROR", f"{f.name} cannot be cleared", [("field", f.name)])
    apply_changes(ctx, cls, row, {f.name: value})


_UUID = Arg("uuid", "uuid", True, "the object's uuid")
_PNAME = Arg("param-name", "string", True, "the field")
_PKEY = Arg("param-key", "string", False, "a map key or set element")
_PARAMS = Arg("params", "string", False, "fields to show: a,b,c or all")


# xe reads these from the metadata VDIs of another pool's database, which vmctl does not model
_DATABASE = {"database": "reading another pool's database (database:) is not modelled"}


def _bind(fn, cls, view=None):
    if view is None:
        return lambda ctx: fn(ctx, cls)
    return lambda ctx: fn(ctx, cls, view)


def _register_params(prefix: str, cls: str, view: str | None, fam: str) -> None:
    """`<prefix>-param-list|get|set|add|remove|clear` on the objects of cls (of one of its views:
    xe's template-param-* and snapshot-param-* act on templates and on snapshots)."""
    what = view or cls
    register(
        Command(
            f"{prefix}-param-list",
            _bind(param_list, cls, view),
            f"Show every field of one {what}",
            family=fam,
            rw=False,
            args=(_UUID, _PARAMS),
            refused=_DATABASE,
        )
    )
    register(
        Command(
            f"{prefix}-param-get",
            _bind(param_get, cls, view),
            f"Print one field of a {what}",
            family=fam,
            rw=False,
            args=(_UUID, _PNAME, _PKEY),
            refused=_DATABASE,
        )
    )
    register(
        Command(
            f"{prefix}-param-set",
            _bind(param_set, cls, view),
            f"Set writable fields of a {what}: FIELD=VALUE, MAP:KEY=VALUE",
            family=fam,
            args=(_UUID,),
            fields_of=cls,
            syntax=f"{prefix}-param-set uuid=UUID FIELD=VALUE... [MAP:KEY=VALUE...]",
        )
    )
    register(
        Command(
            f"{prefix}-param-add",
            _bind(param_add, cls, view),
            f"Add a set element or map keys to a {what} field",
            family=fam,
            args=(_UUID, _PNAME, _PKEY),
            fields_of="*",
            syntax=f"{prefix}-param-add uuid=UUID param-name=FIELD [param-key=KEY | KEY=VALUE...]",
        )
    )
    register(
        Command(
            f"{prefix}-param-remove",
            _bind(param_remove, cls, view),
            f"Remove a set element or map key of a {what}",
            family=fam,
            args=(_UUID, _PNAME, Arg("param-key", "string", True, "the key or element")),
        )
    )
    register(
        Command(
            f"{prefix}-param-clear",
            _bind(param_clear, cls, view),
            f"Empty a map, set, string or ref field of a {what}",
            family=fam,
            args=(_UUID, _PNAME),
        )
    )


def describe_param_setters() -> None:
    """Each family's param setters in the help of its <class>-param-set (the whole table
    loaded: vmctl.commands.load)."""
    for cls, text in PARAM_SETTER_HELP:
        COMMANDS[f"{cls}-param-set"].help += "; " + text


def register_generic() -> None:
    for cls in CLASSES:
        register(
            Command(
                f"{cls}-list",
                _bind(lambda ctx, c: list_rows(ctx, c, c, CLASSES[c].columns), cls),
                f"List {cls} objects, filtered by field=value",
                family=cls,
                rw=False,
                args=(_PARAMS,),
                flags=("--all",) if cls in ("vm", "vdi") else (),
                list_of=cls,
                refused=_DATABASE,
            )
        )
        _register_params(cls, cls, None, cls)
    _register_params("template", "vm", "template", "vm")
    _register_params("snapshot", "vm", "snapshot", "snapshot")
    register(
        Command(
            "template-list",
            lambda ctx: list_rows(ctx, "vm", "template", TEMPLATE_COLUMNS),
            "List templates (not snapshots)",
            family="vm",
            rw=False,
            args=(_PARAMS,),
            list_of="vm",
            refused=_DATABASE,
        )
    )
    register(
        Command(
            "snapshot-list",
            lambda ctx: list_rows(ctx, "vm", "snapshot", SNAPSHOT_COLUMNS),
            "List VM snapshots",
            family="snapshot",
            rw=False,
            args=(_PARAMS,),
            list_of="vm",
            refused=_DATABASE,
        )
    )
