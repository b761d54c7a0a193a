"""The command-line grammar (cli.md §1, network.md §2.1-§2.2), parsed by hand because click
cannot express it: GNU getopt_long global options (stop at the first non-option, unique-prefix
abbreviations, glibc's exact messages), `--`-separated segments, command options before each
command name, and xe-style `key=value` / `--flag` / `name:key=value` arguments.

Pure and import-light: used by the start-up fast paths too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmctl.errors import UsageError

NO, REQ, OPT = 0, 1, 2

# vmctl's option table, in the order ambiguity messages list it (network.md §2.1, §9.8).
LONG_OPTIONS: list[tuple[str, int]] = [
    ("db", REQ),
    ("host", REQ),
    ("format", REQ),
    ("minimal", NO),
    ("no-headings", NO),
    ("dry-run", NO),
    ("yes", NO),
    ("oneline", NO),
    ("quiet", NO),
    ("timeout", REQ),
    ("version", NO),
    ("help", NO),
    ("commands", NO),
    ("async", NO),
    ("bare", NO),
    ("no-wait", NO),
    ("retry", NO),
    ("no-syslog", NO),
    ("verbose", OPT),
    ("log-file", OPT),
    # command options accepted globally: they belong to the first command
    ("may-exist", NO),
    ("if-exists", NO),
    ("real", NO),
    ("fake", NO),
    ("with-iface", NO),
    ("fake-iface", NO),
    ("inactivity-probe", REQ),
    ("columns", REQ),
    ("id", REQ),
    ("force", NO),
    ("multiple", NO),
    ("all", NO),
    ("explain", NO),
    ("paused", NO),
    ("live", NO),
]
SHORT_OPTIONS = {
    "f": ("format", REQ),
    "t": ("timeout", REQ),
    "q": ("quiet", NO),
    "h": ("help", NO),
    "v": ("verbose", OPT),
    "V": ("version", NO),
}
COMMAND_OPTION_NAMES = {
    "may-exist",
    "if-exists",
    "real",
    "fake",
    "with-iface",
    "fake-iface",
    "inactivity-probe",
    "columns",
    "id",
    "force",
    "multiple",
    "all",
    "explain",
    "paused",
    "live",
}
FORMATS = ("table", "json", "yaml", "csv", "tsv")


@dataclass
class Segment:
    options: dict[str, str | None] = field(default_factory=dict)  # key as written -> value
    option_words: list[str] = field(default_factory=list)
    name: str = ""
    args: list[str] = field(default_factory=list)


@dataclass
class Invocation:
    opts: dict[str, object]
    segments: list[Segment]
    global_command_options: dict[str, str | None]


def parse_global(argv: list[str]) -> tuple[dict[str, object], dict[str, str | None], list[str]]:
    """getopt_long in "+" mode. Returns (global options, command options given globally, rest)."""
    opts: dict[str, object] = {}
    cmdopts: dict[str, str | None] = {}
    names = [n for n, _ in LONG_OPTIONS]
    kinds = dict(LONG_OPTIONS)
    i = 0
    n = len(argv)

    def store(name: str, value: str | None) -> None:
        if name in COMMAND_OPTION_NAMES:
            cmdopts["--" + name] = value  # repeats not diagnosed (network.md §2.1)
        elif name == "verbose" or name == "log-file":
            opts[name] = value
        else:
            opts[name] = True if value is None else value

    while i < n:
        w = argv[i]
        if w == "--":
            i += 1
            break
        if not w.startswith("-") or w == "-":
            break
        if w.startswith("--"):
            body = w[2:]
            key, eq, val = body.partition("=")
            if key in kinds:
                matches = [key]
            else:
                matches = [x for x in names if x.startswith(key)]
            if not matches:
                raise UsageError(
                    f"unrecognized option '{w}'",
                    params=[("option", w)],
                    hint="global options come before the command; vmctl --help lists them",
                )
            if len(matches) > 1:
                poss = " ".join(f"'--{m}'" for m in matches)
                raise UsageError(f"option '--{key}' is ambiguous; possibilities: {poss}")
            name = matches[0]
            kind = kinds[name]
            if kind == NO:
                if eq:
                    raise UsageError(f"option '--{name}' doesn't allow an argument")
                store(name, None)
            elif kind == REQ:
                if eq:
                    store(name, val)
                elif i + 1 < n:
                    i += 1
                    store(name, argv[i])
                else:
                    raise UsageError(f"option '--{name}' requires an argument")
            else:
                store(name, val if eq else None)
            i += 1
            continue
        # a cluster of short options: -qt5, -f json
        j = 1
        while j < len(w):
            ch = w[j]
            spec = SHORT_OPTIONS.get(ch)
            if spec is None:
                raise UsageError(
                    f"invalid option -- '{ch}'",
                    params=[("option", f"-{ch}")],
                    hint="global options come before the command; vmctl --help lists them",
                )
            name, kind = spec
            rest = w[j + 1 :]
            if kind == NO:
                store(name, None)
                j += 1
                continue
            if kind == OPT:
                store(name, rest or None)
                break
            if rest:
                store(name, rest)
            elif i + 1 < n:
                i += 1
                store(name, argv[i])
            else:
                raise UsageError(f"option requires an argument -- '{ch}'")
            break
        i += 1
    return opts, cmdopts, argv[i:]


def split_segments(words: list[str], global_cmdopts: dict[str, str | None]) -> list[Segment]:
    """Split at each `--`; leading `-` words of a segment are its command options."""
    raw: list[list[str]] = [[]]
    for w in words:
        if w == "--":
            raw.append([])
        else:
            raw[-1].append(w)
    segments: list[Segment] = []
    first = True
    for idx, seg_words in enumerate(raw):
        if not seg_words:
            if first and idx == 0 and global_cmdopts and len(raw) > 1:
                raise UsageError("missing command name (use --help for help)")
            continue
        seg = Segment()
        if first and global_cmdopts:
            seg.options.update(global_cmdopts)
        k = 0
        while k < len(seg_words) and seg_words[k].startswith("-"):
            word = seg_words[k]
            key, eq, val = word.partition("=")
            if key in seg.options:
                raise UsageError(f"'{word}' option specified multiple times")
            seg.options[key] = val if eq else None
            seg.option_words.append(word)
            k += 1
        if k == len(seg_words):
            raise UsageError("missing command name (use --help for help)")
        seg.name = seg_words[k]
        seg.args = seg_words[k + 1 :]
        segments.append(seg)
        first = False
    if not segments:
        raise UsageError("missing command name (use --help for help)")
    return segments


def check_command_options(seg: Segment, option_string: str) -> None:
    """network.md §2.2 check 4: a key is valid iff it occurs in the option string followed by
    `=`, `,` or the end; `=` there means a value is required, else refused."""
    for key, val in seg.options.items():
        pos = -1
        start = 0
        follow = None
        while True:
            pos = option_string.find(key, start)
            if pos < 0:
                break
            end = pos + len(key)
            nxt = option_string[end : end + 1]
            if nxt in ("=", ",", ""):
                follow = nxt
                break
            start = pos + 1
        if follow is None:
            raise UsageError(f"'{seg.name}' command has no '{key}' option", command=seg.name)
        if follow == "=" and val is None:
            raise UsageError(f"missing argument to '{key}' option on '{seg.name}' command", command=seg.name)
        if follow != "=" and val is not None:
            raise UsageError(f"'{key}' option on '{seg.name}' does not accept an argument", command=seg.name)


def check_arg_count(seg: Segment, lo: int, hi: int | None) -> None:
    n = len(seg.args)
    if n < lo:
        raise UsageError(f"'{seg.name}' command requires at least {lo} arguments", command=seg.name)
    if hi is not None and n > hi:
        msg = f"'{seg.name}' command takes at most {hi} arguments"
        if any(a.startswith("-") for a in seg.args):
            msg += ' (note that options must precede command names and follow a "--" argument)'
        raise UsageError(msg, command=seg.name)


def parse(argv: list[str]) -> Invocation:
    for n, w in enumerate(argv, 1):
        # bytes that are not UTF-8 arrive as lone surrogates (PEP 383)
        if any("\udc80" <= ch <= "\udcff" for ch in w):
            shown = w.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise UsageError(
                "argument is not valid UTF-8",
                xe_message=f"Argument {n} is not valid UTF-8",
                code="INVALID_VALUE",
                params=[("name", f"argument {n}"), ("value", shown)],
                hint="write arguments as UTF-8 text",
            )
    opts, cmdopts, rest = parse_global(argv)
    if not rest and (opts.get("version") or opts.get("help") or opts.get("commands")):
        return Invocation(opts, [], cmdopts)
    return Invocation(opts, split_segments(rest, cmdopts), cmdopts)


def sketch(argv: list[str]) -> tuple[str | None, str | None]:
    """The first command name and the global output format an argv gives, read tolerantly:
    for reporting an error found before or while parsing it (see vmctl.cli.app.usage_report)."""
    kinds = dict(LONG_OPTIONS)
    fmt = None
    i = 0
    while i < len(argv):
        w = argv[i]
        if w == "--" or w == "-" or not w.startswith("-"):
            if w not in ("--", "-"):
                return w, fmt
            i += 1
            continue
        if w.startswith("--"):
            key, eq, val = w[2:].partition("=")
            names = [key] if key in kinds else [x for x in kinds if x.startswith(key)]
            if len(names) == 1 and kinds[names[0]] == REQ and not eq:
                val = argv[i + 1] if i + 1 < len(argv) else ""
                i += 1
            if names == ["format"]:
                fmt = val
            i += 1
            continue
        for j in range(1, len(w)):
            name, kind = SHORT_OPTIONS.get(w[j], ("", NO))
            if kind == REQ:
                val = w[j + 1 :]
                if not val:
                    val = argv[i + 1] if i + 1 < len(argv) else ""
                    i += 1
                if name == "format":
                    fmt = val
                break
            if kind == OPT:
                break
        i += 1
    return None, fmt


# --- xe-style arguments ------------------------------------------------------------------------------
@dataclass
class XeArgs:
    values: list[tuple[str, str]] = field(default_factory=list)  # (key, value) in order, repeats kept
    flags: dict[str, str | None] = field(default_factory=dict)  # --force -> None, --force=false -> "false"
    fmt: str | None = None
    minimal: bool = False
    no_headings: bool = False
    dry_run: bool = False


OUTPUT_FLAGS = {"--minimal", "--no-headings", "--dry-run"}


def parse_xe_args(words: list[str]) -> XeArgs:
    """`key=value` (split at the first `=`), `--flag`, `--flag=v`, `-f FMT`/`--format=FMT`."""
    out = XeArgs()
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("-f", "--format"):
            if i + 1 >= len(words):
                raise UsageError(f"option '{w}' requires an argument")
            out.fmt = words[i + 1]
            i += 2
            continue
        if w.startswith("--format="):
            out.fmt = w[len("--format=") :]
        elif w.startswith("-f") and len(w) > 2 and not w.startswith("--"):
            out.fmt = w[2:]
        elif w == "--minimal":
            out.minimal = True
        elif w == "--no-headings":
            out.no_headings = True
        elif w == "--dry-run":
            out.dry_run = True
        elif w.startswith("--") and len(w) > 2:
            key, eq, val = w.partition("=")
            out.flags[key] = val if eq else None
        elif "=" in w and not w.startswith("="):
            key, _, val = w.partition("=")
            out.values.append((key, val))
        else:
            from vmctl.errors import VmctlError

            raise VmctlError(
                "INVALID_VALUE",
                f"Arguments are key=value pairs or --flags, not '{w}'",
                [("name", "argument"), ("value", w)],
            )
        i += 1
    return out
