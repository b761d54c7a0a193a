"""The bridge commands (network.md §4): add-br, del-br, list-br, br-exists, br-to-vlan,
br-to-parent, br-set-external-id and br-get-external-id."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmctl.commands.table import Ctx, Text
from vmctl.errors import OvsError
from vmctl.ovs import owned
from vmctl.ovs.datum import c_atoi
from vmctl.ovs.reply import reply
from vmctl.ovs.selection import switch

if TYPE_CHECKING:
    from vmctl.ovs.session import Session
    from vmctl.ovs.view import VBridge


def add_br(ctx: Ctx) -> Text:
    s = switch(ctx)
    o = ctx.options
    a = ctx.args
    name = a[0]
    if not name:
        raise OvsError("bridge name must not be empty string")
    parent_name: str | None = None
    vlan = 0
    if len(a) == 3:
        parent_name = a[1]
        vlan = c_atoi(a[2])
        if not 0 <= vlan <= 4095:
            raise OvsError("add-br: vlan must be between 0 and 4095")
    elif len(a) != 1:
        raise OvsError("'add-br' command takes exactly 1 or 3 arguments")
    if "--may-exist" in o:
        vb = s.find_bridge(name, False)
        if vb is not None:
            if parent_name is None:
                if vb.parent is not None:
                    raise OvsError(
                        f'"--may-exist add-br {name}" but {name} is a VLAN bridge for VLAN {vb.vlan}'
                    )
            else:
                echo = f'"--may-exist add-br {name} {parent_name} {vlan}" but {name}'
                if vb.parent is None:
                    raise OvsError(f"{echo} is not a VLAN bridge")
                if vb.parent.name != parent_name:
                    raise OvsError(f"{echo} has the wrong parent {vb.parent.name}")
                if vb.vlan != vlan:
                    raise OvsError(f"{echo} is a VLAN bridge for the wrong VLAN {vb.vlan}")
            return reply(ctx, "")
    owned.check_new_name(ctx, s, "bridge", name)
    s.check_conflicts(name, f"cannot create a bridge named {name}")
    v = s.view()
    if parent_name is None:
        iface = s.new_iface(name, "internal")
        port = s.new_port(name, [iface])
        brow = s.insert(
            "bridge",
            {
                "name": name,
                "ports": {port["uuid"]: None},
                "controller": {},
                "fail_mode": None,
                "datapath_type": "",
                "external_ids": {},
                "other_config": {},
            },
        )
        if s.exact:
            vb = s.add_vbridge(v, name, brow, None, 0)
    else:
        parent = s.find_bridge(parent_name, False)
        if parent is not None and parent.parent is not None:
            raise OvsError("cannot create bridge with fake bridge as parent")
        if parent is None:
            raise OvsError(f"parent bridge {parent_name} does not exist")
        other = parent.children.get(vlan)
        if other is not None:
            raise OvsError(
                f"bridge {parent_name} already has a child VLAN bridge {other.name} on VLAN {vlan}"
            )
        iface = s.new_iface(name, "internal")
        port = s.new_port(name, [iface])
        port["fake_bridge"] = True
        port["tag"] = vlan
        s.real(parent)["ports"][port["uuid"]] = None
        if s.exact:
            vb = s.add_vbridge(v, name, None, parent, vlan)
            # a rebuild gives the new fake bridge the parent's ports tagged with its VLAN
            for u, vp in list(parent.ports.items()):
                if vp.row["tag"] == vlan:
                    del parent.ports[u]
                    vp.bridge = vb
                    vb.ports[u] = vp
            vb = parent
    if s.exact:
        s.add_viface(v, s.add_vport(v, vb, port), iface)
    else:
        s.invalidate_view()
    return reply(ctx, "")


def del_br(ctx: Ctx) -> Text:
    s = switch(ctx)
    o = ctx.options
    a = ctx.args
    vb = s.find_bridge(a[0], "--if-exists" not in o)
    if vb is not None:
        owned.check_delete_bridge(ctx, s, vb)
        s.del_vbridge(vb)
    return reply(ctx, "")


def list_br(ctx: Ctx) -> Text:
    s = switch(ctx)
    o = ctx.options
    real = "--real" in o
    fake = "--fake" in o
    if not real and not fake:
        real = fake = True
    names = [vb.name for vb in s.view().bridges.values() if (fake if vb.parent is not None else real)]
    return reply(ctx, "".join(n + "\n" for n in sorted(names)))


def br_exists(ctx: Ctx) -> Text:
    s = switch(ctx)
    a = ctx.args
    if s.find_bridge(a[0], False) is None:
        raise OvsError(None, 2)
    return reply(ctx, "")


def br_to_vlan(ctx: Ctx) -> Text:
    s = switch(ctx)
    a = ctx.args
    vb = s.find_bridge(a[0], True)
    return reply(ctx, f"{vb.vlan}\n")  # type: ignore[union-attr]


def br_to_parent(ctx: Ctx) -> Text:
    s = switch(ctx)
    a = ctx.args
    vb = s.find_bridge(a[0], True)
    assert vb is not None
    return reply(ctx, f"{(vb.parent or vb).name}\n")


def br_set_external_id(ctx: Ctx) -> Text:
    s = switch(ctx)
    a = ctx.args
    vb = s.find_bridge(a[0], True)
    assert vb is not None
    row, prefix = _ext_target(s, vb)
    key = prefix + a[1]
    if len(a) > 2:
        row["external_ids"][key] = a[2]
    else:
        row["external_ids"].pop(key, None)
    s.dirty = True
    return reply(ctx, "")


def br_get_external_id(ctx: Ctx) -> Text:
    s = switch(ctx)
    a = ctx.args
    vb = s.find_bridge(a[0], True)
    assert vb is not None
    row, prefix = _ext_target(s, vb)
    ext = row["external_ids"]
    if len(a) > 1:
        val = ext.get(prefix + a[1])
        return reply(ctx, "" if val is None else val + "\n")
    return reply(ctx, "".join(f"{k[len(prefix) :]}={ext[k]}\n" for k in sorted(ext) if k.startswith(prefix)))


def _ext_target(s: Session, vb: VBridge) -> tuple[dict, str]:
    if vb.row is not None:
        return vb.row, ""
    vp = s.view().ports.get(vb.name)
    if vp is None:  # cannot happen with rows made by these commands; never a traceback
        raise OvsError(f"no port named {vb.name}")
    return vp.row, "fake-bridge-"
