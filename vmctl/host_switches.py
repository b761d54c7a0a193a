"""The switches of real hosts (drivers.md §1, §3 last row, §4): each host of a libvirt pool has its
own Open vSwitch, and the inventory's switch rows for that host (network.md §3) are its record.

* **Changes reach the host.** Whatever a transaction changed in a real host's switch rows (an
  ovs-style command, or the xe layer: network-create, vlan-create, bonds, tunnels, PIF ports) is
  queued, once checked, as one action per host: one OVSDB transaction turning the rows the
  host had into the rows the inventory now holds (the driver's `switch_change`), undone by the
  reverse change if a later action fails. It is queued first, so that the bridges exist before
  the guests started in the same transaction are plugged into them. A dry run queues nothing.
  The command code never knows: it changes rows, as on a simulated pool.
* **Guest ports are libvirt's.** The port of a running guest's NIC is made and removed by libvirt
  with the domain (`<virtualport type='openvswitch'/>`), under a name libvirt picks (vnetN), with
  `external_ids` `iface-id` (the VIF's uuid) and `attached-mac`, as Open vSwitch's integration
  rules ask of a hypervisor. The inventory keeps XAPI's name for it (vif<domid>.<device>,
  network.md §8) with the same ids. Such ports are never pushed to a host, never adopted from it,
  and are matched between the two by `iface-id`, never by name: they are not strangers.
* **host-add takes the host's switch as it is** (its bridges and ports, with the host's uuids),
  so that what vmctl changes next starts from agreement; an OVSDB that does not answer leaves
  the record empty, with a warning.
* **host-sync compares** bridges, ports, interfaces and their columns by name, and guest ports
  by iface-id; `--fix` makes the inventory's rows the host's (guest ports kept where the host has
  them).
"""

from __future__ import annotations

import json

from vmctl import drivers
from vmctl.drivers.base import DriverFault, SwitchRows

# Open vSwitch's marks of a hypervisor's guest interface (its integration guide): libvirt sets
# both, and so does vmctl on a VIF's interface (vmctl.xenet.vif_iface_ids)
GUEST_IDS = ("iface-id", "attached-mac")
_BASELINE = "host-switch-baseline"  # txn.cache key prefix: the rows a host was found to have
_FOLLOWED = "host-switch-followed"


def _real(txn, host_uuid: str):
    """(driver, host target) for an Open vSwitch host of a real pool, else None."""
    host = txn.get("host", host_uuid)
    if host is None or host["network-backend"] != "openvswitch":
        return None
    driver = drivers.driver_for(txn, host["pool"])
    return None if driver is None else (driver, drivers.host_target(host))


def _reason(e: DriverFault) -> str:
    return " ".join(e.message.split())


# --- guest ports --------------------------------------------------------------------------------------
def _guest_iface(row: dict) -> bool:
    ids = row.get("external_ids") or {}
    return all(k in ids for k in GUEST_IDS)


def guest_ports(rows: SwitchRows) -> dict[str, list[str]]:
    """The guest ports among `rows`: port uuid -> its interfaces' uuids (every one a guest
    interface)."""
    guest = {i["uuid"] for i in rows.get("interface", ()) if _guest_iface(i)}
    return {
        p["uuid"]: list(p["interfaces"])
        for p in rows.get("port", ())
        if p["interfaces"] and set(p["interfaces"]) <= guest
    }


def without_guest_ports(rows: SwitchRows) -> SwitchRows:
    """The rows vmctl and the host exchange: guest ports and their interfaces left out."""
    drop = set()
    for p, ifaces in guest_ports(rows).items():
        drop.add(p)
        drop.update(ifaces)
    return {
        "bridge": [dict(b, ports=[u for u in b["ports"] if u not in drop]) for b in rows.get("bridge", ())],
        "port": [p for p in rows.get("port", ()) if p["uuid"] not in drop],
        "interface": [i for i in rows.get("interface", ()) if i["uuid"] not in drop],
        "controller": list(rows.get("controller", ())),
    }


def _canonical(rows: SwitchRows) -> dict:
    return {
        t: {r["uuid"]: {k: sorted(v) if isinstance(v, list) else v for k, v in r.items()} for r in rs}
        for t, rs in rows.items()
    }


# --- a transaction's changes reach the hosts ----------------------------------------------------------
def queue_changes(txn, dry_run: bool) -> None:
    """Before commit (vmctl/hooks.py): one action per real host whose switch rows changed."""
    if dry_run:
        return
    q = drivers.pending(txn)
    if q is not None and q.followed:
        return  # the records were made to follow the hosts: nothing goes back to them
    actions = []
    for host_uuid, s in list(txn.switches.items()):
        if s is None or not s.dirty:
            continue
        real = _real(txn, host_uuid)
        if real is None or not s.changed:
            continue
        driver, target = real
        before = without_guest_ports(txn.cache.get((_BASELINE, host_uuid)) or s.loaded_records())
        after = without_guest_ports(s.records())
        if _canonical(before) == _canonical(after):
            continue
        actions.append(
            drivers.Action(
                "change Open vSwitch",
                target.name,
                lambda d=driver, h=target, b=before, a=after: d.switch_change(h, b, a),
                undo=lambda d=driver, h=target, b=before, a=after: d.switch_change(h, a, b),
            )
        )
    for a in sorted(actions, key=lambda a: a.host):  # hosts in name order: a stable, readable run
        drivers.queue(txn, a, first=True)


# --- host-add: the host's switch as it is --------------------------------------------------------------
def adopt(txn, host_uuid: str) -> None:
    """A host just added to a real pool: its switch rows become the host's own (without guest
    ports). An OVSDB that does not answer leaves them empty, with a warning."""
    real = _real(txn, host_uuid)
    if real is None:
        return
    driver, target = real
    try:
        rows = driver.switch_rows(target)
    except DriverFault as e:
        txn.warn(
            f"the Open vSwitch database of host {target.name} at {target.ovsdb} cannot be read "
            f"({_reason(e)}): its bridges are not recorded; host-sync --fix records them once it answers"
        )
        return
    rows = without_guest_ports(rows)
    txn.switch(host_uuid).replace_rows(rows)
    txn.cache[(_BASELINE, host_uuid)] = rows


# --- host-sync: compare, and follow the host ------------------------------------------------------------
def compare(txn, host: dict, driver, target) -> list[tuple]:
    """Every difference between a real host's Open vSwitch and its switch rows, as vmctl.sync's
    findings are made: (class, uuid, text, repair or None); each repair makes the rows the host's."""
    if host["network-backend"] != "openvswitch":
        return []
    try:
        found = driver.switch_rows(target)
    except DriverFault as e:
        text = f"its Open vSwitch database at {target.ovsdb} cannot be read: {_reason(e)}"
        return [("host", host["uuid"], text, None)]
    mine = txn.switch(host["uuid"]).records()
    name = host["name-label"]
    out = []
    for cls, uuid, text, did in _differences(without_guest_ports(mine), without_guest_ports(found), name):
        out.append((cls, uuid, text, _repair(host["uuid"], found, did)))
    for cls, uuid, text, did in _guest_differences(mine, found, name):
        out.append((cls, uuid, text, _repair(host["uuid"], found, did)))
    return out


def _repair(host_uuid: str, found: SwitchRows, did: str):
    def repair(txn) -> str:
        key = (_FOLLOWED, host_uuid)
        if key not in txn.cache:
            txn.cache[key] = True
            s = txn.switch(host_uuid)
            s.replace_rows(_followed_rows(s.records(), found))
        return did

    return repair


def _followed_rows(mine: SwitchRows, found: SwitchRows) -> SwitchRows:
    """The host's rows, with the inventory's guest ports (XAPI's names, vmctl's ids) in place of
    the host's ports with the same iface-id: on the bridge, and with the tag, the host has."""
    out = without_guest_ports(found)
    bridges = {b["uuid"]: b for b in out["bridge"]}
    host_port = _guest_index(found)
    ifaces = {i["uuid"]: i for i in mine["interface"]}
    ports = {p["uuid"]: p for p in mine["port"]}
    for pu, ius in guest_ports(mine).items():
        there = next((host_port[i] for i in _iface_ids(ifaces, ius) if i in host_port), None)
        if there is None:
            continue  # the host has no port for it: the inventory follows
        hp, bridge_uuid = there
        out["port"].append(dict(ports[pu], tag=hp["tag"]))
        out["interface"] += [ifaces[u] for u in ius]
        bridges[bridge_uuid]["ports"].append(pu)
    return out


def _iface_ids(ifaces: dict[str, dict], uuids: list[str]) -> list[str]:
    return [ifaces[u]["external_ids"]["iface-id"] for u in uuids if u in ifaces]


def _guest_index(rows: SwitchRows) -> dict[str, tuple[dict, str]]:
    """iface-id -> (the guest port, its bridge's uuid) of a switch."""
    owner = {p: b["uuid"] for b in rows.get("bridge", ()) for p in b["ports"]}
    ifaces = {i["uuid"]: i for i in rows.get("interface", ())}
    ports = {p["uuid"]: p for p in rows.get("port", ())}
    out = {}
    for pu, ius in guest_ports(rows).items():
        if pu in owner:
            for iid in _iface_ids(ifaces, ius):
                out[iid] = (ports[pu], owner[pu])
    return out


def _show(v) -> str:
    """A column value as ovs-vsctl prints it, roughly: enough to see what differs."""
    if v is None:
        return "[]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(str(x) for x in sorted(v, key=str)) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={json.dumps(x)}" for k, x in sorted(v.items())) + "}"
    if isinstance(v, str):
        return v if v else '""'
    return str(v)


_COMPARED = {
    "bridge": ("fail_mode", "datapath_type", "external_ids", "other_config"),
    "port": (
        "tag",
        "trunks",
        "vlan_mode",
        "fake_bridge",
        "bond_fake_iface",
        "bond_mode",
        "lacp",
        "external_ids",
        "other_config",
    ),
    "interface": ("type", "options", "external_ids", "other_config"),
}


def _column_texts(kind: str, mine: dict, found: dict) -> list[str]:
    out = [
        f"{c} {_show(mine[c])} in the inventory, {_show(found[c])} on the host"
        for c in _COMPARED[kind]
        if mine[c] != found[c]
    ]
    if mine["uuid"] != found["uuid"]:
        out.append(f"uuid {mine['uuid']} in the inventory, {found['uuid']} on the host")
    return out


def _differences(mine: SwitchRows, found: SwitchRows, host: str):
    """(class, uuid, text, what the repair did) for every bridge and port (guest ports left out)
    that one side lacks or that differs, by name."""
    fixed, added, removed = (
        "recorded the host's",
        "added it to the inventory",
        "removed it from the inventory",
    )
    mb = {b["name"]: b for b in mine["bridge"]}
    fb = {b["name"]: b for b in found["bridge"]}
    for n in sorted(mb.keys() - fb.keys()):
        yield "bridge", mb[n]["uuid"], f"inventory has bridge {n} on {host}, the host does not", removed
    for n in sorted(fb.keys() - mb.keys()):
        yield "bridge", fb[n]["uuid"], f"bridge {n} on {host}, unknown to the inventory", added
    mctl = {c["uuid"]: c["target"] for c in mine["controller"]}
    fctl = {c["uuid"]: c["target"] for c in found["controller"]}
    for n in sorted(mb.keys() & fb.keys()):
        texts = _column_texts("bridge", mb[n], fb[n])
        a = sorted(mctl.get(u, "") for u in mb[n]["controller"])
        b = sorted(fctl.get(u, "") for u in fb[n]["controller"])
        if a != b:
            texts.append(f"controllers {_show(a)} in the inventory, {_show(b)} on the host")
        if texts:
            yield "bridge", mb[n]["uuid"], f"bridge {n} on {host}: " + "; ".join(texts), fixed
    mp, fp = _ports_by_name(mine), _ports_by_name(found)
    mi = {i["uuid"]: i for i in mine["interface"]}
    fi = {i["uuid"]: i for i in found["interface"]}
    for n in sorted(mp.keys() | fp.keys()):
        m, f = mp.get(n), fp.get(n)
        if m is not None and f is None:
            if m[1] in fb:  # a missing bridge is said once, above
                yield (
                    "port",
                    m[0]["uuid"],
                    f"inventory has port {n} on bridge {m[1]} of {host}, the host does not",
                    removed,
                )
        elif f is not None and m is None:
            if f[1] in mb:
                yield (
                    "port",
                    f[0]["uuid"],
                    f"port {n} on bridge {f[1]} of {host}, unknown to the inventory",
                    added,
                )
        elif m is not None and f is not None:
            texts = []
            if m[1] != f[1]:
                texts.append(f"on bridge {m[1]} in the inventory, {f[1]} on the host")
            texts += _column_texts("port", m[0], f[0])
            mis = {mi[u]["name"]: mi[u] for u in m[0]["interfaces"] if u in mi}
            fis = {fi[u]["name"]: fi[u] for u in f[0]["interfaces"] if u in fi}
            if mis.keys() != fis.keys():
                texts.append(
                    f"interfaces {_show(list(mis))} in the inventory, {_show(list(fis))} on the host"
                )
            for i in sorted(mis.keys() & fis.keys()):
                texts += [f"interface {i}: {t}" for t in _column_texts("interface", mis[i], fis[i])]
            if texts:
                yield "port", m[0]["uuid"], f"port {n} on {host}: " + "; ".join(texts), fixed


def _ports_by_name(rows: SwitchRows) -> dict[str, tuple[dict, str]]:
    owner = {p: b["name"] for b in rows["bridge"] for p in b["ports"]}
    return {p["name"]: (p, owner.get(p["uuid"], "")) for p in rows["port"]}


def _guest_differences(mine: SwitchRows, found: SwitchRows, host: str):
    """The inventory's guest ports against the host's, by iface-id: one the host lacks, or has on
    another bridge or VLAN. The host's guest ports vmctl has no VIF port for are its domains'
    (host-sync reports unknown domains)."""
    there = _guest_index(found)
    bridge_name = {b["uuid"]: b["name"] for b in found.get("bridge", ())}
    for iid, (p, bridge_uuid) in sorted(_guest_index(mine).items()):
        mine_bridge = next(b["name"] for b in mine["bridge"] if b["uuid"] == bridge_uuid)
        if iid not in there:
            text = (
                f"inventory has port {p['name']} of VIF {iid} on bridge {mine_bridge} of {host}, "
                "the host has no port for it"
            )
            yield "port", p["uuid"], text, "removed it from the inventory"
            continue
        hp, hb = there[iid]
        if bridge_name[hb] != mine_bridge or hp["tag"] != p["tag"]:
            text = (
                f"port {p['name']} of VIF {iid} on {host}: bridge {mine_bridge} tag {_show(p['tag'])} "
                f"in the inventory, the host's port {hp['name']} on {bridge_name[hb]} tag {_show(hp['tag'])}"
            )
            yield "port", p["uuid"], text, "recorded the host's"
