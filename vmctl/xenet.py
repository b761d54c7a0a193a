"""The mapping between xe-style networking objects and each host's bridge rows
(model.md §1.8, network.md §8). The rows are the single truth; these functions add and remove
the bridges and ports xe objects own, and read attachment from the rows."""

from __future__ import annotations

from vmctl.errors import VmctlError


def default_bridge_for_device(device: str) -> str:
    """`eth0` -> `xenbr0`; other devices keep their name after the prefix (`em1` -> `xenbrem1`)."""
    return "xenbr" + (device[3:] if device.startswith("eth") else device)


def network_ids(network: dict) -> dict[str, str]:
    return {"xs-network-uuids": network["uuid"]}


def vlan_pif_on(txn, network_uuid: str, host_uuid: str) -> dict | None:
    for p in txn.select("pif", network=network_uuid, host=host_uuid):
        if p["vlan"] >= 0 and not p["physical"]:
            return p
    return None


def ensure_network_bridge(txn, network: dict, host_uuid: str) -> None:
    """A managed network's bridge on one host: a fake bridge where the host has a VLAN PIF on
    the network, else a real bridge (an existing real bridge is kept with its ports)."""
    if not network["managed"]:
        return
    s = txn.switch(host_uuid)
    name = network["bridge"]
    vpif = vlan_pif_on(txn, network["uuid"], host_uuid)
    if vpif is not None:
        tagged = next((v for v in txn.select("vlan", untagged_pif=vpif["uuid"])), None)
        parent_pif = txn.get("pif", tagged["tagged-pif"]) if tagged else None
        parent_net = txn.get("network", parent_pif["network"]) if parent_pif else None
        if parent_net is None:
            return
        ensure_network_bridge(txn, parent_net, host_uuid)
        if not s.has_bridge(name):
            _conflict_check(txn, s, name, host_uuid)
            s.run("add-br", {}, [name, parent_net["bridge"], str(tagged["tag"])])
            s.run("br-set-external-id", {}, [name, "xs-network-uuids", network["uuid"]])
        return
    if s.has_bridge(name):
        return
    _conflict_check(txn, s, name, host_uuid)
    s.add_bridge(name, external_ids=network_ids(network))


def _conflict_check(txn, s, name: str, host_uuid: str) -> None:
    if s.port_bridge(name) is not None:
        raise VmctlError("BRIDGE_NAME_EXISTS", params=[("bridge", name), ("host", txn.ref("host", host_uuid))])


def add_pif_port(txn, pif: dict) -> None:
    """Port and interface D on its network's bridge, for a plugged physical PIF."""
    if not pif["physical"] or not pif["plugged"]:
        return
    net = txn.get("network", pif["network"])
    if net is None:
        return
    s = txn.switch(pif["host"])
    if not s.has_bridge(net["bridge"]):
        ensure_network_bridge(txn, net, pif["host"])
        if not s.has_bridge(net["bridge"]):
            return
    add_owned_port(txn, pif["host"], net["bridge"], pif["device"])


def add_owned_port(txn, host_uuid: str, bridge: str, port: str, **kw) -> None:
    """network.md §8: an existing port of that name goes first; a bridge or an interface of
    another port with that name refuses with DEVICE_ALREADY_EXISTS."""
    s = txn.switch(host_uuid)
    if s.has_bridge(port):
        raise VmctlError("DEVICE_ALREADY_EXISTS", params=[("device", port), ("host", txn.ref("host", host_uuid))])
    if s.port_bridge(port) is not None:
        s.del_port(port)
    elif has_interface(s, port):
        raise VmctlError("DEVICE_ALREADY_EXISTS", params=[("device", port), ("host", txn.ref("host", host_uuid))])
    s.add_port(bridge, port, **kw)


def has_interface(s, name: str) -> bool:
    from vmctl.errors import OvsError

    try:
        s.run("iface-to-br", {}, [name])
    except OvsError:
        return False
    return True


def pif_attached(txn, pif: dict) -> bool:
    net = txn.get("network", pif["network"])
    if net is None:
        return False
    s = txn.switch(pif["host"])
    if not pif["physical"]:
        if pif["vlan"] >= 0:
            return s.has_bridge(net["bridge"])
        return pif["plugged"]
    return s.port_bridge(pif["device"]) == net["bridge"]


def vif_attached(txn, vif: dict) -> bool:
    vm = txn.get("vm", vif["vm"])
    if vm is None or vm["power-state"] not in ("running", "paused") or not vm["resident-on"]:
        return False
    s = txn.switch(vm["resident-on"])
    return s.port_bridge(f"vif{vm['domid']}.{vif['device']}") is not None


def network_available(txn, network: dict, host_uuid: str) -> bool:
    """model.md §1.8: a currently-attached PIF on the host, or no PIF in the pool, or an
    unmanaged network whose bridge the host has."""
    pifs = txn.select("pif", network=network["uuid"])
    if not pifs:
        return network["managed"] or txn.switch(host_uuid).has_bridge(network["bridge"])
    if not network["managed"] and txn.switch(host_uuid).has_bridge(network["bridge"]):
        return True
    return any(p["host"] == host_uuid and pif_attached(txn, p) for p in pifs)
