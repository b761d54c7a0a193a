"""xe-style networking (model.md §3.6): networks, PIFs, VLANs, bonds and tunnels, each change
made on the xe objects and, in the same transaction, on the hosts' bridge rows (network.md §8,
through vmctl.xenet)."""

from __future__ import annotations

import ipaddress

from vmctl import xenet
from vmctl.commands.table import Arg, Ctx, Data, Value, command
from vmctl.errors import VmctlError
from vmctl.fields import extra_fields, param_hook
from vmctl.macs import generate_mac
from vmctl.pools import only_pool, same_pool
from vmctl.units import normalise_mac
from vmctl.xenet import err, invalid

MTU_MIN, MTU_MAX = 68, 9216
BOND_MODES = ("balance-slb", "active-backup", "lacp")


# --- shared helpers ---------------------------------------------------------------------------------------
def resolve_or_none(ctx: Ctx, cls: str, key: str = "uuid") -> dict | None:
    """resolve_one, except that --if-exists turns an unknown object into None."""
    return ctx.unless_missing(lambda: ctx.txn.resolve_one(cls, ctx.a[key]))


def check_mtu(value) -> None:
    if not isinstance(value, int) or not MTU_MIN <= value <= MTU_MAX:
        raise err(
            "INVALID_VALUE",
            ("name", "mtu"),
            ("value", value),
            message=f"The MTU must be an integer from {MTU_MIN} to {MTU_MAX}",
        )


def host_pif_on(txn, network_uuid: str, host_uuid: str) -> dict | None:
    pifs = sorted(txn.select("pif", network=network_uuid, host=host_uuid), key=lambda p: p["uuid"])
    return pifs[0] if pifs else None


def is_bond_member(txn, pif: dict) -> bool:
    return xenet.bond_of(txn, pif["uuid"]) is not None


def is_access_pif(txn, pif: dict) -> bool:
    return bool(txn.select("tunnel", access_pif=pif["uuid"]))


def is_vlan_pif(txn, pif: dict) -> bool:
    return pif["vlan"] >= 0 or bool(txn.select("vlan", untagged_pif=pif["uuid"]))


def free_device(txn, host_uuid: str, prefix: str) -> str:
    used = {p["device"] for p in txn.select("pif", host=host_uuid)}
    k = 0
    while f"{prefix}{k}" in used:
        k += 1
    return f"{prefix}{k}"


def network_checks(txn, network: dict, pif: dict) -> None:
    """NETWORK_UNMANAGED, NOT_IN_SAME_POOL, NETWORK_ALREADY_CONNECTED, in that order (§3.6)."""
    if not network["managed"]:
        raise err("NETWORK_UNMANAGED", ("network", txn.ref("network", network)))
    same_pool(txn, "network", network, pif["pool"])
    other = host_pif_on(txn, network["uuid"], pif["host"])
    if other is not None:
        raise err(
            "NETWORK_ALREADY_CONNECTED",
            ("host", txn.ref("host", pif["host"])),
            ("pif", txn.ref("pif", other)),
        )


# --- networks ---------------------------------------------------------------------------------------------
@command(
    "network-create",
    "Create a network; a managed one gets its bridge on every host of its pool; print its uuid",
    family="network",
    args=(
        Arg("name-label", required=True, help="the network's name"),
        Arg(
            "bridge",
            help="bridge name (1-15 of A-Za-z0-9_.-, not xen/xapi/vif/tap/eth...); "
            "default xapi<N>, the smallest N free in the pool",
        ),
        Arg("mtu", "int", help="68-9216 (default 1500; MTU= is accepted too)"),
        Arg(
            "managed", "bool", help="true (default): vmctl makes the bridges; false: made by hand with add-br"
        ),
        Arg("pool", "ref:pool", help="the pool (default: the only pool)", complete="pool"),
    ),
    fields_of="network",
    flags=("--may-exist",),
    creates="network",
)
def network_create(ctx: Ctx):
    txn, a = ctx.txn, ctx.a
    mtu = a.get("mtu", 1500)
    check_mtu(mtu)
    if "bridge" in a:
        xenet.check_bridge_name(a["bridge"])
    extra = extra_fields(ctx, "network", ("name-label", "bridge", "mtu", "managed", "pool"))
    pool = only_pool(txn, a.get("pool"))
    name = a["name-label"]
    if ctx.flag("may-exist"):
        for n in sorted(txn.select("network", pool=pool["uuid"]), key=lambda n: n["uuid"]):
            if n["name-label"] == name or n["bridge"] == a.get("bridge"):
                return Value(n["uuid"])
    if "bridge" in a:
        bridge = a["bridge"]
        if txn.select("network", pool=pool["uuid"], bridge=bridge):
            raise err("BRIDGE_NAME_EXISTS", ("bridge", bridge))
        h = xenet.bridge_conflict(txn, pool["uuid"], bridge)
        if h is not None:
            raise err("BRIDGE_NAME_EXISTS", ("bridge", bridge), ("host", txn.ref("host", h)))
    else:
        bridge = xenet.next_bridge_name(txn, pool["uuid"])
    values = {
        **extra,
        "name-label": name,
        "bridge": bridge,
        "mtu": mtu,
        "managed": a.get("managed", True),
        "pool": pool["uuid"],
    }
    u = txn.insert("network", values)
    net = txn.get("network", u)
    for h in xenet.pool_hosts(txn, pool["uuid"]):
        xenet.ensure_network_bridge(txn, net, h)
    return Value(u)


@command(
    "network-destroy",
    "Destroy a network without PIFs or VIFs and remove its bridges from every host",
    family="network",
    args=(Arg("uuid", "uuid", True, "the network", complete="network"),),
    flags=("--if-exists",),
)
def network_destroy(ctx: Ctx):
    txn = ctx.txn
    net = resolve_or_none(ctx, "network")
    if net is None:
        return None
    vifs = sorted(v["uuid"] for v in txn.select("vif", network=net["uuid"]))
    if vifs:
        raise err("NETWORK_CONTAINS_VIF", ("vifs", vifs))
    pifs = sorted(p["uuid"] for p in txn.select("pif", network=net["uuid"]))
    if pifs:
        raise err("NETWORK_CONTAINS_PIF", ("pifs", pifs))
    # an unmanaged network's bridges were made by hand (add-br): vmctl leaves them alone
    if net["managed"]:
        for h in xenet.pool_hosts(txn, net["pool"]):
            xenet.remove_network_bridge(txn, net, h)
    txn.delete("network", net["uuid"])
    return None


@param_hook("network")
def _network_param_rules(ctx: Ctx, net: dict, changes: dict) -> None:
    if "mtu" in changes:
        check_mtu(changes["mtu"])


# --- PIFs -------------------------------------------------------------------------------------------------
def _ip(name: str, text: str, netmask: bool = False) -> str:
    try:
        if netmask:
            return (
                str(ipaddress.IPv4Network(f"0.0.0.0/{text}").netmask)
                if "." in text
                else str(ipaddress.IPv4Network(f"0.0.0.0/{int(text)}").netmask)
            )
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise invalid(name, text) from None


@command(
    "pif-reconfigure-ip",
    "Set a PIF's IP configuration: none, dhcp, or static with IP= netmask= [gateway=] [DNS=]",
    family="pif",
    args=(
        Arg("uuid", "uuid", True, "the PIF", complete="pif"),
        Arg("mode", "enum", True, "none, dhcp or static", values=("none", "dhcp", "static")),
        Arg("ip", help="static: the IPv4 or IPv6 address (IP= is accepted too)"),
        Arg("netmask", help="static: the netmask, dotted or a prefix length"),
        Arg("gateway", help="static: the default gateway"),
        Arg("dns", help="static: comma-separated name servers (DNS= is accepted too)"),
    ),
)
def pif_reconfigure_ip(ctx: Ctx):
    txn, a = ctx.txn, ctx.a
    mode = a["mode"]
    vals = {"ip-configuration-mode": mode, "ip": "", "netmask": "", "gateway": "", "dns": ""}
    if mode == "static":
        # XAPI refuses a static configuration without an address
        if not a.get("ip"):
            raise err("MISSING_PARAMETER", ("name", "ip"))
        vals["ip"] = _ip("ip", a["ip"])
        if a.get("netmask"):
            vals["netmask"] = _ip("netmask", a["netmask"], netmask=True)
        if a.get("gateway"):
            vals["gateway"] = _ip("gateway", a["gateway"])
        if a.get("dns"):
            vals["dns"] = ",".join(_ip("dns", d.strip()) for d in a["dns"].split(",") if d.strip())
    else:
        for k in ("ip", "netmask", "gateway", "dns"):
            if a.get(k):
                raise invalid(k, a[k])
    pif = txn.resolve_one("pif", a["uuid"])
    if mode == "none" and pif["management"]:
        raise err("PIF_IS_MANAGEMENT_INTERFACE", ("pif", txn.ref("pif", pif)))
    txn.update("pif", pif["uuid"], vals)
    return None


@command(
    "pif-plug",
    "Plug a PIF: its port (and its network's bridge if missing) on its host",
    family="pif",
    args=(Arg("uuid", "uuid", True, "the PIF", complete="pif"),),
)
def pif_plug(ctx: Ctx):
    txn = ctx.txn
    pif = txn.resolve_one("pif", ctx.a["uuid"])
    pif = txn.update("pif", pif["uuid"], {"plugged": True})
    net = txn.get("network", pif["network"])
    if net is not None:
        xenet.ensure_network_bridge(txn, net, pif["host"], managed_only=False)
    xenet.add_pif_ports(txn, pif)
    return None


@command(
    "pif-unplug",
    "Unplug a PIF: its port goes (not the management PIF)",
    family="pif",
    args=(Arg("uuid", "uuid", True, "the PIF", complete="pif"),),
)
def pif_unplug(ctx: Ctx):
    txn = ctx.txn
    pif = txn.resolve_one("pif", ctx.a["uuid"])
    if pif["management"]:
        raise err("PIF_IS_MANAGEMENT_INTERFACE", ("pif", txn.ref("pif", pif)))
    xenet.remove_pif_port(txn, pif)
    txn.update("pif", pif["uuid"], {"plugged": False})
    return None


@command(
    "pif-forget",
    "Forget a physical, non-management PIF without VLANs, bond or tunnels; its port goes",
    family="pif",
    args=(Arg("uuid", "uuid", True, "the PIF", complete="pif"),),
    flags=("--if-exists",),
)
def pif_forget(ctx: Ctx):
    txn = ctx.txn
    pif = resolve_or_none(ctx, "pif")
    if pif is None:
        return None
    ref = ("pif", txn.ref("pif", pif))
    # VLAN, bond and tunnel access PIFs go with vlan-destroy, bond-destroy, tunnel-destroy
    if not pif["physical"]:
        raise err("PIF_IS_NOT_PHYSICAL", ref)
    if txn.select("vlan", tagged_pif=pif["uuid"]):
        raise err("PIF_VLAN_STILL_EXISTS", ref)
    if is_bond_member(txn, pif):
        raise err("PIF_ALREADY_BONDED", ref)
    if txn.select("tunnel", transport_pif=pif["uuid"]):
        raise err("PIF_TUNNEL_STILL_EXISTS", ref)
    if pif["management"]:
        raise err("PIF_IS_MANAGEMENT_INTERFACE", ref)
    xenet.remove_pif_port(txn, pif)
    txn.delete("pif", pif["uuid"])
    return None


# --- VLANs ------------------------------------------------------------------------------------------------
def parse_tag(text) -> int:
    t = str(text).strip()
    if not t.isascii() or not t.isdigit() or not 0 <= int(t) <= 4094:
        raise err("VLAN_TAG_INVALID", ("tag", text))
    return int(t)


def existing_vlan(txn, pif: dict, text) -> dict | None:
    try:
        tag = parse_tag(text)
    except VmctlError:
        return None
    return txn.one_or_none("vlan", tagged_pif=pif["uuid"], tag=tag)


def vlan_checks(txn, pif: dict, network: dict, text) -> int:
    """vlan-create's checks of model.md §3.6, in order; returns the tag."""
    network_checks(txn, network, pif)
    ref = ("pif", txn.ref("pif", pif))
    if is_bond_member(txn, pif):
        raise err("CANNOT_ADD_VLAN_TO_BOND_SLAVE", ref)
    if is_vlan_pif(txn, pif):
        raise err("PIF_IS_VLAN", ref)
    if is_access_pif(txn, pif):
        raise err("IS_TUNNEL_ACCESS_PIF", ref)
    tag = parse_tag(text)
    if txn.select("vlan", tagged_pif=pif["uuid"], tag=tag):
        raise err("PIF_VLAN_EXISTS", ("device", pif["device"]))
    return tag


def create_vlan(txn, pif: dict, network: dict, tag: int) -> str:
    """The VLAN, its VLAN PIF, and the network's bridge on that host made the fake bridge."""
    vp = create_vlan_records(txn, pif, network, tag)
    xenet.ensure_network_bridge(txn, network, pif["host"])
    return vp


def create_vlan_records(txn, pif: dict, network: dict, tag: int) -> str:
    """The VLAN PIF (the tagged PIF's device name, XAPI's dummy VLAN MAC) and the VLAN."""
    vp = txn.insert(
        "pif",
        {
            "host": pif["host"],
            "network": network["uuid"],
            "device": pif["device"],
            "mac": "fe:ff:ff:ff:ff:ff",
            "vlan": tag,
            "physical": False,
            "management": False,
            "plugged": True,
            "pool": pif["pool"],
        },
    )
    txn.insert("vlan", {"tagged-pif": pif["uuid"], "untagged-pif": vp, "tag": tag, "pool": pif["pool"]})
    return vp


_VLAN_ARGS = (
    Arg("pif-uuid", "uuid", True, "the tagged PIF (physical or bond)", complete="pif"),
    Arg("vlan", "string", True, "the tag, 0-4094"),
    Arg("network-uuid", "uuid", True, "the managed network the VLAN PIF joins", complete="network"),
)


@command(
    "vlan-create",
    "Create a VLAN on a PIF; the network's bridge on that host becomes a fake "
    "bridge; print the VLAN PIF's uuid",
    family="vlan",
    args=_VLAN_ARGS,
    flags=("--may-exist",),
    creates="pif",
)
def vlan_create(ctx: Ctx):
    txn, a = ctx.txn, ctx.a
    pif = txn.resolve_one("pif", a["pif-uuid"])
    network = txn.resolve_one("network", a["network-uuid"])
    if ctx.flag("may-exist"):
        hit = existing_vlan(txn, pif, a["vlan"])
        if hit is not None:
            return Value(hit["untagged-pif"])
    tag = vlan_checks(txn, pif, network, a["vlan"])
    return Value(create_vlan(txn, pif, network, tag))


@command(
    "pool-vlan-create",
    "Create the VLAN on the PIF of the same network on every host of the pool "
    "(all or nothing); print the VLAN PIFs' uuids",
    family="vlan",
    args=_VLAN_ARGS,
)
def pool_vlan_create(ctx: Ctx):
    txn, a = ctx.txn, ctx.a
    pif = txn.resolve_one("pif", a["pif-uuid"])
    network = txn.resolve_one("network", a["network-uuid"])
    targets = []
    for h in xenet.pool_hosts(txn, pif["pool"]):
        if h == pif["host"]:
            targets.append(pif)
            continue
        cands = [p for p in txn.select("pif", network=pif["network"], host=h) if not is_vlan_pif(txn, p)]
        if cands:
            targets.append(sorted(cands, key=lambda p: p["uuid"])[0])
    out = []
    for p in targets:
        tag = vlan_checks(txn, p, network, a["vlan"])
        out.append(create_vlan(txn, p, network, tag))
    return Data(out, "lines")


def _resolve_vlan(ctx: Ctx) -> dict | None:
    """vlan-destroy takes the VLAN or its VLAN PIF."""
    txn = ctx.txn
    text = ctx.a["uuid"]
    row = txn.get("vlan", text)
    if row is None:
        p = txn.get("pif", text)
        row = txn.one_or_none("vlan", untagged_pif=p["uuid"]) if p else None
    if row is None:
        if ctx.flag("if-exists"):
            return None
        raise err("UUID_INVALID", ("class", "vlan"), ("value", text))
    return row


@command(
    "vlan-destroy",
    "Destroy a VLAN (given as the VLAN or its VLAN PIF); the fake bridge becomes a "
    "plain bridge and keeps its ports",
    family="vlan",
    args=(Arg("uuid", "uuid", True, "the VLAN or its VLAN PIF", complete="vlan"),),
    flags=("--if-exists",),
)
def vlan_destroy(ctx: Ctx):
    txn = ctx.txn
    vl = _resolve_vlan(ctx)
    if vl is None:
        return None
    vp = txn.get("pif", vl["untagged-pif"])
    if vp is not None:
        ref = ("pif", txn.ref("pif", vp))
        if vp["management"]:
            raise err("PIF_IS_MANAGEMENT_INTERFACE", ref)
        if txn.select("tunnel", transport_pif=vp["uuid"]):
            raise err("PIF_TUNNEL_STILL_EXISTS", ref)
    txn.delete("vlan", vl["uuid"])
    if vp is not None:
        txn.delete("pif", vp["uuid"])
        net = txn.get("network", vp["network"])
        if net is not None:
            xenet.make_plain_bridge(txn, net, vp["host"])
    return None


# --- bonds ------------------------------------------------------------------------------------------------
_IP_FIELDS = ("ip-configuration-mode", "ip", "netmask", "gateway", "dns")


def move_configuration(txn, src: dict, dst: dict) -> None:
    """The IP configuration and management role go from one PIF to another
    (xapi_bond.move_configuration, move_management)."""
    txn.update("pif", dst["uuid"], {"management": src["management"], **{k: src[k] for k in _IP_FIELDS}})
    txn.update(
        "pif",
        src["uuid"],
        {"management": False, "ip-configuration-mode": "none", **dict.fromkeys(_IP_FIELDS[1:], "")},
    )


def move_vlan(txn, vlan: dict, new_tagged: dict) -> None:
    """A VLAN moves onto another PIF of the same host (xapi_bond.move_vlan): a new VLAN and VLAN
    PIF of the same tag and network on `new_tagged` (its device name), taking the old VLAN PIF's IP
    configuration and management role; the old ones go; the network's fake bridge follows (its
    ports kept). When `new_tagged` already carries that tag, the old VLAN simply goes."""
    old_vp = txn.get("pif", vlan["untagged-pif"])
    txn.delete("vlan", vlan["uuid"])
    if old_vp is None:
        return
    net = txn.get("network", old_vp["network"])
    if txn.select("vlan", tagged_pif=new_tagged["uuid"], tag=vlan["tag"]) or net is None:
        txn.delete("pif", old_vp["uuid"])
        return
    vp = create_vlan_records(txn, new_tagged, net, vlan["tag"])
    move_configuration(txn, old_vp, txn.get("pif", vp))
    txn.delete("pif", old_vp["uuid"])
    xenet.ensure_network_bridge(txn, net, new_tagged["host"])


def move_tunnel(txn, tunnel: dict, new_transport: dict) -> None:
    """A tunnel moves onto another transport PIF of the same host (xapi_bond.move_tunnel): its
    ports here and on its peers follow the new transport PIF's IP."""
    xenet.remove_tunnel_ports(txn, tunnel)
    t = txn.update("tunnel", tunnel["uuid"], {"transport-pif": new_transport["uuid"]})
    xenet.add_tunnel_ports(txn, t)


@command(
    "bond-create",
    "Bond physical PIFs of one host into PIF bond<N> on a network, moving their VLANs and tunnels "
    "onto it; print the bond's uuid",
    family="bond",
    args=(
        Arg("network-uuid", "uuid", True, "the managed network of the bond PIF", complete="network"),
        Arg("pif-uuids", "list", True, "the member PIFs, comma-separated (one or more)"),
        Arg("mode", "enum", help="balance-slb (default), active-backup or lacp", values=BOND_MODES),
        Arg("mac", help="the bond's MAC (default: the primary member's)"),
    ),
    flags=("--may-exist",),
    creates="bond",
)
def bond_create(ctx: Ctx):
    """XAPI's Bond.create (message_forwarding, xapi_bond.create), in its order: at least one member
    (PIF_BOND_NEEDS_MORE_MEMBERS; one member is a bond), the network managed and not yet on that
    host, a well-formed MAC, then per member: not bonded (PIF_ALREADY_BONDED), not a VLAN PIF
    (PIF_VLAN_EXISTS), not a tunnel access PIF (IS_TUNNEL_ACCESS_PIF), not the management
    interface under HA (HA_CANNOT_CHANGE_BOND_STATUS_OF_MGMT_IFACE); one host
    (PIF_CANNOT_BOND_CROSS_HOST); at most one member with an IP configuration
    (PIF_BOND_MORE_THAN_ONE_IP). The primary member is the management one, else the first with
    an IP configuration, else the first; the bond PIF takes its IP configuration, management
    role and MAC (unless mac=), and the members' VLANs and tunnels move onto the bond."""
    txn, a = ctx.txn, ctx.a
    uuids = list(dict.fromkeys(a["pif-uuids"]))
    network = txn.resolve_one("network", a["network-uuid"])
    members = [txn.resolve_one("pif", u) for u in uuids]
    if ctx.flag("may-exist") and members:
        for b in sorted(txn.all("bond"), key=lambda b: b["uuid"]):
            m = txn.get("pif", b["master"])
            if m and m["network"] == network["uuid"] and m["host"] == members[0]["host"]:
                return Value(b["uuid"])
    if not members:
        raise err("PIF_BOND_NEEDS_MORE_MEMBERS", message="A bond needs at least one member PIF")
    network_checks(txn, network, members[0])
    mac = normalise_mac(a["mac"]) if a.get("mac") else None
    configured = [m for m in members if m["ip-configuration-mode"] != "none"]
    management = [m for m in members if m["management"]]
    primary = (management or configured or members)[0]
    ha = txn.get("pool", network["pool"])["ha-enabled"]
    for m in members:
        ref = ("pif", txn.ref("pif", m))
        if is_bond_member(txn, m):
            raise err("PIF_ALREADY_BONDED", ref)
        if is_vlan_pif(txn, m):
            raise err("PIF_VLAN_EXISTS", ("device", m["device"]))
        if is_access_pif(txn, m):
            raise err("IS_TUNNEL_ACCESS_PIF", ref)
        if ha and m["management"]:
            raise err("HA_CANNOT_CHANGE_BOND_STATUS_OF_MGMT_IFACE")
        if not m["physical"]:  # vmctl: bonds of bonds are not modelled (I14)
            raise err("PIF_IS_NOT_PHYSICAL", ref)
    if len({m["host"] for m in members}) > 1:
        raise err("PIF_CANNOT_BOND_CROSS_HOST", ("pifs", [m["uuid"] for m in members]))
    if len(configured) > 1:
        raise err("PIF_BOND_MORE_THAN_ONE_IP", ("pifs", [m["uuid"] for m in configured]))
    host = primary["host"]
    vlans = [
        v for m in members for v in sorted(txn.select("vlan", tagged_pif=m["uuid"]), key=lambda r: r["uuid"])
    ]
    tunnels = [
        t
        for m in members
        for t in sorted(txn.select("tunnel", transport_pif=m["uuid"]), key=lambda r: r["uuid"])
    ]
    master = txn.insert(
        "pif",
        {
            "host": host,
            "network": network["uuid"],
            "device": free_device(txn, host, "bond"),
            "mac": mac or primary["mac"],
            "physical": False,
            "vlan": -1,
            "plugged": True,
            "pool": primary["pool"],
        },
    )
    move_configuration(txn, primary, txn.get("pif", master))
    u = txn.insert(
        "bond",
        {
            "master": master,
            "slaves": [m["uuid"] for m in members],
            "primary-slave": primary["uuid"],
            "mode": a.get("mode", "balance-slb"),
            "pool": primary["pool"],
        },
    )
    xenet.add_bond_port(txn, txn.get("bond", u))
    bond_pif = txn.get("pif", master)
    for v in vlans:
        move_vlan(txn, v, bond_pif)
    for t in tunnels:
        move_tunnel(txn, t, txn.get("pif", master))
    return Value(u)


@command(
    "bond-destroy",
    "Destroy a bond: its port goes, the members get their ports back, and the primary member the "
    "IP configuration, management role, VLANs and tunnels of the bond",
    family="bond",
    args=(Arg("uuid", "uuid", True, "the bond", complete="bond"),),
    flags=("--if-exists",),
)
def bond_destroy(ctx: Ctx):
    """XAPI's Bond.destroy (xapi_bond.destroy): refused only for the management bond under HA
    (HA_CANNOT_CHANGE_BOND_STATUS_OF_MGMT_IFACE); the bond's VLANs and tunnels move down to the
    primary member."""
    txn = ctx.txn
    bond = resolve_or_none(ctx, "bond")
    if bond is None:
        return None
    master = txn.get("pif", bond["master"])
    primary = txn.get("pif", bond["primary-slave"])
    if master is not None and master["management"] and txn.get("pool", bond["pool"])["ha-enabled"]:
        raise err("HA_CANNOT_CHANGE_BOND_STATUS_OF_MGMT_IFACE")
    members = [txn.get("pif", u) for u in bond["slaves"]]
    vlans, tunnels = [], []
    if master is not None:
        vlans = sorted(txn.select("vlan", tagged_pif=master["uuid"]), key=lambda r: r["uuid"])
        tunnels = sorted(txn.select("tunnel", transport_pif=master["uuid"]), key=lambda r: r["uuid"])
        if primary is not None:
            move_configuration(txn, master, primary)
        txn.switch(master["host"]).del_port(master["device"])
    txn.delete("bond", bond["uuid"])
    for m in members:
        if m is not None:
            xenet.add_pif_port(txn, m)
    if primary is not None:
        primary = txn.get("pif", primary["uuid"])
        for v in vlans:
            move_vlan(txn, v, primary)
        for t in tunnels:
            move_tunnel(txn, t, primary)
    if master is not None:
        txn.delete("pif", master["uuid"])
    return None


@param_hook("bond")
def _bond_param_rules(ctx: Ctx, bond: dict, changes: dict) -> None:
    """bond-param-set mode= changes the bond port's bond_mode/lacp too (network.md §8)."""
    if "mode" in changes and changes["mode"] != bond["mode"]:
        xenet.set_bond_mode(ctx.txn, bond, changes["mode"])


# --- tunnels ----------------------------------------------------------------------------------------------
@command(
    "tunnel-create",
    "Create a tunnel on a network over a transport PIF: access PIF tunnel<N> and "
    "gre/vxlan ports to every peer host; print the tunnel's uuid",
    family="tunnel",
    args=(
        Arg("pif-uuid", "uuid", True, "the transport PIF (with IP configuration)", complete="pif"),
        Arg("network-uuid", "uuid", True, "the managed network the tunnel carries", complete="network"),
        Arg("protocol", "enum", help="gre (default) or vxlan", values=("gre", "vxlan")),
    ),
    flags=("--may-exist",),
    creates="tunnel",
)
def tunnel_create(ctx: Ctx):
    txn, a = ctx.txn, ctx.a
    transport = txn.resolve_one("pif", a["pif-uuid"])
    network = txn.resolve_one("network", a["network-uuid"])
    protocol = a.get("protocol", "gre")
    host = transport["host"]
    if ctx.flag("may-exist"):
        for p in txn.select("pif", network=network["uuid"], host=host):
            for t in txn.select("tunnel", access_pif=p["uuid"]):
                return Value(t["uuid"])
    ref = ("pif", txn.ref("pif", transport))
    h = txn.get("host", host)
    if h is None or h["network-backend"] != "openvswitch":
        raise err("OPENVSWITCH_NOT_ACTIVE", ("host", txn.ref("host", host)))
    if is_bond_member(txn, transport):
        raise err("CANNOT_ADD_TUNNEL_TO_BOND_SLAVE", ref)
    if is_access_pif(txn, transport):
        raise err("IS_TUNNEL_ACCESS_PIF", ref)
    if transport["ip-configuration-mode"] == "none":
        raise err("TRANSPORT_PIF_NOT_CONFIGURED", ref)
    network_checks(txn, network, transport)
    for p in txn.select("pif", network=network["uuid"]):
        if p["physical"] or p["vlan"] >= 0 or xenet.bond_of(txn, p["uuid"], as_member=False):
            raise err("NETWORK_INCOMPATIBLE_WITH_TUNNEL", ("network", txn.ref("network", network)))
        if any(t["protocol"] != protocol for t in txn.select("tunnel", access_pif=p["uuid"])):
            raise err("NETWORK_INCOMPATIBLE_WITH_TUNNEL", ("network", txn.ref("network", network)))
    if network["tunnel-key"] == 0:
        used = {n["tunnel-key"] for n in txn.select("network", pool=network["pool"])}
        key = 1
        while key in used:
            key += 1
        network = txn.update("network", network["uuid"], {"tunnel-key": key})
    device = free_device(txn, host, "tunnel")
    access = txn.insert(
        "pif",
        {
            "host": host,
            "network": network["uuid"],
            "device": device,
            "mac": generate_mac(txn, transport["pool"], f"{host}:{device}"),
            "physical": False,
            "vlan": -1,
            "plugged": True,
            "pool": transport["pool"],
        },
    )
    u = txn.insert(
        "tunnel",
        {
            "access-pif": access,
            "transport-pif": transport["uuid"],
            "protocol": protocol,
            "pool": transport["pool"],
        },
    )
    xenet.ensure_network_bridge(txn, network, host)
    xenet.add_tunnel_ports(txn, txn.get("tunnel", u))
    return Value(u)


@command(
    "tunnel-destroy",
    "Destroy a tunnel, its access PIF and its ports here and on the peer hosts",
    family="tunnel",
    args=(Arg("uuid", "uuid", True, "the tunnel", complete="tunnel"),),
    flags=("--if-exists",),
)
def tunnel_destroy(ctx: Ctx):
    txn = ctx.txn
    t = resolve_or_none(ctx, "tunnel")
    if t is None:
        return None
    xenet.remove_tunnel_ports(txn, t)
    txn.delete("tunnel", t["uuid"])
    if t["access-pif"]:
        txn.delete("pif", t["access-pif"])
    return None
