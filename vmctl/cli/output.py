"""Renderers for every output format (cli.md §3). Import-light: json and csv from the standard
library; yaml and rich only when those formats are asked for."""

from __future__ import annotations

import io
import json
import sys

from vmctl.errors import OvsError, Ref, VmctlError
from vmctl.model import CLASSES, JOURNAL_FIELDS, XE_SPELLING, field_name
from vmctl.units import escape_controls, humanise_duration, humanise_size


def field_type(cls: str, name: str) -> str:
    """The type of a column; one asked by an xe name has its field's (`VCPUs-max`: vcpus's), an
    xe `<ref>-name-label` column is a string."""
    if cls == "journal":
        f = JOURNAL_FIELDS.get(name)
    else:
        f = CLASSES[cls].fields.get(field_name(cls, name)) if cls in CLASSES else None
    return f.type if f else "string"


def xe_spelled(cls: str, rows: list[dict], fields: list[str]) -> list[dict]:
    """The rows with enum members as xe prints them (model.XE_SPELLING: a vbd's `disk` is
    `Disk`), in copies; the rows as they are when no column needs it."""
    if cls not in CLASSES:
        return rows
    spell = [(f, m) for f in fields if (m := XE_SPELLING.get((cls, field_name(cls, f))))]
    if not spell:
        return rows
    out = []
    for r in rows:
        r = dict(r)
        for f, m in spell:
            v = r.get(f)
            if isinstance(v, str):
                r[f] = m.get(v, v)
        out.append(r)
    return out


def plain(value: object, ftype: str = "string") -> str:
    """The one plain rendering: bytes, true|false, `a; b`, `k: v; k2: v2`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return "; ".join(plain(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Ref):
        return value.render()
    return str(value)


def text(value: object, ftype: str = "string") -> str:
    """`plain`, with control characters escaped: every value a text format prints (a stored
    value, from an older inventory or a free-form field, never reaches a terminal raw)."""
    return escape_controls(plain(value, ftype))


def human(value: object, ftype: str) -> str:
    """Table cells: sizes humanised with binary suffixes, durations in ms/s."""
    if ftype in ("size",) and isinstance(value, int) and not isinstance(value, bool):
        return humanise_size(value)
    if ftype == "rate" and isinstance(value, int) and not isinstance(value, bool):
        return humanise_size(value) + "/s"
    if ftype == "duration" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return humanise_duration(float(value))
    return text(value, ftype)


# DEL and the C1 controls: json.dumps(ensure_ascii=False) escapes only the C0 ones
_JSON_C1 = {c: f"\\u{c:04x}" for c in range(0x7F, 0xA0)}


def json_safe(encoded: str) -> str:
    """JSON text with DEL and C1 controls escaped too (they can only stand inside strings)."""
    return encoded.translate(_JSON_C1)


def jsonable(value: object) -> object:
    if isinstance(value, Ref):
        return value.uuid
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def records_data(cls: str, rows: list[dict], fields: list[str]) -> list[dict]:
    return [{f: jsonable(r.get(f)) for f in fields} for r in xe_spelled(cls, rows, fields)]


def json_records(data: list[dict]) -> str:
    """A JSON array with one compact object per line: readable, and fast because the C encoder
    is used (json.dumps with indent= falls back to the pure-Python one)."""
    if not data:
        return "[]\n"
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    return json_safe("[\n  " + ",\n  ".join(dumps(d) for d in data) + "\n]\n")


def json_document(value: object) -> str:
    """Every JSON document vmctl prints, in one layout (README "Output"): an array puts each
    element on a line of its own, an object each of its keys, two spaces deeper per level; an
    object that is an element of an array stands whole (compact) on its line; empty arrays and
    objects print as [] and {}. A list of records is therefore one record per line, a plan one
    key per line with one move per line, a chain or batch one line per command that prints an
    object. DEL and C1 controls are escaped too (json_safe)."""
    return json_safe(_layout(value, "")) + "\n"


def _layout(value: object, indent: str) -> str:
    dumps = _encoder().encode
    if isinstance(value, list) and value:
        inner = indent + "  "
        parts = [dumps(v) if isinstance(v, dict) else _layout(v, inner) for v in value]
        return "[\n" + ",\n".join(inner + p for p in parts) + "\n" + indent + "]"
    if isinstance(value, dict) and value:
        inner = indent + "  "
        parts = [f"{dumps(str(k))}: {_layout(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(inner + p for p in parts) + "\n" + indent + "}"
    return dumps(value)


def _encoder() -> json.JSONEncoder:
    return json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))


# Byte counts and byte rates in plans and reports, by key: whole numbers in every format.
BYTE_KEYS = frozenset(
    {
        "memory",
        "bytes",
        "storage-bytes",
        "bytes-to-copy",
        "dirty-rate",
        "rate",
        "required-bandwidth",
        "throttle-to",
    }
)


def whole_bytes(value: object, key: str | None = None) -> object:
    """A plan's or report's data with every byte count (BYTE_KEYS) a whole number, rounded as
    the text views round them. The standard deviations of a rebalancing plan (`sigma-before`,
    `sigma-after`: per resource, keyed `memory` too) are ratios, left as they are."""
    if isinstance(value, dict):
        return {k: v if k.startswith("sigma") else whole_bytes(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_bytes(v, key) for v in value]
    if key in BYTE_KEYS and isinstance(value, float) and value == value and abs(value) != float("inf"):
        return int(round(value))
    return value


def escape_minimal(text: str) -> str:
    """--minimal's value: backslashes and commas escaped, then control characters."""
    return escape_controls(text.replace("\\", "\\\\").replace(",", "\\,"))


def render_records(
    cls: str,
    rows: list[dict],
    fields: list[str],
    fmt: str,
    minimal: bool = False,
    no_headings: bool = False,
    single: bool = False,
    tty: bool = False,
    access: dict | None = None,
) -> str:
    rows = xe_spelled(cls, rows, fields[:1] if minimal else fields)
    if minimal:
        if not fields:
            return "\n"
        f0 = fields[0]
        t = field_type(cls, f0)
        return ",".join(escape_minimal(plain(r.get(f0), t)) for r in rows) + "\n"
    if fmt == "json":
        data = records_data(cls, rows, fields)
        if single:
            return json_document(data[0] if data else {})
        return json_records(data)
    if fmt == "yaml":
        import yaml

        data = records_data(cls, rows, fields)
        return yaml.safe_dump(
            data[0] if single and data else data,
            sort_keys=False,
            allow_unicode=True,
            default_flow_style=False,
        )
    if fmt in ("csv", "tsv"):
        import csv

        buf = io.StringIO()
        w = csv.writer(buf, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
        if not no_headings:
            w.writerow(fields)
        types = [field_type(cls, f) for f in fields]
        for r in rows:
            w.writerow([text(r.get(f), t) for f, t in zip(fields, types)])
        return buf.getvalue()
    # table
    types = [field_type(cls, f) for f in fields]
    if single:
        # xe's param-list layout: right-aligned names with their access, one field a line
        width = max((len(f) for f in fields), default=0)
        lines = []
        for r in rows:
            for f, t in zip(fields, types):
                acc = (access or {}).get(f, "RO")
                lines.append(f"{f:>{width}} ({acc:>3}): {human(r.get(f), t)}")
            lines.append("")
        return "\n".join(lines[:-1]) + "\n" if lines else ""
    if cls == "journal" and any(t in ("set", "map") for t in types):
        return _journal_blocks(rows, fields, types)
    cells = [[human(r.get(f), t) for f, t in zip(fields, types)] for r in rows]
    if tty and len(rows) <= 1000:
        boxed = _rich_table(fields, cells, no_headings)
        if boxed is not None:
            return boxed
    from vmctl.cli.views import aligned

    return aligned(fields, cells, headings=not no_headings)


_UUID_LEN = 36


def _has_uuid(cells: list[str]) -> bool:
    from vmctl.units import is_uuid

    return any(is_uuid(w) for c in cells for w in c.replace(";", " ").replace(":", " ").split())


def _journal_blocks(rows: list[dict], fields: list[str], types: list[str]) -> str:
    """journal-list with its sets or its changes in a table: xe's param-list layout per entry,
    entries a blank line apart; a set lists one object a line, `changes` one changed field a
    line (`cls:uuid field: before -> after`), continuation lines aligned under the first."""
    width = max(len(f) for f in fields)
    pad = " " * (width + 8)
    out = []
    for r in rows:
        lines = []
        for f, t in zip(fields, types):
            v = r.get(f)
            if t == "set":
                items = [plain(x) for x in v or []]
            elif t == "map":
                items = [
                    f"{obj} {name}: {_change(change)}"
                    for obj, fields_changed in (v or {}).items()
                    for name, change in (fields_changed.items() if isinstance(fields_changed, dict) else [])
                ]
            else:
                items = [human(v, t)]
            acc = {"set": "SRO", "map": "MRO"}.get(t, "RO")
            head = f"{f:>{width}} ({acc:>3}): "
            lines.append((head + (items[0] if items else "")).rstrip())
            lines.extend(pad + x for x in items[1:])
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def _change(change: object) -> str:
    if isinstance(change, (list, tuple)) and len(change) == 2:
        before, after = change
        return f"{_json_cell(before)} -> {_json_cell(after)}"
    return _json_cell(change)


def _json_cell(v: object) -> str:
    """A changed field's value: strings as they are (an empty one as ""), others as JSON."""
    if isinstance(v, str):
        return v if v else '""'
    return _encoder().encode(jsonable(v))


def _rich_table(fields: list[str], cells: list[list[str]], no_headings: bool) -> str | None:
    """The boxed table. A column holding uuids is never narrower than a uuid, so none is ever
    cut; other columns give up room and fold their text (never an ellipsis). None when the
    terminal is too narrow even for that (the caller prints the plain aligned table)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    width = _term_width()
    n = len(fields)
    natural = [max([len(fields[i]) if not no_headings else 1] + [len(r[i]) for r in cells]) for i in range(n)]
    least = [_UUID_LEN if _has_uuid([r[i] for r in cells]) else min(natural[i], 4) for i in range(n)]
    room = width - (3 * n + 1)  # each column: padding (2) and a border (1), one more border
    if sum(least) > room:
        return None
    widths = list(natural)
    if sum(natural) > room:
        # every column its least, then the rest shared evenly among the columns still short of
        # their natural width (a narrow column gets all it needs, wide ones share what is left)
        widths = list(least)
        spare = room - sum(least)
        while spare > 0:
            short = [i for i in range(n) if widths[i] < natural[i]]
            if not short:
                break
            share = max(spare // len(short), 1)
            for i in short:
                give = min(share, natural[i] - widths[i], spare)
                widths[i] += give
                spare -= give
    table = Table(show_header=not no_headings, header_style="bold cyan")
    for f, w in zip(fields, widths):
        table.add_column(f, width=w, overflow="fold")
    for row in cells:
        table.add_row(*(Text(c) for c in row))  # cells are text, never rich markup
    console = Console(file=io.StringIO(), force_terminal=True, width=width)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined]


def _term_width() -> int:
    import shutil

    return shutil.get_terminal_size((120, 24)).columns


# --- results -------------------------------------------------------------------------------------------
def result_data(result: object) -> object:
    """The JSON/YAML value of one command's result (None when it prints nothing)."""
    from vmctl.commands.table import Data, Records, Text, Value

    if result is None:
        return None
    if isinstance(result, Records):
        data = records_data(result.cls, result.rows, result.fields)
        return data[0] if result.single and data else data
    if isinstance(result, Value):
        return jsonable(result.value)
    if isinstance(result, Text):
        return result.text
    if isinstance(result, Data):
        return whole_bytes(jsonable(result.data))
    return result


def render_result(
    result: object, fmt: str, minimal: bool = False, no_headings: bool = False, tty: bool = False
) -> str:
    from vmctl.commands.table import Data, Records, Text, Value

    if result is None:
        return ""
    if isinstance(result, Records):
        access = None
        if result.single and result.cls in CLASSES:
            access = {f: _access_label(result.cls, f) for f in result.fields}
        return render_records(
            result.cls, result.rows, result.fields, fmt, minimal, no_headings, result.single, tty, access
        )
    if isinstance(result, Text):
        return result.text
    if fmt == "json":
        return json_document(result_data(result))
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(result_data(result), sort_keys=False, allow_unicode=True)
    if isinstance(result, Value):
        value = plain(result.value, result.type)
        return (escape_minimal(value) if minimal else escape_controls(value)) + "\n"
    if isinstance(result, Data):
        r = result.records
        if minimal and result.minimal is not None:
            return ",".join(escape_minimal(v) for v in result.minimal) + "\n"
        if r is not None and minimal:
            return render_records(r.cls, r.rows, [r.minimal or r.fields[0]], fmt, True)
        if result.blocks is not None:
            return "\n".join(f"{head}\n" + render_result(rec, "table") for head, rec in result.blocks)
        if r is not None and fmt in ("csv", "tsv"):
            rows = whole_bytes(r.rows)
            return render_records(r.cls, rows, r.fields, fmt, minimal, no_headings)  # type: ignore[arg-type]
        from vmctl.cli import views

        return escape_lines(views.render(result))
    return str(result) + "\n"


def escape_lines(text: str) -> str:
    """A multi-line text view: control characters escaped, its own line breaks kept."""
    return "\n".join(escape_controls(line) for line in text.split("\n"))


def _access_label(cls: str, name: str) -> str:
    f = CLASSES[cls].fields.get(field_name(cls, name))
    if f is None:  # an xe `<ref>-name-label` column
        return "RO"
    base = "RW" if f.writable else "RO"
    if f.kind == "set":
        return "S" + base
    if f.kind == "map":
        return "M" + base
    return base


# --- errors ----------------------------------------------------------------------------------------------
def render_error(err: BaseException, fmt: str | None = None) -> str:
    """The error as printed; credentials of any URL in it are replaced by `***`
    (vmctl/redact.py: never print a password, whoever raised the error)."""
    from vmctl.redact import redact

    if isinstance(err, OvsError):
        return "" if err.message is None else f"vmctl: {redact(err.message)}\n"
    assert isinstance(err, VmctlError)
    if fmt == "json":
        params = {k: redacted_data(jsonable(v)) for k, v in err.params}
        return (
            json_safe(
                json.dumps(
                    {"error": {"code": err.code, "message": redact(err.message), "params": params}},
                    ensure_ascii=False,
                )
            )
            + "\n"
        )
    lines = [f"vmctl: {err.code}: {escape_controls(redact(err.message))}"]
    for k, v in err.params:
        lines.append(f"  {k}: {redact(text(v))}")
    return "\n".join(lines) + "\n"


def redacted_data(v):
    """JSON data with the credentials of every URL in its strings replaced."""
    from vmctl.redact import redact

    if isinstance(v, str):
        return redact(v)
    if isinstance(v, list):
        return [redacted_data(x) for x in v]
    if isinstance(v, dict):
        return {k: redacted_data(x) for k, x in v.items()}
    return v


def isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def stdout_isatty() -> bool:
    return isatty(sys.stdout)
