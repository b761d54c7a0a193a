"""The mapping between xe-style networking objects and each host's bridge rows
(model.md §1.8, network.md §8). The rows are the single truth; these functions add and remove
the bridges and ports xe objects own, and read attachment from the rows.

Everything here works through the host's ovs-style session (`txn.switch(host)`): its helpers
(has_bridge, port_bridge, add_bridge, del_bridge, add_port, del_port), `run()` for any other
ovs-vsctl command, and `records()` to read rows. Nothing here touches the session's internals.
"""

from __future__ import annotations

import json
import re

from vmctl.errors import OvsError, VmctlError

BRIDGE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# Prefixes reserved for the bridges, devices and ports vmctl itself names (model.md §3.6).
RESERVED_PREFIXES = ("xen", "xapi", "vif", "tap", "eth")
RESIDENT = ("running", "paused")


def default_bridge_for_device(device: str) -> str:
    """`eth0` -> `xenbr0`; other devices keep their name after the prefix (`em1` -> `xenbrem1`)."""
    return "xenbr" + (device[3:] if device.startswith("eth") else device)


def network_ids(network: dict) -> dict[str, str]:
    return {"xs-network-uuids": network["uuid"]}


def pool_hosts(txn, pool_uuid: str) -> list[str]:
    return sorted(h["uuid"] for h in txn.select("host", pool=pool_uuid))


def _host_err(code: str, key: str, name: str, txn, host_uuid: str) -> VmctlError:
    return VmctlError(code, params=[(key, name), ("host", txn.ref("host", host_uuid))])


# --- reading the switch -------------------------------------------------------------------------------
def has_interface(s, name: str) -> bool:
    try:
        s.run("iface-to-br", {}, [name])
    except OvsError:
        return False
    return True


def bridge_kind(s, name: str) -> tuple[str, int] | None:
    """None when no bridge of that name exists, else (parent, vlan): parent == name for a real
    bridge, the parent's name and the VLAN for a fake one."""
    if not s.has_bridge(name):
        return None
    parent = s.run("br-to-parent", {}, [name]).strip()
    vlan = int(s.run("br-to-vlan", {}, [name]).strip() or 0)
    return parent, vlan


def name_use(s, name: str) -> str | None:
    """What `name` already is on a host: 'bridge', 'fake', 'port', 'interface' or None."""
    kind = bridge_kind(s, name)
    if kind is not None:
        return "bridge" if kind[0] == name else "fake"
    if s.port_bridge(name) is not None:
        return "port"
    if has_interface(s, name):
        return "interface"
    return None


def _rows(s) -> dict[str, list[dict]]:
    return s.records()


def port_snapshot(s, name: str) -> dict | None:
    """The Port row named `name` and its Interface rows (in the port's order), as copies."""
    recs = _rows(s)
    ifaces = {r["uuid"]: r for r in recs["interface"]}
    for p in recs["port"]:
        if p["name"] == name:
            return {"port": dict(p), "ifaces": [dict(ifaces[u]) for u in p["interfaces"] if u in ifaces]}
    return None


def _bridge_ports(s, bridge: str) -> list[str]:
    """The ports attributed to a bridge (local and fake-bridge ports hidden, as list-ports)."""
    return [x for x in s.run("list-ports", {}, [bridge]).splitlines() if x]


def _q(v: str) -> str:
    """An OVSDB string atom, always quoted so that colons and the like survive."""
    return json.dumps(str(v), ensure_ascii=False)


def restore_port(s, bridge: str, snap: dict) -> None:
    """Re-create a port saved by port_snapshot on `bridge` (through a fake bridge it takes its
    VLAN, network.md §3.2): interface types, options and ids, and the port's own columns."""
    p, ifaces = snap["port"], snap["ifaces"]
    names = [i["name"] for i in ifaces] or [p["name"]]
    s.add_port(bridge, p["name"], ifaces=names)
    sets = []
    for col in ("external_ids", "other_config"):
        for k, v in sorted((p.get(col) or {}).items()):
            sets.append(f"{col}:{_q(k)}={_q(v)}")
    for col in ("bond_mode", "lacp", "vlan_mode"):
        if p.get(col):
            sets.append(f"{col}={p[col]}")
    if p.get("trunks"):
        sets.append("trunks=" + ",".join(str(t) for t in p["trunks"]))
    if sets:
        s.run("set", {}, ["port", p["name"], *sets])
    for i in ifaces:
        isets = [f"type={_q(i['type'])}"] if i.get("type") else []
        for col in ("options", "external_ids", "other_config"):
            for k, v in sorted((i.get(col) or {}).items()):
                isets.append(f"{col}:{_q(k)}={_q(v)}")
        if isets:
            s.run("set", {}, ["interface", i["name"], *isets])


# --- network bridges ------------------------------------------------------------------------------------
def check_bridge_name(name: str) -> None:
    """model.md §3.6: 1-15 characters of [A-Za-z0-9_.-], not a prefix vmctl reserves."""
    if not BRIDGE_RE.match(name) or name.startswith(RESERVED_PREFIXES):
        raise VmctlError(
            "INVALID_VALUE",
            "A bridge name has 1-15 characters of A-Z a-z 0-9 _ . - and does "
            "not start with xen, xapi, vif, tap or eth",
            [("name", "bridge"), ("value", name)],
        )


def bridge_conflict(txn, pool_uuid: str, name: str) -> str | None:
    """The first host (uuid order) of the pool where `name` is a fake bridge, a port or an
    interface (network.md §8: a real bridge is kept, those refuse)."""
    for h in pool_hosts(txn, pool_uuid):
        if name_use(txn.switch(h), name) in ("fake", "port", "interface"):
            return h
    return None


def next_bridge_name(txn, pool_uuid: str) -> str:
    """`xapi<k>`, k the smallest integer >= 0 that is no network's bridge in the pool and no
    bridge, port or interface on any of its hosts (network.md §8)."""
    taken = {n["bridge"] for n in txn.select("network", pool=pool_uuid)}
    switches = [txn.switch(h) for h in pool_hosts(txn, pool_uuid)]
    k = 0
    while True:
        name = f"xapi{k}"
        if name not in taken and all(name_use(s, name) is None for s in switches):
            return name
        k += 1


def vlan_pif_on(txn, network_uuid: str, host_uuid: str) -> dict | None:
    for p in txn.select("pif", network=network_uuid, host=host_uuid):
        if p["vlan"] >= 0 and not p["physical"]:
            return p
    return None


def vlan_parent(txn, vlan_pif: dict) -> tuple[dict, int] | None:
    """(the tagged PIF's network, tag) of a VLAN PIF."""
    vl = txn.one_or_none("vlan", untagged_pif=vlan_pif["uuid"])
    if vl is None:
        return None
    tagged = txn.get("pif", vl["tagged-pif"])
    net = txn.get("network", tagged["network"]) if tagged else None
    return (net, vl["tag"]) if net is not None else None


def _rebuild_bridge(txn, host_uuid: str, name: str, parent: str | None, tag: int, network: dict) -> None:
    """Replace bridge `name` (if any) by a real bridge (parent None) or a fake one under
    `parent` with VLAN `tag`, keeping its ports (network.md §8: vlan-create / vlan-destroy)."""
    s = txn.switch(host_uuid)
    snaps = []
    if s.has_bridge(name):
        snaps = [x for x in (port_snapshot(s, p) for p in _bridge_ports(s, name)) if x]
        s.del_bridge(name)
    if parent is None:
        s.add_bridge(name, external_ids=network_ids(network))
    else:
        s.run("add-br", {}, [name, parent, str(tag)])
        s.run("br-set-external-id", {}, [name, "xs-network-uuids", network["uuid"]])
    for snap in snaps:
        snap["port"]["tag"] = None
        restore_port(s, name, snap)


def ensure_network_bridge(txn, network: dict, host_uuid: str, managed_only: bool = True) -> None:
    """A managed network's bridge on one host: a fake bridge where the host has a VLAN PIF on
    the network, else a real bridge (an existing real bridge is kept with its ports).
    BRIDGE_NAME_EXISTS [bridge, host] when the name is taken otherwise on that host."""
    if managed_only and not network["managed"]:
        return
    s = txn.switch(host_uuid)
    name = network["bridge"]
    vpif = vlan_pif_on(txn, network["uuid"], host_uuid)
    parent = vlan_parent(txn, vpif) if vpif is not None else None
    use = name_use(s, name)
    if use in ("port", "interface"):
        raise _host_err("BRIDGE_NAME_EXISTS", "bridge", name, txn, host_uuid)
    if parent is None:
        if use == "fake":
            raise _host_err("BRIDGE_NAME_EXISTS", "bridge", name, txn, host_uuid)
        if use is None:
            s.add_bridge(name, external_ids=network_ids(network))
        elif "xs-network-uuids" not in s.run("br-get-external-id", {}, [name]):
            s.run("br-set-external-id", {}, [name, "xs-network-uuids", network["uuid"]])
        return
    pnet, tag = parent
    if pnet["managed"]:
        ensure_network_bridge(txn, pnet, host_uuid)
    if not s.has_bridge(pnet["bridge"]) or bridge_kind(s, pnet["bridge"])[0] != pnet["bridge"]:
        return  # no real parent bridge: the VLAN PIF reads detached, db-check reports it
    if bridge_kind(s, name) == (pnet["bridge"], tag):
        return
    _rebuild_bridge(txn, host_uuid, name, pnet["bridge"], tag, network)


def make_plain_bridge(txn, network: dict, host_uuid: str) -> None:
    """vlan-destroy: the fake bridge becomes a plain bridge and keeps its ports."""
    s = txn.switch(host_uuid)
    kind = bridge_kind(s, network["bridge"])
    if kind is not None and kind[0] == network["bridge"]:
        return
    if kind is None and not network["managed"]:
        return
    _rebuild_bridge(txn, host_uuid, network["bridge"], None, 0, network)


def remove_network_bridge(txn, network: dict, host_uuid: str) -> None:
    """network-destroy / pool-eject: as `--if-exists del-br`."""
    txn.switch(host_uuid).del_bridge(network["bridge"])


def sync_host_bridges(txn, host_uuid: str) -> None:
    """pool-join: give a host the bridges of every managed network of its pool (a host that
    already has a real bridge of that name keeps it), then the ports of its plugged PIFs."""
    host = txn.get("host", host_uuid)
    for net in sorted(txn.select("network", pool=host["pool"]), key=lambda n: n["uuid"]):
        if not vlan_pif_on(txn, net["uuid"], host_uuid):
            ensure_network_bridge(txn, net, host_uuid)
    for net in sorted(txn.select("network", pool=host["pool"]), key=lambda n: n["uuid"]):
        if vlan_pif_on(txn, net["uuid"], host_uuid):
            ensure_network_bridge(txn, net, host_uuid)
    for pif in txn.select("pif", host=host_uuid):
        if not pif_attached(txn, pif):
            add_pif_ports(txn, pif)


# --- owned ports ----------------------------------------------------------------------------------------
def add_owned_port(txn, host_uuid: str, bridge: str, port: str, **kw) -> None:
    """network.md §8: an existing port of that name goes first; a bridge or an interface of
    another port with that name refuses with DEVICE_ALREADY_EXISTS [device, host]."""
    s = txn.switch(host_uuid)
    if s.has_bridge(port):
        raise _host_err("DEVICE_ALREADY_EXISTS", "device", port, txn, host_uuid)
    if s.port_bridge(port) is not None:
        s.del_port(port)
    for i in kw.get("ifaces") or [port]:
        if has_interface(s, i):
            raise _host_err("DEVICE_ALREADY_EXISTS", "device", i, txn, host_uuid)
    s.add_port(bridge, port, **kw)


def _network_bridge_on(txn, network_uuid: str, host_uuid: str, create: bool = True) -> str | None:
    """The name of the network's bridge on the host, creating it for a managed network."""
    net = txn.get("network", network_uuid)
    if net is None:
        return None
    s = txn.switch(host_uuid)
    if not s.has_bridge(net["bridge"]) and create:
        ensure_network_bridge(txn, net, host_uuid)
    return net["bridge"] if s.has_bridge(net["bridge"]) else None


def bond_of(txn, pif_uuid: str, as_member: bool = True) -> dict | None:
    for b in txn.all("bond"):
        if (as_member and pif_uuid in b["slaves"]) or (not as_member and b["master"] == pif_uuid):
            return b
    return None


def add_pif_port(txn, pif: dict) -> None:
    """Port and interface D on its network's bridge, for a plugged physical PIF that is no
    bond member (a member's interface lives in the bond port)."""
    if not pif["physical"] or not pif["plugged"] or bond_of(txn, pif["uuid"]):
        return
    bridge = _network_bridge_on(txn, pif["network"], pif["host"])
    if bridge is not None:
        add_owned_port(txn, pif["host"], bridge, pif["device"])


def add_pif_ports(txn, pif: dict) -> None:
    """Whatever the PIF's kind: physical port, bond port, VLAN fake bridge, tunnel ports."""
    if pif["physical"]:
        member_bond = bond_of(txn, pif["uuid"])
        if member_bond is not None:
            add_bond_port(txn, member_bond)
        else:
            add_pif_port(txn, pif)
        return
    b = bond_of(txn, pif["uuid"], as_member=False)
    if b is not None:
        add_bond_port(txn, b)
        return
    net = txn.get("network", pif["network"])
    if net is not None and pif["vlan"] >= 0:
        ensure_network_bridge(txn, net, pif["host"], managed_only=False)
        return
    for t in txn.select("tunnel", access_pif=pif["uuid"]):
        add_tunnel_ports(txn, t)


def remove_pif_port(txn, pif: dict) -> None:
    """pif-unplug / pif-forget: the PIF's own port goes (`--if-exists del-port`)."""
    s = txn.switch(pif["host"])
    if pif["physical"] and not bond_of(txn, pif["uuid"]):
        s.del_port(pif["device"])
    elif bond_of(txn, pif["uuid"], as_member=False):
        s.del_port(pif["device"])


# --- bonds ----------------------------------------------------------------------------------------------
BOND_OVS_MODE = {
    "balance-slb": ("balance-slb", None),
    "active-backup": ("active-backup", None),
    "lacp": ("balance-tcp", "active"),
}


def bond_members(txn, bond: dict) -> list[dict]:
    """The members, primary first, then in uuid order."""
    rows = [txn.get("pif", u) for u in bond["slaves"]]
    rows = [r for r in rows if r is not None]
    return sorted(rows, key=lambda r: (r["uuid"] != bond["primary-slave"], r["uuid"]))


def set_bond_mode(txn, bond: dict, mode: str) -> None:
    master = txn.get("pif", bond["master"])
    s = txn.switch(master["host"])
    if s.port_bridge(master["device"]) is None:
        return
    ovs_mode, lacp = BOND_OVS_MODE[mode]
    s.run("set", {}, ["port", master["device"], f"bond_mode={ovs_mode}"])
    if lacp:
        s.run("set", {}, ["port", master["device"], f"lacp={lacp}"])
    else:
        s.run("clear", {}, ["port", master["device"], "lacp"])


def add_bond_port(txn, bond: dict) -> None:
    """Port bond<k> on the bond network's bridge with one interface per member device; the
    members lose their own ports (network.md §8)."""
    master = txn.get("pif", bond["master"])
    members = bond_members(txn, bond)
    s = txn.switch(master["host"])
    for m in members:
        if s.port_bridge(m["device"]) is not None:
            s.del_port(m["device"])
    bridge = _network_bridge_on(txn, master["network"], master["host"])
    if bridge is None:
        return
    add_owned_port(txn, master["host"], bridge, master["device"], ifaces=[m["device"] for m in members])
    set_bond_mode(txn, bond, bond["mode"])


def bond_port_ok(txn, bond: dict) -> bool:
    master = txn.get("pif", bond["master"])
    net = txn.get("network", master["network"]) if master else None
    if net is None:
        return False
    s = txn.switch(master["host"])
    if s.port_bridge(master["device"]) != net["bridge"]:
        return False
    snap = port_snapshot(s, master["device"])
    have = sorted(i["name"] for i in snap["ifaces"]) if snap else []
    return have == sorted(m["device"] for m in bond_members(txn, bond))


# --- tunnels --------------------------------------------------------------------------------------------
def tunnel_port_name(protocol: str, peer_host_uuid: str) -> str:
    return f"{protocol}-{peer_host_uuid.replace('-', '')[:8]}"


def _tunnel_host(txn, tunnel: dict) -> str | None:
    p = txn.get("pif", tunnel["access-pif"])
    return p["host"] if p else None


def _tunnel_network(txn, tunnel: dict) -> dict | None:
    p = txn.get("pif", tunnel["access-pif"])
    return txn.get("network", p["network"]) if p else None


def _transport_ip(txn, tunnel: dict) -> str:
    p = txn.get("pif", tunnel["transport-pif"])
    return p["ip"] if p else ""


def tunnel_peers(txn, tunnel: dict) -> list[dict]:
    """The other tunnels on the same network (one per other host)."""
    net = _tunnel_network(txn, tunnel)
    if net is None:
        return []
    out = []
    for p in txn.select("pif", network=net["uuid"]):
        for t in txn.select("tunnel", access_pif=p["uuid"]):
            if t["uuid"] != tunnel["uuid"]:
                out.append(t)
    return sorted(out, key=lambda t: t["uuid"])


def _tunnel_port(txn, here: dict, peer: dict) -> tuple[str, str, dict] | None:
    """(host, port name, kwargs) for the port on `here`'s host that leads to `peer`."""
    host, peer_host = _tunnel_host(txn, here), _tunnel_host(txn, peer)
    net = _tunnel_network(txn, here)
    if host is None or peer_host is None or net is None:
        return None
    name = tunnel_port_name(here["protocol"], peer_host)
    return (
        host,
        name,
        {
            "iface_type": here["protocol"],
            "options": {"remote_ip": _transport_ip(txn, peer), "key": str(net["tunnel-key"])},
        },
    )


def add_tunnel_ports(txn, tunnel: dict) -> None:
    """The ports of model.md §1.8 on the tunnel's host and on every peer's."""
    net = _tunnel_network(txn, tunnel)
    for peer in tunnel_peers(txn, tunnel):
        for a, b in ((tunnel, peer), (peer, tunnel)):
            spec = _tunnel_port(txn, a, b)
            if spec is None:
                continue
            host, name, kw = spec
            bridge = _network_bridge_on(txn, net["uuid"], host)
            if bridge is not None:
                add_owned_port(txn, host, bridge, name, **kw)


def remove_tunnel_ports(txn, tunnel: dict) -> None:
    for peer in tunnel_peers(txn, tunnel):
        for a, b in ((tunnel, peer), (peer, tunnel)):
            spec = _tunnel_port(txn, a, b)
            if spec is not None:
                txn.switch(spec[0]).del_port(spec[1])


def tunnel_ports_ok(txn, tunnel: dict) -> bool:
    net = _tunnel_network(txn, tunnel)
    for peer in tunnel_peers(txn, tunnel):
        spec = _tunnel_port(txn, tunnel, peer)
        if spec is None:
            continue
        host, name, kw = spec
        s = txn.switch(host)
        if s.port_bridge(name) != net["bridge"]:
            return False
        snap = port_snapshot(s, name)
        i = snap["ifaces"][0] if snap and snap["ifaces"] else {}
        if i.get("type") != kw["iface_type"] or i.get("options") != kw["options"]:
            return False
    return True


# --- VIFs -----------------------------------------------------------------------------------------------
def vif_port_name(vm: dict, vif: dict) -> str:
    return f"vif{vm['domid']}.{vif['device']}"


def vif_iface_ids(vm: dict, vif: dict) -> dict[str, str]:
    return {
        "attached-mac": vif["mac"],
        "iface-id": vif["uuid"],
        "vm-id": vm["uuid"],
        "xs-network-uuid": vif["network"],
        "xs-vif-uuid": vif["uuid"],
        "xs-vm-uuid": vm["uuid"],
    }


def plug_vif_port(txn, vif: dict, vm: dict | None = None, host_uuid: str | None = None) -> bool:
    """Port and interface vif<domid>.<device> on the VIF's network bridge on the VM's host
    (through the fake bridge of a VLAN network, so it gets the tag). False when the bridge
    cannot be had there (an unmanaged network without its bridge)."""
    vm = vm or txn.get("vm", vif["vm"])
    host_uuid = host_uuid or vm["resident-on"]
    if vm is None or not host_uuid:
        return False
    bridge = _network_bridge_on(txn, vif["network"], host_uuid)
    if bridge is None:
        return False
    add_owned_port(txn, host_uuid, bridge, vif_port_name(vm, vif), iface_external_ids=vif_iface_ids(vm, vif))
    return True


def _ports_of_vif(s, vif_uuid: str) -> list[str]:
    recs = _rows(s)
    hit = {i["uuid"] for i in recs["interface"] if (i.get("external_ids") or {}).get("iface-id") == vif_uuid}
    return [p["name"] for p in recs["port"] if hit.intersection(p["interfaces"])]


def unplug_vif_port(
    txn, vif: dict, vm: dict | None = None, host_uuid: str | None = None, scan: bool = True
) -> None:
    """Remove the VIF's port on the host: `vif<domid>.<device>` (a name owned by that VM while
    it runs there), else, when the domid is already gone, any port whose interface carries the
    VIF's iface-id."""
    vm = vm or txn.get("vm", vif["vm"])
    host_uuid = host_uuid or (vm["resident-on"] if vm else "")
    if not host_uuid or txn.get("host", host_uuid) is None:
        return
    s = txn.switch(host_uuid)
    if vm is not None and vm["domid"] >= 0:
        name = vif_port_name(vm, vif)
        if s.port_bridge(name) is not None:
            s.del_port(name)
            return
    if not scan:
        return
    for name in _ports_of_vif(s, vif["uuid"]):
        if s.port_bridge(name) is not None:
            s.del_port(name)


def _moving_key(vm_uuid: str) -> tuple[str, str]:
    return ("xenet-plugged-before-leave", vm_uuid)


def plug_vifs(txn, vm: dict, host_uuid: str) -> None:
    """A VM entering running/paused on a host: its VIFs are plugged (model.md §1.7) and get
    their ports. After a migration in the same transaction only the VIFs plugged before it."""
    vm = txn.get("vm", vm["uuid"]) or vm
    keep = txn.cache.pop(_moving_key(vm["uuid"]), None)
    before = (txn.changes.get(f"vm:{vm['uuid']}") or {}).get("power-state")
    if before is not None and before[0] not in RESIDENT:
        keep = None  # a start or resume: every VIF is plugged
    for vif in sorted(txn.select("vif", vm=vm["uuid"]), key=lambda r: r["device"]):
        if keep is not None and vif["uuid"] not in keep:
            continue
        if not vif["plugged"]:
            vif = txn.update("vif", vif["uuid"], {"plugged": True})
        plug_vif_port(txn, vif, vm, host_uuid)


def unplug_vifs(txn, vm: dict, host_uuid: str) -> None:
    """A VM leaving a host (halt, suspend, migration away, host failure): its ports go and its
    VIFs read unplugged; a migration re-plugs them on arrival (plug_vifs)."""
    vm = txn.get("vm", vm["uuid"]) or vm
    plugged = set()
    for vif in txn.select("vif", vm=vm["uuid"]):
        unplug_vif_port(txn, vif, vm, host_uuid, scan=vif["plugged"])
        if vif["plugged"]:
            plugged.add(vif["uuid"])
            txn.update("vif", vif["uuid"], {"plugged": False})
    txn.cache[_moving_key(vm["uuid"])] = plugged


# --- derived attachment and availability ----------------------------------------------------------------
def pif_attached(txn, pif: dict) -> bool:
    """network.md §8, read from the rows: a physical PIF's port D on B(N); a bond member's name
    among the bond port's interfaces; a bond's port; a VLAN PIF's fake bridge with the right
    parent and VLAN; a tunnel access PIF (no port of its own): plugged, with B(N) present."""
    net = txn.get("network", pif["network"])
    if net is None or txn.get("host", pif["host"]) is None:
        return False
    s = txn.switch(pif["host"])
    if pif["physical"]:
        b = bond_of(txn, pif["uuid"])
        if b is not None:
            master = txn.get("pif", b["master"])
            if master is None:
                return False
            snap = port_snapshot(s, master["device"])
            return (
                bool(snap)
                and s.port_bridge(master["device"]) is not None
                and any(i["name"] == pif["device"] for i in snap["ifaces"])
            )
        return s.port_bridge(pif["device"]) == net["bridge"]
    if bond_of(txn, pif["uuid"], as_member=False) is not None:
        return s.port_bridge(pif["device"]) == net["bridge"]
    if pif["vlan"] >= 0:
        parent = vlan_parent(txn, pif)
        return parent is not None and bridge_kind(s, net["bridge"]) == (parent[0]["bridge"], parent[1])
    return pif["plugged"] and s.has_bridge(net["bridge"])


def vif_attached(txn, vif: dict) -> bool:
    vm = txn.get("vm", vif["vm"])
    if vm is None or vm["power-state"] not in RESIDENT or not vm["resident-on"]:
        return False
    if txn.get("host", vm["resident-on"]) is None:
        return False
    return txn.switch(vm["resident-on"]).port_bridge(vif_port_name(vm, vif)) is not None


def network_available(txn, network: dict, host_uuid: str) -> bool:
    """model.md §1.8: a currently-attached PIF on the host, or no PIF in the pool (a
    host-internal network: vmctl makes a managed one's bridge on demand; an unmanaged one is
    usable only where `add-br` made it, §1.8), or an unmanaged network whose bridge the host has."""
    return host_uuid in hosts_with_network(txn, network, [host_uuid])


def hosts_with_network(txn, network: dict, host_uuids: list[str]) -> set[str]:
    """The hosts among `host_uuids` where the network is available (network_available, for many
    hosts at once: its PIFs read once, the hosts' switches in one read)."""
    pifs_on: dict[str, list[dict]] = {}
    pifs = txn.select("pif", network=network["uuid"])
    for p in pifs:
        pifs_on.setdefault(p["host"], []).append(p)
    txn.load_switches(host_uuids)
    out = set()
    for h in host_uuids:
        has_bridge = txn.switch(h).has_bridge(network["bridge"])
        if not pifs:
            ok = network["managed"] or has_bridge
        elif not network["managed"] and has_bridge:
            ok = True
        else:
            ok = any(pif_attached(txn, p) for p in pifs_on.get(h, ()))
        if ok:
            out.add(h)
    return out


def vif_networks(txn, vm: dict) -> set[str]:
    """The networks a VM's VIFs are on (for the placement adapter's network filter)."""
    return {v["network"] for v in txn.select("vif", vm=vm["uuid"]) if v["network"]}


# --- what the xe layer owns on a host's switch ------------------------------------------------------
# The ovs-style commands a user issues refuse to delete, move or edit these, and to take their names
# (vmctl.ovs.owned); the xe layer itself changes them through Session.run, outside those checks.
VIF_PORT_RE = re.compile(r"^vif(\d+)\.(\d+)$")
OVS_RW_COMMANDS = "ovs-rw-commands"  # txn.cache: how many read-write ovs-style commands ran


def _row_writes(txn) -> int:
    """Writes to inventory rows so far (txn.writes less the bumps of ovs-style commands)."""
    return txn.writes - txn.cache.get(OVS_RW_COMMANDS, 0)


class SwitchOwners:
    """The names the xe layer owns on one host's switch, read from that host's rows only: the
    bridges of its pool's managed networks and of its VLAN PIFs, its PIFs' devices, the ports of
    its tunnels, and (looked up by name) the ports vif<domid>.<device> of the VMs running there."""

    def __init__(self, txn, host_uuid: str):
        self.txn, self.host = txn, host_uuid
        self.bridges: dict[str, tuple[dict, dict | None]] = {}  # name -> (network, VLAN PIF or None)
        self.devices: dict[str, dict] = {}  # device -> PIF (a physical or bond PIF before a VLAN one)
        self.tunnel_ports: dict[str, tuple[dict, str]] = {}  # port -> (tunnel, peer host uuid)
        self._vms: dict[int, dict] | None = None  # domid -> VM running or paused here
        host = txn.get("host", host_uuid)
        if host is None:
            return
        for n in txn.select("network", pool=host["pool"]):
            if n["managed"]:
                self.bridges.setdefault(n["bridge"], (n, None))
        for p in sorted(txn.select("pif", host=host_uuid), key=lambda p: (p["vlan"] >= 0, p["uuid"])):
            self.devices.setdefault(p["device"], p)
            if p["physical"]:
                continue
            if p["vlan"] >= 0:
                net = txn.get("network", p["network"])
                if net is not None:
                    self.bridges[net["bridge"]] = (net, p)
                continue
            for t in txn.select("tunnel", access_pif=p["uuid"]):
                for peer in tunnel_peers(txn, t):
                    spec = _tunnel_port(txn, t, peer)
                    if spec is not None:
                        self.tunnel_ports[spec[1]] = (t, _tunnel_host(txn, peer) or "")

    def _vm_by_domid(self, domid: int) -> dict | None:
        if self._vms is None:
            self._vms = {}
            for st in RESIDENT:
                for vm in self.txn.select("vm", resident_on=self.host, power_state=st):
                    self._vms[vm["domid"]] = vm
        return self._vms.get(domid)

    def owner(self, name: str) -> tuple[str, str] | None:
        """(what `name` is to the xe layer, the xe commands that change it), or None when the
        xe layer does not own that name on this host."""
        txn = self.txn
        hit = self.bridges.get(name)
        if hit is not None:
            net, vpif = hit
            label = f"network {_named(net)}"
            if vpif is not None:
                return f"the VLAN {vpif['vlan']} bridge of {label}", "vlan-destroy"
            return f"the bridge of {label}", "network-destroy"
        pif = self.devices.get(name)
        if pif is not None:
            host = txn.get("host", self.host)
            what = f"PIF {pif['uuid']} on host {host['name-label'] or host['uuid']}"
            if not pif["physical"]:
                b = bond_of(txn, pif["uuid"], as_member=False)
                if b is not None:
                    return (
                        f"the port of bond {b['uuid']}, the device of {what}",
                        "bond-create or bond-destroy",
                    )
                if pif["vlan"] < 0:
                    return f"the device of tunnel access {what}", "tunnel-create or tunnel-destroy"
                return f"the device of VLAN {what}", "vlan-create or vlan-destroy"
            b = bond_of(txn, pif["uuid"])
            if b is not None:
                return f"the device of {what}, a member of bond {b['uuid']}", "bond-create or bond-destroy"
            return f"the device of {what}", "pif-plug or pif-unplug"
        tp = self.tunnel_ports.get(name)
        if tp is not None:
            t, peer = tp
            ph = txn.get("host", peer)
            return (
                f"the port of tunnel {t['uuid']} to host {_named(ph) if ph else peer}",
                "tunnel-create or tunnel-destroy",
            )
        m = VIF_PORT_RE.match(name)
        if m is not None:
            vm = self._vm_by_domid(int(m.group(1)))
            if vm is not None:
                for vif in txn.select("vif", vm=vm["uuid"], device=int(m.group(2)), plugged=True):
                    return (
                        f"the port of VIF {vif['uuid']} of VM {_named(vm)}, {vm['power-state']} on this host",
                        "vif-unplug or vm-shutdown",
                    )
        return None


def _named(row: dict) -> str:
    return f"{row['name-label']} ({row['uuid']})" if row.get("name-label") else row["uuid"]


def switch_owners(txn, host_uuid: str) -> SwitchOwners:
    """SwitchOwners of a host, kept for the transaction until an inventory row is written."""
    key = ("xenet-switch-owners", host_uuid)
    hit = txn.cache.get(key)
    stamp = _row_writes(txn)
    if hit is None or hit[0] != stamp:
        hit = txn.cache[key] = (stamp, SwitchOwners(txn, host_uuid))
    return hit[1]


def err(code: str, *params, message: str | None = None) -> VmctlError:
    return VmctlError(code, message, list(params))


def invalid(name: str, value) -> VmctlError:
    return err("INVALID_VALUE", ("name", name), ("value", value))
