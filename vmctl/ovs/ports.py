"""The port and interface commands (network.md §4): list-ports, add-port, add-bond, del-port,
port-to-br, add-bond-iface, del-bond-iface, list-ifaces and iface-to-br."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmctl.commands.table import Ctx, Text
from vmctl.errors import OvsError
from vmctl.ovs import owned
from vmctl.ovs.reply import reply
from vmctl.ovs.selection import switch

if TYPE_CHECKING:
    from vmctl.ovs.view import VPort


def list_ports(ctx: Ctx) -> Text:
    s = switch(ctx)
    a = ctx.args
    vb = s.find_bridge(a[0], True)
    assert vb is not None
    names = [vp.row["name"] for vp in vb.ports.values() if vp.row["name"] != vb.name]
    return reply(ctx, "".join(n + "\n" for n in sorted(names)))


def add_port(ctx: Ctx) -> Text:
    s = switch(ctx)
    o = ctx.options
    a = ctx.args
    if "--may-exist" not in o or s.find_port(a[1], False) is None:
        owned.check_new_name(ctx, s, "port", a[1])
    s.create_port(a[0], a[1], [a[1]], a[2:], o, ["add-port", *a], "--may-exist" in o, False)
    return reply(ctx, "")


def add_bond(ctx: Ctx) -> Text:
    s = switch(ctx)
    o = ctx.options
    a = ctx.args
    n = len(a) - 2
    for i in range(2, len(a)):
        if "=" in a[i]:
            n = i - 2
            break
    if n < 2:
        raise OvsError(f"add-bond requires at least 2 interfaces, but only {n} were specified")
    if "--may-exist" not in o or s.find_port(a[1], False) is None:
        owned.check_new_name(ctx, s, "port", a[1])
        for i in a[2 : 2 + n]:
            owned.check_new_name(ctx, s, "interface", i)
    s.create_port(
        a[0], a[1], a[2 : 2 + n], a[2 + n :], o, ["add-bond", *a], "--may-exist" in o, "--fake-iface" in o
    )
    return reply(ctx, "")


def del_port(ctx: Ctx) -> Text:
    s = switch(ctx)
    o = ctx.options
    a = ctx.args
    must = "--if-exists" not in o
    target = a[-1]
    vp: VPort | None
    if s.find_bridge(target, False) is not None:
        if must:
            raise OvsError(
                f"cannot delete port {target} because it is the local port for bridge "
                f"{target} (deleting this port requires deleting the entire bridge)"
            )
        vp = None
    elif "--with-iface" not in o:
        vp = s.find_port(target, must)
    else:
        vp = s.find_port(target, False)
        if vp is None:
            vi = s.find_iface(target, False)
            if vi is not None:
                vp = vi.port
        if must and vp is None:
            raise OvsError(f"no port or interface named {target}")
    if vp is None:
        return reply(ctx, "")
    if len(a) == 2:
        vb = s.find_bridge(a[0], True)
        if vp.bridge is not vb:
            if vp.bridge.parent is vb:
                raise OvsError(
                    f"bridge {a[0]} does not have a port {a[1]} (although its child bridge "
                    f"{vp.bridge.name} does)"
                )
            raise OvsError(f"bridge {a[0]} does not have a port {a[1]}")
    owned.check_change_port(ctx, s, "delete", vp)
    s.del_vport(vp)
    return reply(ctx, "")


def port_to_br(ctx: Ctx) -> Text:
    s = switch(ctx)
    a = ctx.args
    vp = s.find_port(a[0], True)
    return reply(ctx, vp.bridge.name + "\n")  # type: ignore[union-attr]


def add_bond_iface(ctx: Ctx) -> Text:
    s = switch(ctx)
    o = ctx.options
    a = ctx.args
    vp = s.find_port(a[0], True)
    assert vp is not None
    name = a[1]
    if "--may-exist" in o:
        vi = s.find_iface(name, False)
        if vi is not None:
            if vi.port is vp:
                return reply(ctx, "")
            raise OvsError(
                f'"{s.echo(o, ["add-bond-iface", *a])}" but {name} is actually attached '
                f"to port {vi.port.row['name']}"
            )
    owned.check_change_port(ctx, s, "change", vp)
    owned.check_new_name(ctx, s, "interface", name)
    s.check_conflicts(name, f"cannot create an interface named {name}")
    irow = s.new_iface(name)
    s.iface_ops.append((vp.row["uuid"], True, irow["uuid"]))
    s.exact = False  # a rebuild reads the unedited column (§3.4)
    s.add_viface(s.view(), vp, irow)
    return reply(ctx, "")


def del_bond_iface(ctx: Ctx) -> Text:
    s = switch(ctx)
    o = ctx.options
    a = ctx.args
    name = a[-1]
    vi = s.find_iface(name, "--if-exists" not in o)
    if vi is None:
        return reply(ctx, "")
    if len(a) == 2:
        vp = s.find_port(a[0], True)
        assert vp is not None
        if vi.port is not vp:
            raise OvsError(f"port {vp.row['name']} does not have an interface {name}")
    port = vi.port
    if len(port.ifaces) <= 1:
        raise OvsError(f"cannot delete last interface from port {port.row['name']}")
    owned.check_change_port(ctx, s, "change", port)
    s.iface_ops.append((port.row["uuid"], False, vi.row["uuid"]))
    s.exact = False
    s.dirty = True
    s.delete("interface", vi.row["uuid"])
    port.ifaces.pop(vi.row["uuid"], None)
    v = s.view()
    if v.ifaces.get(name) is vi:
        del v.ifaces[name]
    return reply(ctx, "")


def list_ifaces(ctx: Ctx) -> Text:
    s = switch(ctx)
    a = ctx.args
    vb = s.find_bridge(a[0], True)
    assert vb is not None
    names = [
        vi.row["name"] for vp in vb.ports.values() for vi in vp.ifaces.values() if vi.row["name"] != vb.name
    ]
    return reply(ctx, "".join(n + "\n" for n in sorted(names)))


def iface_to_br(ctx: Ctx) -> Text:
    s = switch(ctx)
    a = ctx.args
    vi = s.find_iface(a[0], True)
    return reply(ctx, vi.port.bridge.name + "\n")  # type: ignore[union-attr]
