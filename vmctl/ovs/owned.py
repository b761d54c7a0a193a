"""The ovs-style commands a user issues leave alone what the xe layer owns on the host (model.md
§1.8): a managed network's bridge, a VLAN's fake bridge, the ports of plugged PIFs, bonds, tunnels
and running VMs' VIFs, and the names of the host's PIF devices (vmctl.xenet.SwitchOwners). They
refuse to delete, move or edit those and to create ports, interfaces or bridges under those names,
saying who owns the object and which xe commands change it.

The xe layer changes the same rows through Session.run, where the Ctx has no transaction: these
checks do not apply there."""

from __future__ import annotations

from vmctl.errors import OvsError


def _owner(ctx, s, name: str) -> tuple[str, str] | None:
    if ctx.txn is None:
        return None
    from vmctl import xenet

    return xenet.switch_owners(ctx.txn, s.host_uuid).owner(name)


def _refuse(action: str, subject: str, owner: tuple[str, str]) -> OvsError:
    what, use = owner
    return OvsError(f"cannot {action}: {subject} {what}, which XAPI owns; use {use}")


def check_delete_bridge(ctx, s, vb) -> None:
    """del-br: the bridge, its VLAN bridges and the ports on them."""
    if ctx.txn is None:
        return
    own = _owner(ctx, s, vb.name)
    if own is not None:
        raise _refuse(f"delete bridge {vb.name}", "it is", own)
    for child in vb.children.values():
        own = _owner(ctx, s, child.name)
        if own is not None:
            raise _refuse(f"delete bridge {vb.name}", f"its VLAN bridge {child.name} is", own)
    for b in (vb, *vb.children.values()):
        for vp in b.ports.values():
            name = vp.row["name"]
            if name == b.name:
                continue
            own = _owner(ctx, s, name)
            if own is not None:
                raise _refuse(f"delete bridge {vb.name}", f"its port {name} is", own)


def check_change_port(ctx, s, action: str, vp) -> None:
    """del-port, add-bond-iface, del-bond-iface: a port the xe layer made, or one of its
    interfaces."""
    if ctx.txn is None:
        return
    name = vp.row["name"]
    own = _owner(ctx, s, name)
    if own is not None:
        raise _refuse(f"{action} port {name}", "it is", own)
    for vi in vp.ifaces.values():
        iname = vi.row["name"]
        own = _owner(ctx, s, iname) if iname != name else None
        if own is not None:
            raise _refuse(f"{action} port {name}", f"its interface {iname} is", own)


def check_new_name(ctx, s, kind: str, name: str) -> None:
    """add-br, add-port, add-bond, add-bond-iface: a new bridge, port or interface does not take a
    name the xe layer owns (a managed network's bridge may be made again with add-br)."""
    if ctx.txn is None:
        return
    own = _owner(ctx, s, name)
    if own is None:
        return
    if kind == "bridge" and "bridge of network" in own[0]:
        return
    article = "an" if kind[0] in "aeiou" else "a"
    raise _refuse(f"create {article} {kind} named {name}", "it is", own)


def check_edit_row(ctx, s, table: str, row: dict) -> None:
    """set, clear: a Bridge, Port or Interface record the xe layer owns."""
    if ctx.txn is None:
        return
    name = row.get("name")
    own = _owner(ctx, s, name) if isinstance(name, str) else None
    if own is not None:
        raise _refuse(f"modify {table} record {name}", "it is", own)
