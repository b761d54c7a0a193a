"""The Open vSwitch commands of ovs-vsctl: init and show (network.md §4, §6)."""

from __future__ import annotations

from vmctl.commands.table import Ctx, Text
from vmctl.ovs.datum import atom_str
from vmctl.ovs.reply import reply
from vmctl.ovs.selection import switch


def init(ctx: Ctx) -> Text:
    switch(ctx)  # the host is resolved and its switch loaded for every command
    return reply(ctx, "")


def show(ctx: Ctx) -> Text:
    s = switch(ctx)
    t = s.tables
    q = _q
    out = [s.host_uuid]
    for b in sorted(t["bridge"].values(), key=lambda r: r["name"]):
        out.append("    Bridge " + q(b["name"]))
        ctls = sorted(
            (t["controller"][u] for u in b["controller"] if u in t["controller"]),
            key=lambda r: r["target"],
        )
        out.extend("        Controller " + q(c["target"]) for c in ctls)
        if b["fail_mode"] is not None:
            out.append("        fail_mode: " + q(b["fail_mode"]))
        if b["datapath_type"]:
            out.append("        datapath_type: " + q(b["datapath_type"]))
        ports = sorted((t["port"][u] for u in b["ports"] if u in t["port"]), key=lambda r: r["name"])
        for p in ports:
            out.append("        Port " + q(p["name"]))
            if p["tag"] is not None:
                out.append(f"            tag: {p['tag']}")
            if p["trunks"]:
                out.append("            trunks: [" + ", ".join(map(str, sorted(p["trunks"]))) + "]")
            ifaces = sorted(
                (t["interface"][u] for u in p["interfaces"] if u in t["interface"]),
                key=lambda r: r["name"],
            )
            for i in ifaces:
                out.append("            Interface " + q(i["name"]))
                if i["type"]:
                    out.append("                type: " + q(i["type"]))
                if i["options"]:
                    opts = ", ".join(f"{q(k)}={q(v)}" for k, v in sorted(i["options"].items()))
                    out.append("                options: {" + opts + "}")
    return reply(ctx, "\n".join(out) + "\n")


def _q(s: str) -> str:
    return atom_str("string", s)
