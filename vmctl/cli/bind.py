"""Binding one parsed segment to its table entry: xe-style arguments checked and typed in the
order model.md §0 fixes (missing, unknown, invalid), flags, output overrides, filters."""

from __future__ import annotations

from dataclasses import dataclass, field

from vmctl import units
from vmctl.cli.grammar import Segment, check_arg_count, check_command_options, parse_xe_args
from vmctl.commands.table import Command
from vmctl.errors import UsageError, VmctlError
from vmctl.model import ALIASES, CLASSES

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


def _journal_gnu(args: list[str]) -> list[str]:
    """journal-list takes `--limit 20` and `--limit=20` as well as `limit=20` (cli.md §7)."""
    out: list[str] = []
    i = 0
    while i < len(args):
        w = args[i]
        for k in ("since", "object", "limit"):
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
    for key, val in seg.options.items():
        if key == "--id":
            b.ref_id = val
        elif key in cmd.flags:
            b.flags.add(key[2:])
    args = _journal_gnu(seg.args) if cmd.name == "journal-list" else seg.args
    xa = parse_xe_args(args)
    b.fmt, b.minimal, b.no_headings, b.dry_run = xa.fmt, xa.minimal, xa.no_headings, xa.dry_run
    unknown: list[str] = []
    for key, val in xa.flags.items():
        if key == "--id" and cmd.creates:
            b.ref_id = val
            continue
        if key not in cmd.flags and key not in UNIVERSAL_FLAGS:
            unknown.append(key)
            continue
        if val is None or units.parse_bool(val, key):
            b.flags.add(key[2:])
    pending: list[tuple] = []
    for key, val in xa.values:
        key = ALIASES.get(key, key)
        b.raw_pairs.append((key, val))
        mkey = None
        base = key
        if ":" in key:
            base, mkey = key.split(":", 1)
        arg = cmd.arg(base)
        if arg is not None and (mkey is None) == (arg.type != "map"):
            if arg.type == "map":
                b.maps.setdefault(base, {})[mkey] = val
            else:
                pending.append((arg, val))
            b.raw[key] = val
        elif cmd.list_of or cmd.selector:
            b.raw[key] = val
            pending.append(("filter", key, val))
        elif cmd.fields_of:
            if cmd.fields_of != "*" and mkey is None and base not in CLASSES[cmd.fields_of].fields:
                unknown.append(key)
            b.raw[key] = val
        else:
            unknown.append(key)
    missing = [a.name for a in cmd.args if a.required and a.name not in b.raw and a.name not in b.maps]
    if missing:
        raise VmctlError(
            "MISSING_PARAMETER", f"The parameter {missing[0]} is required", [("name", missing[0])]
        )
    if unknown:
        raise VmctlError(
            "UNKNOWN_PARAMETER", f"{cmd.name} does not take {unknown[0]}", [("name", unknown[0])]
        )
    filt_pairs = []
    for item in pending:
        if item[0] == "filter":
            filt_pairs.append((item[1], item[2]))
            continue
        arg, val = item
        v = parse_typed(arg, val)
        if arg.repeat:
            b.a.setdefault(arg.name, []).append(v)
        else:
            b.a[arg.name] = v
    if filt_pairs:
        from vmctl.commands.fields import parse_filters

        b.filters = parse_filters(cmd.list_of or cmd.selector, filt_pairs)
    if b.fmt is not None and b.fmt not in ("table", "json", "yaml", "csv", "tsv"):
        raise VmctlError(
            "INVALID_VALUE",
            "The output format must be table, json, yaml, csv or tsv",
            [("name", "format"), ("value", b.fmt)],
        )
    return b


def lookup(name: str) -> Command:
    from vmctl.commands import load

    cmd = load().get(name)
    if cmd is None:
        raise UsageError(f"unknown command '{name}'; use --help for help")
    return cmd
