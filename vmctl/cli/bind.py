"""Binding one parsed segment to its table entry: xe-style arguments checked and typed in the
order model.md §0 fixes (missing, unknown, invalid), flags, output overrides, filters."""

from __future__ import annotations

from dataclasses import dataclass, field

from vmctl import units
from vmctl.cli.grammar import FORMATS, Segment, check_arg_count, check_command_options, parse_xe_args
from vmctl.commands.table import Command
from vmctl.errors import UsageError, VmctlError
from vmctl.model import ALIASES, CLASSES, XE_NAME_FIELDS, field_name

# Flags every xe-style command takes whatever its table entry says.
UNIVERSAL_FLAGS = {"--yes", "--explain"}


@dataclass
class Bound:
    cmd: Command
    seg: Segment
    a: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)
    raw_pairs: list = field(default_factory=list)
    flags: set = field(default_factory=set)
    maps: dict = field(default_factory=dict)
    filters: list = field(default_factory=list)
    fmt: str | None = None
    minimal: bool = False
    no_headings: bool = False
    dry_run: bool = False
    ref_id: str | None = None  # --id=@name
    help: bool = False


def parse_typed(arg, text: str) -> object:
    # `disk-size=+N` style relative sizes are the command's to interpret (cli.md §2)
    return units.parse_scalar(arg.type, text, arg.name, arg.values, allow_relative=True)


def _long_options(cmd: Command, args: list[str]) -> list[str]:
    """`--limit 20` and `--limit=20` as `limit=20`, for the arguments a command also takes
    GNU-style (its table entry's long_options; journal-list's, cli.md §7)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        w = args[i]
        for k in cmd.long_options:
            if w == f"--{k}" and i + 1 < len(args):
                out.append(f"{k}={args[i + 1]}")
                i += 2
                break
            if w.startswith(f"--{k}="):
                out.append(f"{k}={w.split('=', 1)[1]}")
                i += 1
                break
        else:
            out.append(w)
            i += 1
    return out


def bind(cmd: Command, seg: Segment) -> Bound:
    b = Bound(cmd, seg)
    if "--help" in seg.options or (cmd.style != "ovs" and ("--help" in seg.args or "-h" in seg.args)):
        b.help = True
        return b
    check_command_options(seg, cmd.option_string)
    if cmd.style == "ovs":
        check_arg_count(seg, cmd.min_args, cmd.max_args)
        return b
    values: list[tuple[str, str]] = []
    for key, val in seg.options.items():
        if key == "--id":
            b.ref_id = val
        elif key in cmd.flags:
            b.flags.add(key[2:])
        elif (arg := cmd.arg(key[2:])) is not None and arg.type == "bool":
            values.append((arg.name, "true" if val is None else val))  # `vmctl --live vm-migrate`
    args = _long_options(cmd, seg.args) if cmd.long_options else seg.args
    xa = parse_xe_args(args)
    b.fmt, b.minimal, b.no_headings, b.dry_run = xa.fmt, xa.minimal, xa.no_headings, xa.dry_run
    unknown: list[str] = []
    values += xa.values
    for key, val in xa.flags.items():
        if key == "--id" and cmd.creates:
            b.ref_id = val
            continue
        if key not in cmd.flags and key not in UNIVERSAL_FLAGS:
            arg = cmd.arg(key[2:])
            if arg is not None and arg.type == "bool":  # cli.md §1: --flag is flag=true
                values.append((arg.name, "true" if val is None else val))
            else:
                unknown.append(key)
            continue
        if val is None or units.parse_bool(val, key):
            b.flags.add(key[2:])
    _bind_values(b, values, unknown)
    if b.fmt is not None and b.fmt not in FORMATS:
        raise VmctlError(
            "INVALID_VALUE",
            "The output format must be table, json, yaml, csv or tsv",
            [("name", "format"), ("value", b.fmt)],
        )
    return b


def _bind_values(b: Bound, values, unknown: list[str]) -> None:
    """key=value pairs onto the bound command, in model.md §0's order: missing, unknown, then
    invalid values. A value is text from the command line, or a typed Python value from the API
    (vmctl/api.py), which a declared argument takes as it is once its type is checked."""
    cmd = b.cmd
    pending: list[tuple] = []
    spelled: dict[str, str] = {}  # argument -> the first name it was given under
    twice: list[tuple[str, str]] = []
    for key, val in values:
        key = ALIASES.get(key, key)
        if key in cmd.aliases or (cmd.aliases and key in cmd.aliases.values()):
            name = cmd.aliases.get(key, key)
            if spelled.setdefault(name, key) != key:
                twice.append((spelled[name], key))
            key = name
        text = val if isinstance(val, str) else _text(val)
        b.raw_pairs.append((key, text))
        mkey = None
        base = key
        if ":" in key:
            base, mkey = key.split(":", 1)
        arg = cmd.arg(base)
        if arg is not None and (mkey is None) == (arg.type != "map"):
            if arg.type == "map":
                b.maps.setdefault(base, {})[mkey] = text
            else:
                pending.append((arg, val))
            b.raw[key] = text
        elif _refusal(cmd, base) is not None:
            unknown.append(key)  # before the filters: `database:` is no field either
        elif mkey is None and _flag_value(b, key, text):
            pass
        elif cmd.list_of or (cmd.selector and _is_field(cmd.selector, base)):
            b.raw[key] = text
            pending.append(("filter", key, text))
        elif cmd.fields_of:
            if cmd.fields_of != "*" and not _is_field(cmd.fields_of, base):
                unknown.append(key)
            b.raw[key] = text
        else:
            unknown.append(key)
    missing = [a.name for a in cmd.args if a.required and a.name not in b.raw and a.name not in b.maps]
    if missing and unknown and missing[0] in cmd.aliases.values():
        missing = []  # the object named with a key the command does not take: say so (below)
    if missing:
        raise VmctlError(
            "MISSING_PARAMETER", f"The parameter {missing[0]} is required", [("name", missing[0])]
        )
    if unknown:
        why = _refusal(cmd, unknown[0].split(":", 1)[0].removeprefix("--"))
        raise VmctlError(
            "UNKNOWN_PARAMETER",
            f"{cmd.name} does not take {unknown[0]}" + (f": {why}" if why else ""),
            [("name", unknown[0])],
        )
    if twice:
        first, second = twice[0]
        raise VmctlError(
            "DUPLICATE_PARAMETER",
            f"{cmd.name} takes {first}= or {second}=, not both: they name the same object",
            [("name", second), ("same-as", first)],
        )
    filt_pairs = []
    for item in pending:
        if item[0] == "filter":
            filt_pairs.append((item[1], item[2]))
            continue
        arg, val = item
        v = parse_typed(arg, val) if isinstance(val, str) else _typed(arg, val)
        if v == "" and arg.name.endswith("name-label") and cmd.creates != "pool":
            raise units.empty_name(arg.name)
        if arg.repeat:
            b.a.setdefault(arg.name, []).append(v)
        else:
            b.a[arg.name] = v
    if filt_pairs:
        from vmctl.fields import parse_filters

        b.filters = parse_filters(cmd.list_of or cmd.selector, filt_pairs)


def _refusal(cmd: Command, key: str) -> str | None:
    """Why the command does not take xe's parameter `key` (a name, or a prefix ending in `-`),
    or None when it is not one it refuses."""
    if not cmd.refused:
        return None
    return next(
        (r for k, r in cmd.refused.items() if key == k or (k.endswith("-") and key.startswith(k))), None
    )


def _is_field(cls: str, name: str) -> bool:
    """Is name a field of cls (a selector's filter), in vmctl's or xe's spelling, not a word the
    command does not take?"""
    return field_name(cls, name) in CLASSES[cls].fields or name in XE_NAME_FIELDS.get(cls, {})


def _flag_value(b: Bound, key: str, text: str) -> bool:
    """xe's `key=value` form of a flag (`force=true`, `multiple=true`, `minimal=true`: xe reads
    `--force` as `force=true`), for a flag the command takes and a key that is not one of its
    fields: sets or clears it and says so."""
    cmd = b.cmd
    flag = "--" + key
    if key == "minimal":
        b.minimal = units.parse_bool(text, key)
        return True
    if flag not in cmd.flags and flag not in UNIVERSAL_FLAGS:
        return False
    cls = cmd.list_of or cmd.selector
    if cls and _is_field(cls, key):  # `host-list live=true` filters on the host field
        return False
    if units.parse_bool(text, key):
        b.flags.add(key)
    else:
        b.flags.discard(key)
    return True


# The Python types a declared argument takes from the API, by argument type (else text).
_PY_TYPES = {
    "int": (int,),
    "size": (int,),
    "rate": (int, float),
    "duration": (int, float),
    "float": (int, float),
    "bool": (bool,),
    "list": (list, tuple),
}


def _typed(arg, value) -> object:
    """A typed API value for a declared argument: checked, and converted only where the command
    expects another Python type (a tuple for a list)."""
    kinds = _PY_TYPES.get(arg.type)
    if kinds is None:  # names, uuids, enums: read as the command line reads their text
        return parse_typed(arg, _text(value))
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and arg.type != "bool")
    if not ok:
        raise VmctlError(
            "FIELD_TYPE_ERROR",
            f"{arg.name} takes a {arg.type}, not a {type(value).__name__}",
            [("name", arg.name), ("value", _text(value))],
        )
    if arg.type == "list":
        return [str(x) for x in value]
    if arg.type in ("int", "size"):
        return units.parse_scalar(arg.type, str(value), arg.name)  # the same range checks as text
    return value


def _text(value) -> str:
    """A typed API value as it would be written on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_text(x) for x in value)
    return str(value)


def bind_values(cmd: Command, values: dict) -> Bound:
    """The Python API's binding: keyword arguments (name_label= or "name-label"=, maps as
    {"other-config": {...}}, flags as force=True) onto the same Bound the command line makes."""
    b = Bound(cmd, Segment(name=cmd.name, args=[]))
    pairs: list[tuple[str, object]] = []
    for k, v in values.items():
        key = k if "-" in k or ":" in k else k.replace("_", "-")
        flag = "--" + key.lstrip("-")
        if flag in cmd.flags or flag in UNIVERSAL_FLAGS:
            if not isinstance(v, bool):
                raise VmctlError("FIELD_TYPE_ERROR", f"{flag} takes true or false", [("name", flag)])
            if v:
                b.flags.add(flag[2:])
            continue
        if isinstance(v, dict):
            pairs.extend((f"{key}:{mk}", _text(mv)) for mk, mv in v.items())
            continue
        pairs.append((key, v))
    _bind_values(b, pairs, [])
    return b


def lookup(name: str) -> Command:
    from vmctl.commands import find

    cmd = find(name)
    if cmd is None:
        raise unknown_command(name)
    return cmd


def unknown_command(name: str) -> UsageError:
    """ovs-vsctl's message, and for the xe form UNKNOWN_COMMAND with the closest names."""
    import difflib

    from vmctl.commands import load

    def score(other: str) -> float:
        return difflib.SequenceMatcher(None, name, other).ratio()

    close = difflib.get_close_matches(name, list(load()), n=3, cutoff=0.6)
    close = [c for c in close if score(c) >= score(close[0]) - 0.1]  # only the near-best
    if close:
        guess = " or ".join([", ".join(close[:-1]), close[-1]] if len(close) > 1 else close)
        hint = f"did you mean {guess}? (vmctl --help lists every command)"
    else:
        hint = "vmctl --help lists every command"
    params = [("name", name)] + ([("did-you-mean", ",".join(close))] if close else [])
    return UsageError(
        f"unknown command '{name}'; use --help for help",
        code="UNKNOWN_COMMAND",
        params=params,
        hint=hint,
        xe_message=f"There is no command {name!r}",
    )


def bind_gnu(cmd: Command, args: list[str]) -> dict:
    """A utility command's arguments, GNU-style, from its table entry: an Arg named `--x` is an
    option (a flag when its type is bool, else it takes a value as `--x V` or `--x=V`), any other
    Arg a positional argument in order, the last one taking all the words left when it repeats.
    Messages follow argparse's, as scripts may match them."""
    options = {a.name: a for a in cmd.args if a.name.startswith("--")}
    shorts = {a.short: a for a in options.values() if a.short}
    positional = [a for a in cmd.args if not a.name.startswith("--")]
    out: dict = {}
    extra: list[str] = []
    words = list(args)
    npos = 0
    i = 0
    while i < len(words):
        w = words[i]
        name, eq, value = w.partition("=")
        opt = options.get(name) if w.startswith("--") else None
        if opt is None and w[:2] in shorts and not w.startswith("--"):
            # `-f json` or `-fjson`, as getopt reads a short option taking a value
            opt, eq, value = shorts[w[:2]], "=" if w[2:] else "", w[2:]
        if npos < len(positional) and positional[npos].repeat:
            out[positional[npos].name] = words[i:]  # the rest, as written (bench passes it on)
            break
        if opt is None:
            if npos < len(positional) and (w == "-" or not w.startswith("-")):
                out[positional[npos].name] = _gnu_value(cmd, positional[npos], w)
                npos += 1
            else:
                extra.append(w)
            i += 1
            continue
        if opt.type == "bool":
            if eq:
                extra.append(w)
            out[opt.name] = True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(words):
                raise UsageError(f"{cmd.name}: argument {opt.name}: expected one argument", command=cmd.name)
            value = words[i + 1]
            i += 1
        out[opt.name] = _gnu_value(cmd, opt, value)
        i += 1
    if extra:
        raise UsageError(f"{cmd.name}: unrecognized arguments: {' '.join(extra)}", command=cmd.name)
    missing = [a.name for a in positional if a.required and a.name not in out]
    if missing:
        names = ", ".join(m.lower() for m in missing)
        raise UsageError(f"{cmd.name}: the following arguments are required: {names}", command=cmd.name)
    return out


def _gnu_value(cmd: Command, arg, text: str) -> object:
    if arg.type == "int":
        what = arg.name if arg.name.startswith("--") else arg.name.lower()
        try:
            v = int(text)
        except ValueError:
            raise UsageError(
                f"{cmd.name}: argument {arg.name}: {what} takes a whole number, not {text!r}",
                command=cmd.name,
            ) from None
        lo, hi = arg.bounds or (None, None)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            # no upper bound: the command itself refuses what is too large, saying why
            rule = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
            raise UsageError(f"{cmd.name}: argument {arg.name}: {what} must be {rule}", command=cmd.name)
        return v
    return text
