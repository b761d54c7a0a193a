"""Table and column name matching, the check phase and the row <-> datum mapping for the generic
commands get/set/clear/list (network.md §5)."""

from __future__ import annotations

from functools import lru_cache

from vmctl.errors import OvsError
from vmctl.ovs.datum import Datum, parse_token
from vmctl.ovs.schema import COLUMNS, SUPPORTED, TABLE_NAMES, UUID_SET_COLUMNS, Column

_BIG = 2**32  # an exact match beats every prefix score


def _fold(c: str) -> str:
    return "_" if c == "-" else c.lower()


def _score(name: str, s: str) -> int:
    """How well user text `s` matches `name`: exact, equal when folded, or a folded prefix."""
    if name == s:
        return _BIG
    if len(s) <= len(name):
        for a, b in zip(name, s):
            if _fold(a) != _fold(b):
                return 0
        return _BIG - 1 if len(s) == len(name) else len(s)
    return 0


def _best(names, s: str) -> tuple[str | None, list[str]]:
    """The unique best match of `s` among `names`, or (None, the tied names)."""
    best: str | None = None
    best_score = 0
    tied: list[str] = []
    for name in names:
        sc = _score(name, s)
        if sc > best_score:
            best, best_score, tied = name, sc, [name]
        elif sc == best_score and sc:
            best = None
            tied.append(name)
    return best, (tied if best_score else [])


@lru_cache(maxsize=512)
def resolve_table(s: str) -> str:
    best, tied = _best(TABLE_NAMES, s)
    if best is None:
        if tied:
            raise OvsError(f'"{s}" matches multiple table names: ' + ", ".join(sorted(tied)))
        raise OvsError(f'unknown table "{s}"')
    if best not in SUPPORTED:
        raise OvsError(f"table {best} is not supported by vmctl")
    return best


@lru_cache(maxsize=2048)
def resolve_column(table: str, s: str) -> Column:
    cols = COLUMNS[table]
    best, tied = _best(cols, s)
    if best is None:
        if tied:
            raise OvsError(
                f'{table} contains more than one column whose name matches "{s}": ' + ", ".join(sorted(tied))
            )
        raise OvsError(f'{table} does not contain a column whose name matches "{s}"')
    return cols[best]


def column_token(arg: str) -> tuple[str, int]:
    """Read the leading COLUMN token of a get/set argument: the token and the position after it."""
    tok, pos = parse_token(arg, 0)
    if tok == "":
        raise OvsError(f"{arg}: missing column name")
    return tok, pos


def is_uuid_item(arg: str) -> bool:
    return arg.lower() in ("_uuid", "-uuid")


def split_columns(spec: str) -> list[str]:
    """strtok(spec, ", "): the --columns words."""
    return [w for w in spec.replace(",", " ").split(" ") if w]


def check(name: str, options: dict[str, str | None], args: list[str]) -> None:
    """Phase (2) of network.md §2.3: resolve table and column names of get/set/clear/list."""
    if name not in ("get", "set", "clear", "list") or not args:
        return
    table = resolve_table(args[0])
    if name == "list":
        cols = options.get("--columns")
        if cols is not None:
            for w in split_columns(cols):
                if w.lower() != "_uuid":
                    resolve_column(table, w)
        return
    for arg in args[2:]:
        if name == "clear":
            resolve_column(table, arg)
            continue
        if name == "get" and is_uuid_item(arg):
            continue
        tok, _ = column_token(arg)
        resolve_column(table, tok)


# ------------------------------------------------------------ rows as data

_EMPTY_SCALAR = {"integer": 0, "boolean": False, "string": "", "real": 0.0}


def read_datum(col: Column, row: dict) -> Datum:
    """The column's value in `row` (a vmctl record) as a sorted datum."""
    t = col.type
    if col.access == "fixed":
        if t.scalar:
            return [_EMPTY_SCALAR[t.key.kind]], None
        return [], ([] if t.is_map else None)
    v = row[col.name]
    if t.is_map:
        ks = sorted(v)
        return ks, [v[k] for k in ks]
    if t.scalar:
        return [v], None
    if t.n_max == 1:
        return ([] if v is None else [v]), None
    return sorted(v), None


def write_datum(col: Column, row: dict, d: Datum) -> None:
    t = col.type
    keys, values = d
    if t.is_map:
        row[col.name] = dict(zip(keys, values))  # type: ignore[arg-type]
    elif t.scalar:
        row[col.name] = keys[0]
    elif t.n_max == 1:
        row[col.name] = keys[0] if keys else None
    elif col.name in UUID_SET_COLUMNS:
        row[col.name] = dict.fromkeys(keys)
    else:
        row[col.name] = list(keys)
