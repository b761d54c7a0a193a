"""Parsing and checking field values given on the command line, for creation arguments,
`*-param-set/add/remove/clear`, list filters and `params=`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmctl import units
from vmctl.errors import VmctlError
from vmctl.model import CLASSES, XE_NAME_FIELDS, Field, field_name

if TYPE_CHECKING:
    from vmctl.commands.table import Ctx


def parse_value(
    f: Field, text: str, txn=None, pool: str | None = None, arg: str | None = None, cls: str | None = None
) -> object:
    """Text -> the field's Python value. Refs are resolved (uuid, name-label or @name). A
    name-label or name-description takes no control character, and a name-label of any class
    but the pool (`cls`) is never empty."""
    name = arg or f.name
    if f.name in units.TEXT_FIELDS:
        text = units.parse_text(text, name)
        if f.name == "name-label" and text == "" and cls != "pool":
            raise units.empty_name(name)
        return text
    if f.type in ("string", "time"):
        return text
    if f.kind == "scalar" and not f.is_ref:
        return units.parse_scalar(f.type, text, name, f.values)
    if f.is_ref:
        if text == "":
            return ""
        if txn is None:
            return text
        row = txn.resolve_one(f.ref_class, text)
        if pool is not None and CLASSES[f.ref_class].pooled and row.get("pool") not in (pool, None):
            raise VmctlError(
                "NOT_IN_SAME_POOL",
                params=[("object", txn.ref(f.ref_class, row)), ("pool", txn.ref("pool", pool))],
            )
        return row["uuid"]
    if f.kind == "set":
        items = [x.strip() for x in text.split(",") if x.strip()] if text else []
        if f.ref_class and txn is not None:
            return [txn.resolve_one(f.ref_class, x)["uuid"] for x in items]
        return items
    return text


def unknown_field(cls: str, name: str) -> VmctlError:
    return VmctlError(
        "UNKNOWN_FIELD", f"The class {cls} has no field {name}", [("class", cls), ("field", name)]
    )


def field_named(cls: str, name: str) -> Field | None:
    """The field of cls named `name` in vmctl's or xe's spelling (model.XE_FIELDS), or None."""
    return CLASSES[cls].fields.get(field_name(cls, name))


def named_ref(cls: str, name: str) -> str | None:
    """The reference field whose object's name-label xe's field `name` shows (`vm-name-label` of
    a vbd: its vm), or None."""
    return XE_NAME_FIELDS.get(cls, {}).get(name)


def lookup_field(cls: str, name: str) -> Field:
    """The field a name given on the command line names: vmctl's or xe's spelling; xe's
    `<ref>-name-label` names the reference field (filters select by its name-label)."""
    f = field_named(cls, name)
    if f is None:
        ref = named_ref(cls, name)
        if ref is None:
            raise unknown_field(cls, name)
        f = CLASSES[cls].fields[ref]
    return f


def parse_params(cls: str, text: str, default: list[str]) -> list[str]:
    """`params=a,b,c` or `all`: the columns to show, each under the name it was asked by."""
    if text == "all":
        return list(CLASSES[cls].fields)
    names = [x.strip() for x in text.split(",") if x.strip()]
    if not names:
        return default
    for n in names:
        lookup_field(cls, n)
    return names


def fill_columns(txn, cls: str, rows: list[dict], columns: list[str]) -> list[dict]:
    """The rows with every column of `columns` present: derived fields computed, and a column
    asked by an xe name (`VCPUs-max`, `vm-uuid`, `sr-name-label`) added under that name to a copy
    of the row (the transaction's own rows keep vmctl's fields only)."""
    from vmctl import derived

    c = CLASSES[cls]
    canonical = [lookup_field(cls, n).name for n in columns]
    derived.fill(txn, cls, rows, [n for n in canonical if not c.fields[n].stored])
    extra = [(n, cn) for n, cn in zip(columns, canonical) if n not in c.fields]
    if not extra:
        return rows
    out = []
    for r in rows:
        r = dict(r)
        for n, cn in extra:
            if named_ref(cls, n) is None:
                r[n] = r[cn]
            else:
                target = txn.get(c.fields[cn].ref_class, r[cn]) if r[cn] else None
                r[n] = target["name-label"] if target else ""
        out.append(r)
    return out


def canonical_enum(f: Field, text: str) -> str:
    """An enum member as vmctl stores it, whatever its case (`Disk` is `disk`)."""
    if f.type != "enum" or text in f.values:
        return text
    folded = text.casefold()
    return next((m for m in f.values if m.casefold() == folded), text)


def parse_filters(cls: str, pairs: list[tuple[str, str]]) -> list[tuple[str, str | None, str]]:
    """`field=value`, `map:key=value`, `tags:contains=x` -> (field, key, value). An enum field's
    value must be one of its members (INVALID_VALUE lists them)."""
    out = []
    for k, v in pairs:
        key = None
        if ":" in k:
            k, key = k.split(":", 1)
        f = lookup_field(cls, k)
        if key is not None and f.kind == "scalar":
            raise unknown_field(cls, f"{k}:{key}")
        if f.type == "enum" and key is None:
            v = units.parse_scalar("enum", v, f.name, f.values)
        out.append((f.name, key, v))
    return out


def ref_filter(f: Field, key: str | None, value: object) -> bool:
    """Does this filter name objects of f's class: `ref=NAME` or `set-of-refs:contains=NAME`?"""
    if not isinstance(value, str) or value == "" or f.ref_class is None:
        return False
    return (f.is_ref and key is None) or (f.kind == "set" and key == "contains")


def resolve_filters(cls: str, filters, lookup) -> list:
    """Filters on reference fields name objects as any object argument does (uuid, name-label or
    @name): their value becomes the frozenset of the uuids it names, from lookup(class, text), which
    fails (UUID_INVALID) when it names nothing. A name several objects share selects rows
    referring to any of them. `ref=` (empty) still selects rows that refer to nothing."""
    out = []
    for name, key, want in filters:
        if ref_filter(CLASSES[cls].fields[name], key, want):
            want = frozenset(lookup(CLASSES[cls].fields[name].ref_class, want))
        out.append((name, key, want))
    return out


def txn_filters(txn, cls: str, filters) -> list:
    """resolve_filters with the transaction's resolution (uuid, name-label, @name)."""
    return resolve_filters(
        cls, filters, lambda rc, text: [r["uuid"] for r in txn.resolve(rc, text, multiple=True)]
    )


def matches(cls: str, row: dict, filters) -> bool:
    from vmctl.cli.output import plain

    c = CLASSES[cls]
    for name, key, want in filters:
        f = c.fields[name]
        have = row.get(name)
        if isinstance(want, frozenset):  # a resolved reference filter
            if not (want.intersection(have) if f.kind == "set" else have in want):
                return False
            continue
        if key is not None:
            if f.kind == "set":
                if key != "contains" or want not in have:
                    return False
            elif have.get(key) != want:
                return False
            continue
        if f.type in ("size", "rate") and not isinstance(have, bool):
            try:
                w = units.parse_size(want, name) if f.type == "size" else units.parse_rate(want, name)
            except VmctlError:
                return False
            if have != w:
                return False
            continue
        text = plain(have, f.type)
        if name == "mac" or name.endswith("-mac"):
            if text.lower() != want.lower():
                return False
        elif text != want:
            return False
    return True


PARAM_HOOKS: dict[str, list] = {}


def param_hook(cls: str):
    def deco(fn):
        PARAM_HOOKS.setdefault(cls, []).append(fn)
        return fn

    return deco


PARAM_SETTERS: dict[tuple[str, str], object] = {}
# (class, help) of each setter, in declaration order: added to <class>-param-set's help once the
# whole table is loaded (vmctl.commands.load), as a family module may be imported alone
PARAM_SETTER_HELP: list[tuple[str, str]] = []


def param_setter(cls: str, field: str, help: str):
    def deco(fn):
        PARAM_SETTERS[(cls, field)] = fn
        PARAM_SETTER_HELP.append((cls, help))
        return fn

    return deco


def hidden_filter(view: str, ctx: Ctx, filters) -> callable:
    """Templates and snapshots hide from vm-list, base copies from vdi-list, unless --all."""
    names = {f for f, _, _ in filters}
    if view == "vm":
        if ctx.flag("all"):
            return None
        show_t, show_s = "is-a-template" in names, "is-a-snapshot" in names
        return lambda r: (
            (show_t or not r["is-a-template"] or r["is-a-snapshot"]) and (show_s or not r["is-a-snapshot"])
        )
    if view == "template":
        return lambda r: r["is-a-template"] and not r["is-a-snapshot"]
    if view == "snapshot":
        return lambda r: r["is-a-snapshot"]
    if view == "vdi" and not ctx.flag("all"):
        return lambda r: r["managed"]
    return None


def extra_fields(ctx: Ctx, cls: str, declared) -> dict:
    """The RW fields given to a creating command as key=value beyond its own arguments
    (model.md §0): name-description, tags, other-config:k=v..."""
    out: dict = {}
    for key, text in ctx.raw_pairs:
        base, mkey = (key.split(":", 1) + [None])[:2] if ":" in key else (key, None)
        if base in declared:
            continue
        f = field_named(cls, base)
        if f is None:
            raise VmctlError("UNKNOWN_PARAMETER", params=[("name", key)])
        if not f.writable:
            raise VmctlError("FIELD_READ_ONLY", params=[("class", cls), ("field", f.name)])
        if f.kind == "map":
            if mkey is None:
                raise VmctlError("FIELD_TYPE_ERROR", params=[("field", f.name)])
            out.setdefault(f.name, {})[mkey] = text
        elif f.kind == "set" and mkey is not None and not f.ref_class:
            # xe's form of a set element, `tags:web=` (the value is not read), as xe's vdi-create takes it
            items = out.setdefault(f.name, [])
            if mkey not in items:
                items.append(mkey)
        elif mkey is not None:
            raise VmctlError("FIELD_TYPE_ERROR", params=[("field", f.name)])
        else:
            out[f.name] = parse_value(f, text, ctx.txn, None, arg=key, cls=cls)
    return out
