"""Generators for everything derived from the command table: the completion data module, the
bash/zsh/fish completion scripts and the man page. `python -m vmctl.cli.gendocs` rewrites the
committed files; tests/test_docs.py fails when they differ from what the table gives now."""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Positional argument kinds of the ovs-style commands, for completion.
OVS_POSITIONAL = {
    "add-br": ["new", "bridge", "vlan"],
    "del-br": ["bridge"],
    "br-exists": ["bridge"],
    "br-to-vlan": ["bridge"],
    "br-to-parent": ["bridge"],
    "br-set-external-id": ["bridge", "key", "value"],
    "br-get-external-id": ["bridge", "key"],
    "list-ports": ["bridge"],
    "add-port": ["bridge", "new", "setting"],
    "del-port": ["bridge", "port"],
    "port-to-br": ["port"],
    "add-bond": ["bridge", "new", "iface"],
    "add-bond-iface": ["port", "new"],
    "del-bond-iface": ["port", "iface"],
    "list-ifaces": ["bridge"],
    "iface-to-br": ["iface"],
    "get-controller": ["bridge"],
    "del-controller": ["bridge"],
    "set-controller": ["bridge", "target"],
    "get-fail-mode": ["bridge"],
    "del-fail-mode": ["bridge"],
    "set-fail-mode": ["bridge", "enum:standalone|secure"],
    "get": ["table", "record", "column"],
    "set": ["table", "record", "column"],
    "clear": ["table", "record", "column"],
    "list": ["table", "record"],
}
HOST_FILTERED = ("vm-start", "vm-resume", "vm-migrate", "vm-place")


def _value_kind(cmd, a) -> str | None:
    if a.complete:
        return a.complete
    if a.values:
        return "enum:" + "|".join(a.values)
    if a.type == "bool":
        return "bool"
    if a.type.startswith("ref:"):
        return a.type[4:]
    if a.type == "uuid":
        for cls in (
            "vm-group",
            "vm",
            "host",
            "pool",
            "sr",
            "vdi",
            "vbd",
            "pbd",
            "network",
            "pif",
            "vif",
            "vlan",
            "bond",
            "tunnel",
            "task",
            "snapshot",
            "template",
        ):
            if cmd.name.startswith(cls + "-"):
                return cls
    return None


def _field_keys(cls: str, filters: bool):
    """(name, field) for every name a field of cls is read by: vmctl's names, then xe's
    (model.XE_FIELDS), then, for filters, xe's `<ref>-name-label` names."""
    from vmctl.model import CLASSES, XE_FIELDS, XE_NAME_FIELDS

    fields = CLASSES[cls].fields
    yield from fields.items()
    for name, target in XE_FIELDS.get(cls, {}).items():
        yield name, fields[target]
    if filters:
        for name, target in XE_NAME_FIELDS.get(cls, {}).items():
            yield name, fields[target]


def completion_data() -> str:
    from vmctl.cli.grammar import LONG_OPTIONS, SHORT_OPTIONS
    from vmctl.commands import load
    from vmctl.model import CLASSES, XE_SPELLING

    cmds = load()
    entries = {}
    for name in sorted(cmds):
        c = cmds[name]
        keys, values = [], {}
        if c.style == "xe":
            for a in c.args:
                if a.type == "map":
                    continue
                keys.append(a.name + "=")
                kind = _value_kind(c, a)
                if kind:
                    values[a.name] = kind
            for alias, target in c.aliases.items():  # the other spelling, after the declared ones
                keys.append(alias + "=")
                if target in values:
                    values[alias] = values[target]
            cls = c.list_of or c.selector or (c.fields_of if c.fields_of not in (None, "*") else None)
            if cls:
                writing = bool(c.fields_of and not c.list_of)
                for key, f in _field_keys(cls, filters=not writing):
                    if writing and not f.writable:
                        continue
                    if key + "=" not in keys:
                        keys.append(key + "=")
                    if f.values:
                        shown = XE_SPELLING.get((cls, f.name), {})
                        values.setdefault(key, "enum:" + "|".join(shown.get(v, v) for v in f.values))
                    elif f.type == "bool":
                        values.setdefault(key, "bool")
                    elif f.ref_class and f.kind == "scalar":
                        values.setdefault(key, f.ref_class)
        flags = (
            list(c.flags)
            if c.style != "ovs"
            else [o.split("=")[0] + ("=" if "=" in o else "") for o in c.options.split(",") if o]
        )
        if c.creates:
            flags.append("--id=")
        pos = OVS_POSITIONAL.get(name, []) if c.style == "ovs" else []
        if c.style == "util":  # GNU-style options, and the values of an enum positional (lab up|...)
            flags = [a.name for a in c.args if a.name.startswith("--")]
            pos = ["enum:" + "|".join(a.values) for a in c.args if a.values and not a.name.startswith("--")]
        entries[name] = (c.style, keys, flags, values, pos)
    tables = {n: (c.table, c.named) for n, c in CLASSES.items()}
    tables["template"] = ("vm", True)
    tables["snapshot"] = ("vm", True)
    opts = [f"--{n}=" if k else f"--{n}" for n, k in LONG_OPTIONS] + [f"-{s}" for s in SHORT_OPTIONS]
    lines = [
        '"""Generated by `python -m vmctl.cli.gendocs` from the command table: do not edit."""',
        "",
        "# name: (style, argument keys, flags, value kinds per key, ovs positional kinds)",
        "COMMANDS = {",
    ]
    for name, e in entries.items():
        lines.append(f"    {name!r}: {e!r},")
    lines += [
        "}",
        f"TABLES = {tables!r}",
        f"GLOBAL_OPTIONS = {opts!r}",
        f"HOST_FILTERED = {HOST_FILTERED!r}",
        "",
    ]
    return "\n".join(lines)


BASH = r"""# bash completion for vmctl (generated by `python -m vmctl.cli.gendocs`; also `vmctl completion bash`)
_vmctl() {
    local line="${COMP_LINE:0:$COMP_POINT}"
    local cur="${COMP_WORDS[COMP_CWORD]}"
    local IFS=$'\n'
    COMPREPLY=($("${COMP_WORDS[0]}" __complete bash "$line" "$cur" 2>/dev/null))
    # keys end in '=': let the user type the value right after them
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]]; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}
complete -F _vmctl vmctl
"""

ZSH = r"""#compdef vmctl
# zsh completion for vmctl (generated by `python -m vmctl.cli.gendocs`; also `vmctl completion zsh`).
# Install: put this file, named _vmctl, in a directory of $fpath before compinit runs, or
# `source <(vmctl completion zsh)` after compinit.
_vmctl() {
    # the words before the cursor's and that word up to the cursor, zsh's quoting removed
    local -a cands
    cands=("${(@f)$(${(Q)words[1]} __complete zsh "${(@Q)words[1,CURRENT-1]}" "${(Q)PREFIX}" 2>/dev/null)}")
    cands=(${cands:#})
    (( ${#cands} )) || return 1
    if [[ $PREFIX == *=* ]]; then
        # key=value: the key stays on the line, the values alone are listed and inserted
        IPREFIX="$IPREFIX${PREFIX%%=*}="
        PREFIX="${PREFIX#*=}"
        compadd -- "${cands[@]#*=}"
    else
        # keys end in '=': the value is typed right after them
        compadd -S '' -- ${(M)cands:#*=}
        compadd -- ${cands:#*=}
    fi
}
if [[ $funcstack[1] == _vmctl ]]; then
    _vmctl "$@"  # autoloaded from $fpath by the first TAB: complete that TAB too
else
    compdef _vmctl vmctl
fi
"""

FISH = r"""# fish completion for vmctl (generated by `python -m vmctl.cli.gendocs`; also `vmctl completion fish`).
# Install: copy this file to ~/.config/fish/completions/vmctl.fish, or `vmctl completion fish | source`.
# fish ships completions for another vmctl (OpenBSD's), which it would load next to these on the first
# TAB when this script is sourced: have fish load them now, then drop every vmctl completion so far.
complete -c vmctl -e
complete -C 'vmctl __' >/dev/null
complete -c vmctl -e
function __vmctl_complete
    # the words before the cursor's and that word up to the cursor, fish's quoting removed
    set -l words (commandline -opc)
    set -l cur (commandline -ct | string unescape)
    $words[1] __complete fish $words "$cur" 2>/dev/null
end
complete -c vmctl -f -a '(__vmctl_complete)'
"""


def completion_script(shell: str) -> str:
    return {"bash": BASH, "zsh": ZSH, "fish": FISH}[shell]


# --- the man page -----------------------------------------------------------------------------------------
def _roff(text: str, width: int = 72) -> str:
    """Escape for roff and wrap prose at `width` (mandoc's style check wants lines under 80 bytes;
    roff fills the lines again when it formats)."""
    import textwrap

    lines = []
    for para in text.split("\n"):
        for ln in textwrap.wrap(para, width, break_long_words=False, break_on_hyphens=False) or [""]:
            ln = ln.replace("\\", "\\e").replace("-", "\\-")
            if ln.startswith(".") or ln.startswith("'"):
                ln = "\\&" + ln
            lines.append(ln)
    return "\n".join(lines)


def manpage() -> str:
    from vmctl import __version__
    from vmctl.cli.helptext import FAMILY_ORDER, arg_lines
    from vmctl.commands import load

    cmds = load()
    out = [
        f'.TH VMCTL 1 2026-11-21 "vmctl {__version__}" "User Commands"',
        ".SH NAME",
        "vmctl \\- manage virtualization pools, hosts, VMs, storage and networks",
        ".SH SYNOPSIS",
        ".B vmctl",
        "[\\fIGLOBAL-OPTIONS\\fR]",
        "\\fICOMMAND\\fR [\\fIARGS\\fR...]",
        "[\\fB\\-\\-\\fR [\\fICMD-OPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR...]]...",
        ".SH DESCRIPTION",
        _roff(
            "vmctl keeps an inventory of pools, hosts, VMs, templates, snapshots, storage repositories, "
            "virtual disks, networks, VLANs, bonds, tunnels and per-host bridges and ports, and enforces the "
            "rules of XAPI, vSphere and Open vSwitch. Object commands take xe-style key=value arguments; "
            "bridge and port commands take ovs-vsctl-style positional arguments. One invocation is one "
            "transaction: the commands of a -- chain run in order and the first failure aborts the whole "
            "chain, committing nothing and printing nothing on standard output."
        ),
        ".SH VALUES",
        _roff(
            "Sizes are plain bytes or take binary suffixes: 4G = 4GiB = 4*2^30 bytes; a decimal needs a "
            "suffix (1.75GiB). 4GB (and KB, MB, TB) is refused as ambiguous: write 4GiB, or 4000000000 "
            "for 4*10^9. Numbers take the ASCII digits 0-9 only. A name-label or name-description takes "
            "no control character (C0, DEL, C1); a name-label is never empty, except a pool's. An object "
            "named @w is found by that name unless the chain defined --id=@w. Text output prints control "
            "characters in stored values as \\n, \\r, \\t or \\xHH."
        ),
        ".SH GLOBAL OPTIONS",
    ]
    glob = [
        (
            "--db=URL|PATH",
            "the inventory: an SQLite path or an SQLAlchemy URL (postgresql://...); a password in the URL "
            "is never stored in the journal nor printed (shown as ***)",
        ),
        ("--host=H", "the host whose bridges the ovs-style commands act on"),
        ("-f, --format=FMT", "table, json, yaml, csv or tsv"),
        ("--minimal", "only the first field of every record, comma-separated"),
        ("--no-headings", "no header row"),
        ("--dry-run", "run, print, then roll back"),
        ("--yes", "answer yes to confirmations (also among an xe-style command's arguments)"),
        ("--oneline", "one line per ovs-style command output"),
        ("-q, --quiet", "no warnings"),
        ("-t, --timeout=SECS", "wait at most SECS for the inventory lock"),
        ("--commands", "list every command as one JSON object per line"),
        (
            "--async",
            "a command that starts a task (a copy or migration on real hosts) prints the task's uuid "
            "once the decision is committed and returns; the task goes on in the inventory's manager "
            "(task-list, task-cancel)",
        ),
        ("--version", "print the version"),
        ("-h, --help", "print the help"),
    ]
    for term, desc in glob:
        out += [".TP", f"\\fB{_roff(term)}\\fR", _roff(desc)]
    out.append(".SH COMMANDS")
    fams: dict[str, list] = {}
    for c in cmds.values():
        fams.setdefault(c.family or "other", []).append(c)
    for fam in sorted(fams, key=lambda f: (FAMILY_ORDER.index(f) if f in FAMILY_ORDER else 99, f)):
        out.append(f".SS {_roff(fam)}")
        for c in sorted(fams[fam], key=lambda c: c.name):
            out += [".TP", f"\\fB{_roff(c.name)}\\fR", _roff(c.synopsis), ".br", _roff(c.help)]
            for term, desc in arg_lines(c):
                out += [".RS", ".TP", f"\\fI{_roff(term)}\\fR", _roff(desc) if desc else "\\&", ".RE"]
    out += xe_names_section()
    out += [
        ".SH EXIT STATUS",
        ".TP",
        "0",
        "success",
        ".TP",
        "1",
        _roff("any failure: refused operation, object not found, bad value, usage"),
        ".TP",
        "2",
        _roff("br-exists on a missing bridge"),
        ".TP",
        "75",
        _roff("the inventory stayed locked past the timeout; retrying is safe"),
        ".SH DIAGNOSTICS",
        _roff(
            "An xe-style failure is one line vmctl: CODE: message (what is wrong and what to do) plus "
            'key: value lines; with -f json it is {"error": {...}} on standard error. Usage errors '
            "have the codes USAGE and UNKNOWN_COMMAND (with the closest command names); for "
            "ovs-style commands they print exactly ovs-vsctl's message."
        ),
        ".SH ENVIRONMENT",
    ]
    for var, desc in (
        ("VMCTL_DB", "the inventory (as --db)"),
        ("VMCTL_HOST", "the host of ovs-style commands"),
        ("VMCTL_FORMAT", "the output format"),
        ("VMCTL_TIMEOUT", "the lock timeout in seconds"),
        (
            "VMCTL_DAEMON",
            "off: run every command in its own process, never through the inventory's manager",
        ),
        ("VMCTL_DAEMON_IDLE", "seconds a manager started on demand stays without a command (600)"),
        ("VMCTL_DAEMON_LOG", "a file the manager appends its own errors to"),
    ):
        out += [".TP", f"\\fB{var}\\fR", _roff(desc)]
    out += [
        ".SH FILES",
        ".TP",
        "\\fI~/.local/share/vmctl/inventory.db\\fR",
        _roff(
            "the default inventory (under $XDG_DATA_HOME when set), created with its directory by the "
            "first command that writes; a read of a missing inventory prints an empty result and creates "
            "nothing, and a file of another application is refused (DATABASE_ERROR: The database is not "
            "a vmctl inventory)"
        ),
        ".TP",
        "\\fI$XDG_RUNTIME_DIR/vmctl/manager-HASH.sock\\fR",
        _roff(
            "the socket of the inventory's manager, the resident process that runs the commands of "
            "the command line (vmctl daemon status|stop|run); without XDG_RUNTIME_DIR it is beside the "
            "SQLite file (.NAME.vmctl-UID.sock), or /tmp/vmctl-UID/ for a PostgreSQL inventory; mode "
            "0600, and only its own user's connections are served"
        ),
        ".SH EXAMPLES",
        ".nf",
    ]
    for ex in (
        "vmctl pool-create name-label=lab",
        "vmctl host-add name-label=h1 address=10.0.0.1 cpu-count=32 memory-total=256GiB pool=lab",
        "vmctl -- --id=@w vm-create name-label=web -- vm-param-set uuid=@w vcpus=2",
        "vmctl vm-list power-state=halted -f json",
        "vmctl --host=h1 add-br br0 -- add-port br0 eth1",
        "vmctl batch jobs.yaml --continue-on-error",
    ):
        out.append(_roff(ex))
    out += [".fi", ".SH SEE ALSO", "\\fBxe\\fR(1), \\fBovs\\-vsctl\\fR(8)", ""]
    return "\n".join(out)


def commands_index() -> str:
    from vmctl.commands import load

    lines = [
        '"""Generated by `python -m vmctl.cli.gendocs` from the command table: do not edit."""',
        "",
        "# command name: the module of vmctl.commands declaring it, in table order (starting one",
        "# command imports only its module, vmctl.commands.find)",
        "MODULES = {",
    ]
    lines += [f"    {name!r}: {cmd.module!r}," for name, cmd in load().items()]
    return "\n".join(lines + ["}", ""])


def xe_names_section() -> list[str]:
    """The man page's list of xe's names (from the model's tables, so it cannot drift)."""
    from vmctl.model import XE_FIELDS, XE_NAME_FIELDS, XE_SPELLING

    out = [
        ".SH XE NAMES",
        _roff(
            "xe scripts run as written. Besides the argument spellings each command lists above "
            "(X-uuid= for X= naming an object, uuid= for the object a command is named after), "
            "every field is also read by its xe name wherever a field is named: list filters and VM "
            "selectors, params=, param-name=, *-param-set and creation arguments; a column "
            "asked by an xe name is shown under that name (template and snapshot commands read the "
            "vm names). A flag may be given as xe's key=value "
            "(force=true is --force, minimal=true is --minimal), and a boolean argument as a "
            "flag, also before the command name (--live is live=true). Enum values are read in "
            "any case and printed as xe prints them. Parameters of xe that change what vmctl does "
            "not model are refused (UNKNOWN_PARAMETER) with the reason each command lists above."
        ),
    ]
    classes = sorted(set(XE_FIELDS) | set(XE_NAME_FIELDS))
    for cls in classes:
        names = [f"{xe} ({ours})" for xe, ours in XE_FIELDS.get(cls, {}).items()]
        names += [f"{xe} (the name-label of its {ref})" for xe, ref in XE_NAME_FIELDS.get(cls, {}).items()]
        out += [".TP", f"\\fB{_roff(cls)}\\fR", _roff(", ".join(names))]
    spelled = [
        f"{cls} {field}: " + ", ".join(shown.values()) for (cls, field), shown in sorted(XE_SPELLING.items())
    ]
    out += [".TP", "\\fBenums\\fR", _roff("; ".join(spelled))]
    return out


TARGETS = {
    "vmctl/commands/_index.py": commands_index,
    "vmctl/cli/_completion_data.py": completion_data,
    "completions/vmctl.bash": lambda: completion_script("bash"),
    "completions/_vmctl": lambda: completion_script("zsh"),
    "completions/vmctl.fish": lambda: completion_script("fish"),
    "man/vmctl.1": manpage,
}


def main() -> int:
    texts = {rel: gen() for rel, gen in TARGETS.items()}  # all first: _index.py is read by load()
    for rel, text in texts.items():
        path = os.path.join(ROOT, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    sys.stdout.write("".join(f"wrote {rel}\n" for rel in TARGETS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
