"""`vmctl db-check [--fix]`: verifies the inventory invariants of model.md §4, one line per
violation (`<ID> <class> <uuid>: <text>`), exit 1 if any. `--fix` repairs I5, I11, I12 and I13
in one journaled transaction. `check_before_commit` re-checks what a transaction touched."""

from __future__ import annotations

import re
from collections import defaultdict

from vmctl import capacity
from vmctl.commands.table import Ctx, Text, command
from vmctl.errors import VmctlError
from vmctl.model import CLASSES

SR_MAX = {
    "file": 16 * 1024**4,
    "ext": 16 * 1024**4,
    "nfs": 16 * 1024**4,
    "lvm": 2040 * 1024**3,
    "iscsi": 2040 * 1024**3,
}


class World:
    """Every row of every class, indexed by uuid."""

    def __init__(self, txn):
        self.txn = txn
        self.rows = {cls: {r["uuid"]: r for r in txn.all(cls)} for cls in CLASSES}

    def __getitem__(self, cls: str) -> dict[str, dict]:
        return self.rows[cls]


def check(txn) -> list[tuple[str, str, str, str]]:
    w = World(txn)
    out: list[tuple[str, str, str, str]] = []

    def bad(inv, cls, uuid, text):
        out.append((inv, cls, uuid, text))

    hosts, vms, pools = w["host"], w["vm"], w["pool"]
    policy = {p: r["memory-overcommit-policy"] for p, r in pools.items()}
    # I1
    for v in vms.values():
        st = v["power-state"]
        if st in ("running", "paused"):
            h = hosts.get(v["resident-on"])
            if h is None:
                bad("I1", "vm", v["uuid"], f"{st} but resident on no existing host")
            elif not h["live"]:
                bad("I1", "vm", v["uuid"], f"{st} on host {h['uuid']} which is not live")
            elif h["pool"] != v["pool"]:
                bad("I1", "vm", v["uuid"], "resident on a host of another pool")
            if v["is-a-template"] or v["is-a-snapshot"]:
                bad("I1", "vm", v["uuid"], f"a template or snapshot is {st}")
        else:
            if v["resident-on"] or v["domid"] != -1:
                bad("I1", "vm", v["uuid"], f"{st} but resident-on or domid is set")
    # I2, I3
    committed = defaultdict(int)
    for v in vms.values():
        if v["power-state"] in ("running", "paused") and v["resident-on"] in hosts:
            committed[v["resident-on"]] += capacity.vm_charge(v, policy.get(v["pool"], "none"))
    for h in hosts.values():
        if committed[h["uuid"]] > capacity.host_capacity(h):
            bad(
                "I2",
                "host",
                h["uuid"],
                f"memory committed {committed[h['uuid']]} exceeds capacity {capacity.host_capacity(h)}",
            )
    for v in vms.values():
        m = [v["memory-static-min"], v["memory-dynamic-min"], v["memory-dynamic-max"], v["memory-static-max"]]
        if m != sorted(m) or v["memory-reservation"] > v["memory-dynamic-max"]:
            bad("I3", "vm", v["uuid"], "memory limits out of order")
        h = hosts.get(v["resident-on"])
        if h is not None and v["power-state"] in ("running", "paused") and v["vcpus"] > h["cpu-count"]:
            bad("I3", "vm", v["uuid"], f"{v['vcpus']} vCPUs on a host with {h['cpu-count']} CPUs")
    # I4: holding
    holders = defaultdict(list)
    for b in w["vbd"].values():
        v = vms.get(b["vm"])
        if v and b["vdi"] and v["power-state"] in ("running", "paused", "suspended"):
            holders[b["vdi"]].append((v["uuid"], b["mode"]))
    for vdi_uuid, hs in holders.items():
        d = w["vdi"].get(vdi_uuid)
        if d and not d["sharable"] and any(m == "RW" for _, m in hs) and len({u for u, _ in hs}) > 1:
            bad("I4", "vdi", vdi_uuid, "held read-write by several VMs")
    # I5: dangling refs
    for cls, c in CLASSES.items():
        for r in w[cls].values():
            for f in c.stored_fields:
                if not f.is_ref or f.name in ("snapshot-of",) or not r[f.name]:
                    continue
                target = f.ref_class
                if r[f.name] not in w[target]:
                    bad("I5", cls, r["uuid"], f"{f.name} points at missing {target} {r[f.name]}")
    # I6: MACs
    macs = defaultdict(list)
    for vif in w["vif"].values():
        macs[(vif["pool"], vif["mac"])].append(vif)
        # six lower-case hex pairs (model.md §3.7), unicast, not all zeros
        well_formed = re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", vif["mac"]) is not None
        if not well_formed or int(vif["mac"][:2], 16) & 1 or vif["mac"] == "00:00:00:00:00:00":
            bad("I6", "vif", vif["uuid"], f"MAC {vif['mac']} is not a valid unicast address")
    for (_pool, mac), vifs in macs.items():
        if len(vifs) > 1:
            families = set()
            for vif in vifs:
                v = vms.get(vif["vm"])
                families.add(v["snapshot-of"] if v and v["is-a-snapshot"] and v["snapshot-of"] else vif["vm"])
            if len(families) > 1:
                for vif in vifs:
                    bad("I6", "vif", vif["uuid"], f"MAC {mac} is shared with another VM's VIF")
    # I7: pools
    for cls, c in CLASSES.items():
        if not c.pooled:
            continue
        for r in w[cls].values():
            if r["pool"] not in pools:
                bad("I7", cls, r["uuid"], "belongs to no existing pool")
                continue
            for f in c.stored_fields:
                tc = f.ref_class
                if not f.is_ref or f.name in ("pool", "snapshot-of") or not tc or not CLASSES[tc].pooled:
                    continue
                t = w[tc].get(r[f.name])
                if t is not None and t["pool"] != r["pool"]:
                    bad("I7", cls, r["uuid"], f"{f.name} references an object of another pool")
    members = defaultdict(list)
    for h in hosts.values():
        members[h["pool"]].append(h["uuid"])
    for p in pools.values():
        if members[p["uuid"]] and p["master"] not in members[p["uuid"]]:
            bad("I7", "pool", p["uuid"], "master is not one of its hosts")
    # I8
    mgmt = defaultdict(int)
    has_pif = set()
    for pif in w["pif"].values():
        has_pif.add(pif["host"])
        if pif["management"]:
            mgmt[pif["host"]] += 1
    for h in has_pif:
        if mgmt[h] != 1 and h in hosts:
            bad("I8", "host", h, f"{mgmt[h]} management interfaces")
    addrs = defaultdict(list)
    for h in hosts.values():
        addrs[h["address"]].append(h["uuid"])
    for a, hs in addrs.items():
        if len(hs) > 1:
            for h in hs:
                bad("I8", "host", h, f"address {a} is not unique")
    bridges = defaultdict(list)
    for n in w["network"].values():
        bridges[(n["pool"], n["bridge"])].append(n["uuid"])
    for (_p, b), ns in bridges.items():
        if len(ns) > 1:
            for n in ns:
                bad("I8", "network", n, f"bridge {b} is not unique in its pool")
    for cls in ("vbd", "vif"):
        devs = defaultdict(list)
        for r in w[cls].values():
            devs[(r["vm"], r["device"])].append(r["uuid"])
        for (vm, d), rs in devs.items():
            if len(rs) > 1:
                bad("I8", "vm", vm, f"{cls} device {d} used {len(rs)} times")
    # I9
    util = defaultdict(int)
    for d in w["vdi"].values():
        util[d["sr"]] += d["physical-utilisation"]
        if d["physical-utilisation"] > d["virtual-size"]:
            bad("I9", "vdi", d["uuid"], "physical-utilisation exceeds virtual-size")
        sr = w["sr"].get(d["sr"])
        if sr is not None and d["virtual-size"] > SR_MAX.get(sr["type"], 1 << 62):
            bad("I9", "vdi", d["uuid"], "virtual-size exceeds the SR type's largest")
        leaf_thick = d["provisioning"] != "thin" and not d["read-only"] and d["managed"]
        if leaf_thick and d["physical-utilisation"] != d["virtual-size"]:
            bad("I9", "vdi", d["uuid"], "thick writable disk does not use its full size")
    for s in w["sr"].values():
        if util[s["uuid"]] > s["physical-size"]:
            bad("I9", "sr", s["uuid"], "physical-utilisation exceeds physical-size")
    # I10
    pbds = defaultdict(list)
    for p in w["pbd"].values():
        pbds[p["sr"]].append(p["host"])
    for s in w["sr"].values():
        got = sorted(pbds[s["uuid"]])
        want = sorted(members[s["pool"]]) if s["shared"] else [s["host"]]
        if got != want:
            bad(
                "I10", "sr", s["uuid"], "PBDs do not match its " + ("pool's hosts" if s["shared"] else "host")
            )
    for v in vms.values():
        if bool(v["suspend-vdi"]) != (v["power-state"] == "suspended"):
            bad("I10", "vm", v["uuid"], "suspend-vdi set iff suspended is broken")
    # I11
    vdis = w["vdi"]
    children = defaultdict(int)
    for d in vdis.values():
        if d["parent"]:
            children[d["parent"]] += 1
    for d in vdis.values():
        depth, seen, cur = 0, set(), d
        while cur is not None and cur["parent"]:
            if cur["uuid"] in seen:
                bad("I11", "vdi", d["uuid"], "chain has a cycle")
                break
            seen.add(cur["uuid"])
            parent = vdis.get(cur["parent"])
            if parent is None:
                break
            if parent["sr"] != d["sr"]:
                bad("I11", "vdi", d["uuid"], "chain crosses SRs")
            if parent["managed"]:
                bad("I11", "vdi", d["uuid"], "parent is not a base copy")
            depth += 1
            cur = parent
        if depth > 30:
            bad("I11", "vdi", d["uuid"], f"chain {depth} deep")
        if not d["managed"] and children[d["uuid"]] < 2:
            bad("I11", "vdi", d["uuid"], f"base copy with {children[d['uuid']]} children")
    # I12
    visible = {(p["sr"], p["host"]) for p in w["pbd"].values() if p["currently-attached"]}
    for b in w["vbd"].values():
        v = vms.get(b["vm"])
        if b["currently-attached"] and (v is None or v["power-state"] not in ("running", "paused")):
            bad("I12", "vbd", b["uuid"], "attached while its VM is not running")
        elif b["currently-attached"] and b["vdi"] in w["vdi"]:
            sr = w["vdi"][b["vdi"]]["sr"]
            if (sr, v["resident-on"]) not in visible:
                bad("I12", "vbd", b["uuid"], "attached while its SR is not visible from the VM's host")
    # I13: bridges and ports the xe layer expects (model.md §1.8)
    from vmctl import xenet

    for n in w["network"].values():
        if not n["managed"]:
            continue
        for h in members[n["pool"]]:
            if not txn.switch(h).has_bridge(n["bridge"]):
                bad("I13", "network", n["uuid"], f"bridge {n['bridge']} missing on host {h}")
    for vif in w["vif"].values():
        v = vms.get(vif["vm"])
        if (
            v
            and vif["plugged"]
            and v["power-state"] in ("running", "paused")
            and v["resident-on"] in hosts
            and not xenet.vif_attached(txn, vif)
        ):
            bad("I13", "vif", vif["uuid"], f"port vif{v['domid']}.{vif['device']} missing")
    for pif in w["pif"].values():
        if pif["host"] not in hosts or pif["network"] not in w["network"] or not pif["plugged"]:
            continue
        kind = "physical" if pif["physical"] else "vlan" if pif["vlan"] >= 0 else None
        if kind is None or (kind == "physical" and xenet.bond_of(txn, pif["uuid"])):
            continue  # bond members, bonds and tunnel access PIFs are checked below
        if not xenet.pif_attached(txn, pif):
            what = (
                f"port {pif['device']}"
                if kind == "physical"
                else f"VLAN bridge {w['network'][pif['network']]['bridge']}"
            )
            bad("I13", "pif", pif["uuid"], f"{what} missing")
    for b in w["bond"].values():
        m = w["pif"].get(b["master"])
        if m is not None and m["plugged"] and m["host"] in hosts and not xenet.bond_port_ok(txn, b):
            bad("I13", "bond", b["uuid"], f"port {m['device']} missing or without its member interfaces")
    for t in w["tunnel"].values():
        a = w["pif"].get(t["access-pif"])
        if a is not None and a["host"] in hosts and not xenet.tunnel_ports_ok(txn, t):
            bad("I13", "tunnel", t["uuid"], "a port to a peer host is missing or wrong")
    # I14
    for vl in w["vlan"].values():
        if not 0 <= vl["tag"] <= 4094:
            bad("I14", "vlan", vl["uuid"], f"tag {vl['tag']} out of range")
        tp = w["pif"].get(vl["tagged-pif"])
        if tp is not None and (
            tp["vlan"] >= 0
            or any(tp["uuid"] in b["slaves"] for b in w["bond"].values())
            or (not tp["physical"] and not any(b["master"] == tp["uuid"] for b in w["bond"].values()))
        ):
            bad("I14", "vlan", vl["uuid"], "tagged PIF is not a physical or bond PIF outside any bond")
    seen_tags = defaultdict(list)
    for vl in w["vlan"].values():
        seen_tags[(vl["tagged-pif"], vl["tag"])].append(vl["uuid"])
    for (_p, tag), vls in seen_tags.items():
        if len(vls) > 1:
            for u in vls:
                bad("I14", "vlan", u, f"tag {tag} used twice on one PIF")
    member_of = defaultdict(list)
    for b in w["bond"].values():
        if not 2 <= len(b["slaves"]) <= 4:
            bad("I14", "bond", b["uuid"], f"{len(b['slaves'])} members")
        ms = [w["pif"].get(u) for u in b["slaves"]]
        if any(m is None or not m["physical"] for m in ms):
            bad("I14", "bond", b["uuid"], "a member is not a physical PIF")
        if len({m["host"] for m in ms if m is not None}) > 1:
            bad("I14", "bond", b["uuid"], "members on several hosts")
        for u in b["slaves"]:
            member_of[u].append(b["uuid"])
    for u, bs in member_of.items():
        if len(bs) > 1:
            for b in bs:
                bad("I14", "bond", b, f"PIF {u} is a member of several bonds")
    # I15
    groups = w["vm-group"]
    for v in vms.values():
        for g in v["groups"]:
            if g in groups and groups[g]["pool"] != v["pool"]:
                bad("I15", "vm", v["uuid"], "in a vm-group of another pool")
        if v["affinity"] in hosts and hosts[v["affinity"]]["pool"] != v["pool"]:
            bad("I15", "vm", v["uuid"], "affinity host of another pool")
    # I16: journal
    from vmctl.store.txn import journal_hash, journal_rows

    expect, prev = 1, ""
    for e in journal_rows(txn.conn):
        if e["seq"] != expect:
            bad("I16", "journal", str(e["seq"]), f"sequence gap: expected {expect}")
            expect = e["seq"]
        if e["prev-hash"] != prev or journal_hash(e) != e["hash"]:
            bad("I16", "journal", str(e["seq"]), "hash chain broken")
        prev = e["hash"]
        expect += 1
    return out


def fix(txn, problems) -> None:
    """Repair I5 (dangling refs), I11 (lone base copies), I12 (stale attachment), I13 (bridges, ports)."""
    from vmctl import xenet

    for inv, cls, uuid, _text in problems:
        if inv == "I5":
            r = txn.get(cls, uuid)
            if r is None:
                continue
            c = CLASSES[cls]
            if cls in ("vbd", "pbd", "vif", "pif") and any(
                f.is_ref
                and r[f.name]
                and f.name in ("vm", "vdi", "sr", "host", "network")
                and txn.get(f.ref_class, r[f.name]) is None
                for f in c.stored_fields
                if not (cls == "vbd" and f.name == "vdi" and r["type"] == "cd")
            ):
                txn.delete(cls, uuid)
                continue
            txn.update(
                cls,
                uuid,
                {
                    f.name: ""
                    for f in c.stored_fields
                    if f.is_ref
                    and r[f.name]
                    and f.name != "snapshot-of"
                    and txn.get(f.ref_class, r[f.name]) is None
                },
            )
        elif inv == "I12":
            if txn.get("vbd", uuid):
                txn.update("vbd", uuid, {"currently-attached": False})
        elif inv == "I13":
            # a name taken otherwise on the host (DEVICE_ALREADY_EXISTS, BRIDGE_NAME_EXISTS) stays
            # reported rather than guessed at
            try:
                if cls == "network":
                    n = txn.get("network", uuid)
                    for h in xenet.pool_hosts(txn, n["pool"]):
                        try:
                            xenet.ensure_network_bridge(txn, n, h)
                        except VmctlError:
                            pass
                elif cls == "pif":
                    xenet.add_pif_ports(txn, txn.get("pif", uuid))
                elif cls == "bond":
                    xenet.add_bond_port(txn, txn.get("bond", uuid))
                elif cls == "tunnel":
                    xenet.add_tunnel_ports(txn, txn.get("tunnel", uuid))
                elif cls == "vif":
                    xenet.plug_vif_port(txn, txn.get("vif", uuid))
            except VmctlError:
                pass
        elif inv == "I11":
            # only lone base copies are repaired (the merge rule); cycles and depth stay reported
            from vmctl import storage

            d = txn.get("vdi", uuid)
            if d is not None and not d["managed"]:
                storage.merge_chain(txn, uuid)


@command(
    "db-check",
    "Verify the inventory invariants (model.md §4); --fix repairs I5, I11, I12, I13",
    family="inventory",
    flags=("--fix",),
)
def db_check(ctx: Ctx):
    txn = ctx.txn
    problems = check(txn)
    if problems and ctx.flag("fix"):
        fix(txn, problems)
        txn.flush()
        problems = check(txn)
    lines = "".join(f"{i} {c} {u}: {t}\n" for i, c, u, t in problems)
    return Text(lines, exit_code=1 if problems else 0)


def check_before_commit(txn) -> None:
    """Re-check I1-I3 on the VMs and hosts the transaction touched (model.md §4)."""
    vms, hosts = set(), set()
    for key, ch in txn.changes.items():
        cls, uuid = key.split(":", 1)
        if cls == "vm":
            vms.add(uuid)
            for f in ("resident-on",):
                if f in ch:
                    hosts.update(x for x in ch[f] if x)
        elif cls == "host":
            hosts.add(uuid)
    pol = None
    for u in vms:
        v = txn.get("vm", u)
        if v is None:
            continue
        m = [v["memory-static-min"], v["memory-dynamic-min"], v["memory-dynamic-max"], v["memory-static-max"]]
        if m != sorted(m) or v["memory-reservation"] > v["memory-dynamic-max"]:
            raise VmctlError("INTERNAL_ERROR", params=[("invariant", "I3"), ("vm", txn.ref("vm", v))])
        if v["power-state"] in ("running", "paused"):
            if not v["resident-on"]:
                raise VmctlError("INTERNAL_ERROR", params=[("invariant", "I1"), ("vm", txn.ref("vm", v))])
            hosts.add(v["resident-on"])
        elif v["resident-on"]:
            raise VmctlError("INTERNAL_ERROR", params=[("invariant", "I1"), ("vm", txn.ref("vm", v))])
    for h in hosts:
        host = txn.get("host", h)
        if host is None:
            continue
        if pol is None:
            pol = capacity.pool_policies(txn)
        used = 0
        for st in capacity.RESIDENT:
            for v in txn.select("vm", resident_on=h, power_state=st):
                used += capacity.vm_charge(v, pol.get(v["pool"], "none"))
        if used > capacity.host_capacity(host):
            raise VmctlError("INTERNAL_ERROR", params=[("invariant", "I2"), ("host", txn.ref("host", host))])
