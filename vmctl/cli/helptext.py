"""Help texts generated from the command table: `vmctl --help`, `vmctl help CMD`,
`vmctl CMD --help` and `--commands`. The man page uses the same words (cli/manpage.py)."""

from __future__ import annotations

import json

from vmctl.commands import load


def arg_lines(cmd) -> list[tuple[str, str]]:
    """(term, description) pairs for a command's arguments and flags, as the man page prints them."""
    out = []
    for a in cmd.args:
        if cmd.style == "util":
            out.append((f"{a.short}, {a.name}" if a.short else a.name, a.help))
            continue
        term = f"{a.name}:KEY=VALUE" if a.type == "map" else f"{a.name}="
        term += "".join(f"|{k}=" for k, v in cmd.aliases.items() if v == a.name)
        req = "required" if a.required else "optional"
        desc = a.help or ""
        if a.values:
            desc = (desc + "; " if desc else "") + "one of " + ", ".join(a.values)
        out.append((term, f"({req}, {a.type}) {desc}".rstrip()))
    if cmd.fields_of and cmd.fields_of != "*":
        out.append(("FIELD=VALUE", f"(optional) any writable field of a {cmd.fields_of}"))
    if cmd.list_of:
        out.append(("FIELD=VALUE", "(optional) only objects whose field has this value"))
    for f in cmd.flags:
        out.append((f, FLAG_HELP.get(f, "")))
    if cmd.creates:
        out.append(("--id=@NAME", "name the new object for later commands of the same chain or batch"))
    for name, why in cmd.refused.items():
        term = name + ("KEY=VALUE" if name.endswith("-") else "=")
        out.append((term, f"(xe's, not taken) {why}"))
    return out


FLAG_HELP = {
    "--force": "skip the checks this command lets you force (as xe --force does), and the confirmation",
    "--multiple": "act on every object the selector matches",
    "--may-exist": "succeed without change when the object already exists",
    "--if-exists": "succeed without change when the object does not exist",
    "--all": "include templates, snapshots or base copies hidden by default",
    "--fix": "repair what can be repaired (I5, I11, I12, I13)",
    "--paused": "end in the paused state",
    "--explain": (
        "print how the decision was made: each host's verdict for a placement, the plan of a "
        "migration, evacuation or rebalance, the bytes a copy moves; changes nothing (implies --dry-run)"
    ),
}


def command_help(name: str) -> str:
    cmd = load().get(name)
    if cmd is None:
        from vmctl.cli.bind import unknown_command

        raise unknown_command(name)
    lines = [f"usage: vmctl {cmd.synopsis}", "", cmd.help]
    al = arg_lines(cmd)
    if al:
        lines.append("")
        w = max(len(t) for t, _ in al)
        for t, d in al:
            lines.append(f"  {t:<{w}}  {d}".rstrip())
    if cmd.style == "ovs":
        lines += ["", "Acts on the bridges of one host: --host=NAME, VMCTL_HOST, or the only host."]
    return "\n".join(lines) + "\n"


FAMILY_ORDER = [
    "pool",
    "host",
    "vm",
    "vm-group",
    "snapshot",
    "sr",
    "pbd",
    "vdi",
    "vbd",
    "network",
    "pif",
    "vif",
    "vlan",
    "bond",
    "tunnel",
    "bridge",
    "task",
    "journal",
    "inventory",
    "utility",
]


def general_help() -> str:
    cmds = load()
    lines = [
        "usage: vmctl [GLOBAL-OPTIONS] COMMAND [ARGS...] [-- COMMAND [ARGS...]]...",
        "",
        "An xe/ovs-vsctl-style virtualization manager. One invocation is one transaction.",
        "",
        "Global options:",
        "  --db=URL|PATH      the inventory (default $VMCTL_DB, else ~/.local/share/vmctl/inventory.db)",
        "  --host=H           the host ovs-style commands act on (default $VMCTL_HOST, else the only host)",
        "  -f, --format=FMT   table, json, yaml, csv or tsv (default $VMCTL_FORMAT, else table)",
        "  --minimal          only the first field of each record, comma-separated",
        "  --no-headings      no header row",
        "  --dry-run          run everything, print, then roll back",
        "  --yes              answer yes to confirmations",
        "  --oneline          ovs-style output on one line per command",
        "  -q, --quiet        no warnings",
        "  -t, --timeout=S    wait at most S seconds for the inventory lock (default 30; exit 75)",
        "  --commands         list every command as JSON lines",
        "  --async            print a started task's uuid and return; it goes on in the manager",
        "  --version          print the version",
        "",
        "Commands (vmctl help COMMAND for details):",
    ]
    fams: dict[str, list] = {}
    for c in cmds.values():
        fams.setdefault(c.family or "other", []).append(c)
    for fam in sorted(fams, key=lambda f: (FAMILY_ORDER.index(f) if f in FAMILY_ORDER else 99, f)):
        names = sorted(c.name for c in fams[fam])
        lines.append(f"  {fam}: " + ", ".join(names))
    return "\n".join(lines) + "\n"


def commands_json() -> str:
    out = []
    for c in load().values():
        out.append(
            json.dumps(
                {
                    "name": c.name,
                    "style": c.style,
                    "required": [a.name for a in c.args if a.required],
                    "optional": [a.name for a in c.args if not a.required],
                    "aliases": dict(c.aliases),
                    "flags": list(c.flags) if c.style != "ovs" else [o for o in c.options.split(",") if o],
                }
            )
        )
    return "\n".join(out) + "\n"
