"""The inventory invariants of model.md §4, one function per invariant.

Each rule reads a `World` (every row of every class) and yields its violations as
`(class, uuid, text)`; `INVARIANTS` lists them in the order db-check reports them, and `check`
runs them all. `check_before_commit` is the cheaper re-check of I1-I3 that the runner makes on
what a transaction touched, before it commits, and `check_switches_before_commit` that of I13 on
the switches ovs-style commands changed."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from functools import cached_property

from vmctl import capacity
from vmctl.errors import VmctlError
from vmctl.model import CLASSES
from vmctl.storage import SR_MAX

Violation = tuple[str, str, str]  # (class, uuid, text)
Problem = tuple[str, str, str, str]  # (invariant ID, class, uuid, text): one line of db-check

LIVE = ("running", "paused")


class World:
    """Every row of every class, indexed by uuid, and what several invariants derive from them."""

    def __init__(self, txn):
        self.txn = txn
        self.rows = {cls: {r["uuid"]: r for r in txn.all(cls)} for cls in CLASSES}

    def __getitem__(self, cls: str) -> dict[str, dict]:
        return self.rows[cls]

    @cached_property
    def members(self) -> dict[str, list[str]]:
        """pool uuid -> the uuids of its hosts."""
        members = defaultdict(list)
        for h in self["host"].values():
            members[h["pool"]].append(h["uuid"])
        return members


def vm_residence_matches_power_state(w: World) -> Iterator[Violation]:
    """I1: a running or paused VM is resident on one live host of its pool, a halted or suspended
    one nowhere (domid -1), and templates and snapshots never run. Placement, capacity and every
    per-host view (ports, attachments) rely on resident-on meaning exactly this."""
    hosts = w["host"]
    for v in w["vm"].values():
        st = v["power-state"]
        if st in LIVE:
            h = hosts.get(v["resident-on"])
            if h is None:
                yield "vm", v["uuid"], f"{st} but resident on no existing host"
            elif not h["live"]:
                yield "vm", v["uuid"], f"{st} on host {h['uuid']} which is not live"
            elif h["pool"] != v["pool"]:
                yield "vm", v["uuid"], "resident on a host of another pool"
            if v["is-a-template"] or v["is-a-snapshot"]:
                yield "vm", v["uuid"], f"a template or snapshot is {st}"
        else:
            if v["resident-on"] or v["domid"] != -1:
                yield "vm", v["uuid"], f"{st} but resident-on or domid is set"


def host_memory_within_capacity(w: World) -> Iterator[Violation]:
    """I2: the memory the resident VMs commit on a host (under its pool's overcommit policy, §3.9)
    does not exceed the host's capacity: the promise every placement decision keeps."""
    hosts, vms = w["host"], w["vm"]
    policy = {p: r["memory-overcommit-policy"] for p, r in w["pool"].items()}
    committed = defaultdict(int)
    for v in vms.values():
        if v["power-state"] in LIVE and v["resident-on"] in hosts:
            committed[v["resident-on"]] += capacity.vm_charge(v, policy.get(v["pool"], "none"))
    for h in hosts.values():
        if committed[h["uuid"]] > capacity.host_capacity(h):
            yield (
                "host",
                h["uuid"],
                f"memory committed {committed[h['uuid']]} exceeds capacity {capacity.host_capacity(h)}",
            )


def memory_limits_ordered(v: dict) -> bool:
    """static-min <= dynamic-min <= dynamic-max <= static-max and reservation <= dynamic-max (I3)."""
    m = [v["memory-static-min"], v["memory-dynamic-min"], v["memory-dynamic-max"], v["memory-static-max"]]
    return m == sorted(m) and v["memory-reservation"] <= v["memory-dynamic-max"]


def vm_memory_limits_ordered_and_vcpus_fit(w: World) -> Iterator[Violation]:
    """I3: static-min <= dynamic-min <= dynamic-max <= static-max and reservation <= dynamic-max,
    and a resident VM has no more vCPUs than its host has CPUs: the bounds ballooning and the
    capacity charge are computed from."""
    hosts = w["host"]
    for v in w["vm"].values():
        if not memory_limits_ordered(v):
            yield "vm", v["uuid"], "memory limits out of order"
        h = hosts.get(v["resident-on"])
        if h is not None and v["power-state"] in LIVE and v["vcpus"] > h["cpu-count"]:
            yield "vm", v["uuid"], f"{v['vcpus']} vCPUs on a host with {h['cpu-count']} CPUs"


def rw_vdi_held_by_one_vm(w: World) -> Iterator[Violation]:
    """I4: a non-sharable VDI that a running, paused or suspended VM holds read-write is held by
    no other VM, since two writers would corrupt it."""
    vms = w["vm"]
    holders = defaultdict(list)
    for b in w["vbd"].values():
        v = vms.get(b["vm"])
        if v and b["vdi"] and v["power-state"] in ("running", "paused", "suspended"):
            holders[b["vdi"]].append((v["uuid"], b["mode"]))
    for vdi_uuid, hs in holders.items():
        d = w["vdi"].get(vdi_uuid)
        if d and not d["sharable"] and any(m == "RW" for _, m in hs) and len({u for u, _ in hs}) > 1:
            yield "vdi", vdi_uuid, "held read-write by several VMs"


def refs_point_at_existing_objects(w: World) -> Iterator[Violation]:
    """I5: every reference field names an existing object (snapshot-of excepted: a snapshot
    outlives its VM). db-check --fix clears or deletes what dangles."""
    for cls, c in CLASSES.items():
        for r in w[cls].values():
            for f in c.stored_fields:
                if not f.is_ref or f.name in ("snapshot-of",) or not r[f.name]:
                    continue
                target = f.ref_class
                if r[f.name] not in w[target]:
                    yield cls, r["uuid"], f"{f.name} points at missing {target} {r[f.name]}"


def vif_macs_valid_and_unique(w: World) -> Iterator[Violation]:
    """I6: every VIF MAC is six lower-case hex pairs (§3.7). Any such MAC is valid, shared or not,
    as XAPI accepts it (Helpers.is_valid_MAC); vmctl's generated MACs are unique in their pool."""
    for vif in w["vif"].values():
        if re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", vif["mac"]) is None:
            yield "vif", vif["uuid"], f"MAC {vif['mac']} is not six lower-case hex pairs"


def objects_stay_in_their_pool(w: World) -> Iterator[Violation]:
    """I7: a pooled object belongs to an existing pool and references only objects of that pool,
    and a pool with hosts has one of them as master: pools are the unit of sharing."""
    pools = w["pool"]
    for cls, c in CLASSES.items():
        if not c.pooled:
            continue
        for r in w[cls].values():
            if r["pool"] not in pools:
                yield cls, r["uuid"], "belongs to no existing pool"
                continue
            for f in c.stored_fields:
                tc = f.ref_class
                if not f.is_ref or f.name in ("pool", "snapshot-of") or not tc or not CLASSES[tc].pooled:
                    continue
                t = w[tc].get(r[f.name])
                if t is not None and t["pool"] != r["pool"]:
                    yield cls, r["uuid"], f"{f.name} references an object of another pool"
    for p in pools.values():
        if w.members[p["uuid"]] and p["master"] not in w.members[p["uuid"]]:
            yield "pool", p["uuid"], "master is not one of its hosts"


def names_unique_and_one_management_pif(w: World) -> Iterator[Violation]:
    """I8: a host with PIFs has exactly one management PIF; host addresses are unique, network
    bridges unique in a pool, and a VM's VBD devices and VIF devices distinct: the names by which
    hosts, bridges and guest devices are addressed."""
    hosts = w["host"]
    mgmt = defaultdict(int)
    has_pif = set()
    for pif in w["pif"].values():
        has_pif.add(pif["host"])
        if pif["management"]:
            mgmt[pif["host"]] += 1
    for h in has_pif:
        if mgmt[h] != 1 and h in hosts:
            yield "host", h, f"{mgmt[h]} management interfaces"
    addrs = defaultdict(list)
    for h in hosts.values():
        addrs[h["address"]].append(h["uuid"])
    for a, hs in addrs.items():
        if len(hs) > 1:
            for h in hs:
                yield "host", h, f"address {a} is not unique"
    bridges = defaultdict(list)
    for n in w["network"].values():
        bridges[(n["pool"], n["bridge"])].append(n["uuid"])
    for (_p, b), ns in bridges.items():
        if len(ns) > 1:
            for n in ns:
                yield "network", n, f"bridge {b} is not unique in its pool"
    for cls in ("vbd", "vif"):
        devs = defaultdict(list)
        for r in w[cls].values():
            devs[(r["vm"], r["device"])].append(r["uuid"])
        for (vm, d), rs in devs.items():
            if len(rs) > 1:
                yield "vm", vm, f"{cls} device {d} used {len(rs)} times"


def storage_utilisation_within_sizes(w: World) -> Iterator[Violation]:
    """I9: a VDI uses at most its virtual size (exactly it if thick, writable and managed), its
    virtual size fits its SR type's largest, and an SR's VDIs use at most its physical size: the
    storage accounting of §3.5."""
    util = defaultdict(int)
    for d in w["vdi"].values():
        util[d["sr"]] += d["physical-utilisation"]
        if d["physical-utilisation"] > d["virtual-size"]:
            yield "vdi", d["uuid"], "physical-utilisation exceeds virtual-size"
        sr = w["sr"].get(d["sr"])
        if sr is not None and d["virtual-size"] > SR_MAX.get(sr["type"], 1 << 62):
            yield "vdi", d["uuid"], "virtual-size exceeds the SR type's largest"
        leaf_thick = d["provisioning"] != "thin" and not d["read-only"] and d["managed"]
        if leaf_thick and d["physical-utilisation"] != d["virtual-size"]:
            yield "vdi", d["uuid"], "thick writable disk does not use its full size"
    for s in w["sr"].values():
        if util[s["uuid"]] > s["physical-size"]:
            yield "sr", s["uuid"], "physical-utilisation exceeds physical-size"


def pbds_match_sr_scope_and_suspend_vdis(w: World) -> Iterator[Violation]:
    """I10: a shared SR has one PBD per host of its pool and a local SR one PBD, on its host (so
    an SR is reachable exactly where it claims to be); a VM has a suspend VDI iff it is suspended."""
    pbds = defaultdict(list)
    for p in w["pbd"].values():
        pbds[p["sr"]].append(p["host"])
    for s in w["sr"].values():
        got = sorted(pbds[s["uuid"]])
        want = sorted(w.members[s["pool"]]) if s["shared"] else [s["host"]]
        if got != want:
            yield "sr", s["uuid"], "PBDs do not match its " + ("pool's hosts" if s["shared"] else "host")
    for v in w["vm"].values():
        if bool(v["suspend-vdi"]) != (v["power-state"] == "suspended"):
            yield "vm", v["uuid"], "suspend-vdi set iff suspended is broken"


def vdi_chains_well_formed(w: World) -> Iterator[Violation]:
    """I11: VDI snapshot chains are acyclic, at most 30 deep and within one SR, every parent is a
    base copy and every base copy has at least two children (one child is merged away)."""
    vdis = w["vdi"]
    children = defaultdict(int)
    for d in vdis.values():
        if d["parent"]:
            children[d["parent"]] += 1
    for d in vdis.values():
        depth, seen, cur = 0, set(), d
        while cur is not None and cur["parent"]:
            if cur["uuid"] in seen:
                yield "vdi", d["uuid"], "chain has a cycle"
                break
            seen.add(cur["uuid"])
            parent = vdis.get(cur["parent"])
            if parent is None:
                break
            if parent["sr"] != d["sr"]:
                yield "vdi", d["uuid"], "chain crosses SRs"
            if parent["managed"]:
                yield "vdi", d["uuid"], "parent is not a base copy"
            depth += 1
            cur = parent
        if depth > 30:
            yield "vdi", d["uuid"], f"chain {depth} deep"
        if not d["managed"] and children[d["uuid"]] < 2:
            yield "vdi", d["uuid"], f"base copy with {children[d['uuid']]} children"


def attached_vbds_have_running_vm_and_visible_sr(w: World) -> Iterator[Violation]:
    """I12: a VBD is currently-attached only while its VM is running or paused and the VDI's SR is
    attached (a currently-attached PBD) on the VM's host."""
    vms = w["vm"]
    visible = {(p["sr"], p["host"]) for p in w["pbd"].values() if p["currently-attached"]}
    for b in w["vbd"].values():
        v = vms.get(b["vm"])
        if b["currently-attached"] and (v is None or v["power-state"] not in LIVE):
            yield "vbd", b["uuid"], "attached while its VM is not running"
        elif b["currently-attached"] and b["vdi"] in w["vdi"]:
            sr = w["vdi"][b["vdi"]]["sr"]
            if (sr, v["resident-on"]) not in visible:
                yield "vbd", b["uuid"], "attached while its SR is not visible from the VM's host"


def switches_have_bridges_and_ports(w: World) -> Iterator[Violation]:
    """I13: each host's switch has the bridges and ports the xe layer expects (§1.8): a managed
    network's bridge on every host of its pool, and the ports of every plugged PIF, bond, tunnel
    and plugged VIF of a running VM. ovs-style commands refuse to break it (vmctl.ovs.owned), and
    the runner re-checks the hosts whose switches they changed before commit."""
    txn, hosts, vms, networks, pifs = w.txn, w["host"], w["vm"], w["network"], w["pif"]
    for n in networks.values():
        for h in w.members[n["pool"]]:
            yield from _network_bridge_problem(txn, n, h)
    for vif in w["vif"].values():
        yield from _vif_port_problem(txn, vif, vms.get(vif["vm"]), hosts)
    for pif in pifs.values():
        yield from _pif_port_problem(txn, pif, hosts, networks)
    for b in w["bond"].values():
        yield from _bond_port_problem(txn, b, pifs.get(b["master"]), hosts)
    for t in w["tunnel"].values():
        yield from _tunnel_ports_problem(txn, t, pifs.get(t["access-pif"]), hosts)


def _network_bridge_problem(txn, n: dict, h: str) -> Iterator[Violation]:
    if n["managed"] and not txn.switch(h).has_bridge(n["bridge"]):
        yield "network", n["uuid"], f"bridge {n['bridge']} missing on host {h}"


def _vif_port_problem(txn, vif: dict, v: dict | None, hosts) -> Iterator[Violation]:
    from vmctl import xenet

    if (
        v
        and vif["plugged"]
        and v["power-state"] in LIVE
        and v["resident-on"] in hosts
        and not xenet.vif_attached(txn, vif)
    ):
        yield "vif", vif["uuid"], f"port vif{v['domid']}.{vif['device']} missing"


def _pif_port_problem(txn, pif: dict, hosts, networks) -> Iterator[Violation]:
    from vmctl import xenet

    if pif["host"] not in hosts or pif["network"] not in networks or not pif["plugged"]:
        return
    kind = "physical" if pif["physical"] else "vlan" if pif["vlan"] >= 0 else None
    if kind is None or (kind == "physical" and xenet.bond_of(txn, pif["uuid"])):
        return  # bond members, bonds and tunnel access PIFs are checked with their bond or tunnel
    if not xenet.pif_attached(txn, pif):
        what = (
            f"port {pif['device']}"
            if kind == "physical"
            else f"VLAN bridge {networks[pif['network']]['bridge']}"
        )
        yield "pif", pif["uuid"], f"{what} missing"


def _bond_port_problem(txn, b: dict, m: dict | None, hosts) -> Iterator[Violation]:
    from vmctl import xenet

    if m is not None and m["plugged"] and m["host"] in hosts and not xenet.bond_port_ok(txn, b):
        yield "bond", b["uuid"], f"port {m['device']} missing or without its member interfaces"


def _tunnel_ports_problem(txn, t: dict, a: dict | None, hosts) -> Iterator[Violation]:
    from vmctl import xenet

    if a is not None and a["host"] in hosts and not xenet.tunnel_ports_ok(txn, t):
        yield "tunnel", t["uuid"], "a port to a peer host is missing or wrong"


class _Present:
    """`x in hosts` / `x in networks` for the per-host check, by cheap lookups."""

    def __init__(self, txn, cls: str):
        self.txn, self.cls = txn, cls

    def __contains__(self, uuid) -> bool:
        return bool(uuid) and self.txn.get(self.cls, uuid) is not None

    def __getitem__(self, uuid) -> dict:
        row = self.txn.get(self.cls, uuid)
        if row is None:
            raise KeyError(uuid)
        return row


def host_switch_violations(txn, host_uuid: str) -> list[Violation]:
    """I13 for one host's switch, read from that host's rows only (its pool's networks, its PIFs,
    bonds and tunnels, the VMs running on it): what the runner checks before it commits a change
    an ovs-style command made to that switch. The ports a tunnel on another host has here are
    that host's tunnel's: its peer tunnel on this host covers the same pair."""
    host = txn.get("host", host_uuid)
    if host is None or txn.switches.get(host_uuid, True) is None:
        return []
    from vmctl import xenet

    hosts, networks = _Present(txn, "host"), _Present(txn, "network")
    out: list[Violation] = []
    for n in sorted(txn.select("network", pool=host["pool"]), key=lambda r: r["uuid"]):
        out += _network_bridge_problem(txn, n, host_uuid)
    for st in LIVE:
        for v in sorted(txn.select("vm", resident_on=host_uuid, power_state=st), key=lambda r: r["uuid"]):
            for vif in sorted(txn.select("vif", vm=v["uuid"]), key=lambda r: r["uuid"]):
                out += _vif_port_problem(txn, vif, v, hosts)
    pifs = sorted(txn.select("pif", host=host_uuid), key=lambda r: r["uuid"])
    for pif in pifs:
        out += _pif_port_problem(txn, pif, hosts, networks)
    for pif in pifs:
        if not pif["physical"]:
            b = xenet.bond_of(txn, pif["uuid"], as_member=False)
            if b is not None:
                out += _bond_port_problem(txn, b, pif, hosts)
            for t in sorted(txn.select("tunnel", access_pif=pif["uuid"]), key=lambda r: r["uuid"]):
                out += _tunnel_ports_problem(txn, t, pif, hosts)
    return out


def vlans_and_bonds_well_formed(w: World) -> Iterator[Violation]:
    """I14: a VLAN's tag is 0-4094, unique per tagged PIF, and its tagged PIF is a physical or bond
    PIF outside any bond; a bond has one or more physical members (XAPI's Bond.create: at least
    one), on one host, each in no other bond."""
    pifs, bonds = w["pif"], w["bond"]
    for vl in w["vlan"].values():
        if not 0 <= vl["tag"] <= 4094:
            yield "vlan", vl["uuid"], f"tag {vl['tag']} out of range"
        tp = pifs.get(vl["tagged-pif"])
        if tp is not None and (
            tp["vlan"] >= 0
            or any(tp["uuid"] in b["slaves"] for b in bonds.values())
            or (not tp["physical"] and not any(b["master"] == tp["uuid"] for b in bonds.values()))
        ):
            yield "vlan", vl["uuid"], "tagged PIF is not a physical or bond PIF outside any bond"
    seen_tags = defaultdict(list)
    for vl in w["vlan"].values():
        seen_tags[(vl["tagged-pif"], vl["tag"])].append(vl["uuid"])
    for (_p, tag), vls in seen_tags.items():
        if len(vls) > 1:
            for u in vls:
                yield "vlan", u, f"tag {tag} used twice on one PIF"
    member_of = defaultdict(list)
    for b in bonds.values():
        if not b["slaves"]:
            yield "bond", b["uuid"], "no members"
        ms = [pifs.get(u) for u in b["slaves"]]
        if any(m is None or not m["physical"] for m in ms):
            yield "bond", b["uuid"], "a member is not a physical PIF"
        if len({m["host"] for m in ms if m is not None}) > 1:
            yield "bond", b["uuid"], "members on several hosts"
        for u in b["slaves"]:
            member_of[u].append(b["uuid"])
    for u, bs in member_of.items():
        if len(bs) > 1:
            for b in bs:
                yield "bond", b, f"PIF {u} is a member of several bonds"


def vm_groups_and_affinity_in_pool(w: World) -> Iterator[Violation]:
    """I15: a VM's vm-groups and its affinity host (if set) are of the VM's own pool, since
    placement only ever looks inside one pool."""
    hosts, groups = w["host"], w["vm-group"]
    for v in w["vm"].values():
        for g in v["groups"]:
            if g in groups and groups[g]["pool"] != v["pool"]:
                yield "vm", v["uuid"], "in a vm-group of another pool"
        if v["affinity"] in hosts and hosts[v["affinity"]]["pool"] != v["pool"]:
            yield "vm", v["uuid"], "affinity host of another pool"


def journal_contiguous_and_chained(w: World) -> Iterator[Violation]:
    """I16: journal seq values run 1, 2, 3... without gaps and each entry's hash matches its content
    and its predecessor's hash: the total order the inventory lock gives, made checkable. The
    newest entry is the head recorded in meta with every append (so deleting the newest entries,
    which leaves a valid shorter chain, is seen); an inventory without a recorded head (fresh, or
    last written by an older vmctl) has nothing to compare until its next append. Entries after
    the recorded head, appended by an older vmctl, are accepted: the chain vouches for them."""
    from vmctl.store.txn import journal_hash, journal_rows, stored_journal_head

    expect, prev = 1, ""
    hashes: dict[int, str] = {}
    for e in journal_rows(w.txn.conn):
        if e["seq"] != expect:
            yield "journal", str(e["seq"]), f"sequence gap: expected {expect}"
            expect = e["seq"]
        if e["prev-hash"] != prev or journal_hash(e) != e["hash"]:
            yield "journal", str(e["seq"]), "hash chain broken"
        prev = e["hash"]
        hashes[e["seq"]] = e["hash"]
        expect += 1
    head = stored_journal_head(w.txn.conn)
    if head is None:
        return
    seq, digest = head
    last = max(hashes, default=0)
    if seq > last:
        yield "journal", str(seq), f"entries missing after {last}: the recorded head is entry {seq}"
    elif hashes.get(seq) != digest:
        yield "journal", str(seq), "does not match the recorded head (entry replaced or head altered)"


# model.md §4, in the order db-check reports them
INVARIANTS: tuple[tuple[str, Callable[[World], Iterator[Violation]]], ...] = (
    ("I1", vm_residence_matches_power_state),
    ("I2", host_memory_within_capacity),
    ("I3", vm_memory_limits_ordered_and_vcpus_fit),
    ("I4", rw_vdi_held_by_one_vm),
    ("I5", refs_point_at_existing_objects),
    ("I6", vif_macs_valid_and_unique),
    ("I7", objects_stay_in_their_pool),
    ("I8", names_unique_and_one_management_pif),
    ("I9", storage_utilisation_within_sizes),
    ("I10", pbds_match_sr_scope_and_suspend_vdis),
    ("I11", vdi_chains_well_formed),
    ("I12", attached_vbds_have_running_vm_and_visible_sr),
    ("I13", switches_have_bridges_and_ports),
    ("I14", vlans_and_bonds_well_formed),
    ("I15", vm_groups_and_affinity_in_pool),
    ("I16", journal_contiguous_and_chained),
)


def check(txn) -> list[Problem]:
    """Every violation of every invariant in the inventory, as (ID, class, uuid, text)."""
    w = World(txn)
    return [(inv, cls, uuid, text) for inv, rule in INVARIANTS for cls, uuid, text in rule(w)]


def check_switches_before_commit(txn) -> None:
    """I13 on the hosts whose switches a read-write ovs-style command of the transaction changed
    (only those): a violation that was not there before the first such command on the host fails
    the transaction (the ovs-style commands refuse what they know to break; this is the net)."""
    baselines = txn.cache.get("ovs-switch-baselines")
    if not baselines:
        return
    from vmctl.errors import OvsError

    for h, before in baselines.items():
        s = txn.switches.get(h)
        if s is None or not s.changed:
            continue
        for cls, uuid, text in host_switch_violations(txn, h):
            if (cls, uuid, text) not in before:
                host = txn.get("host", h)
                raise OvsError(
                    f"transaction refused: it would leave host {host['name-label']} ({h}) without "
                    f"what XAPI expects on its switch (I13 {cls} {uuid}: {text}); nothing was changed"
                )


def check_before_commit(txn) -> None:
    """Re-check I1-I3 on the VMs and hosts the transaction touched (model.md §4) and fail with
    INTERNAL_ERROR [invariant] rather than commit a broken inventory."""
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
        if not memory_limits_ordered(v):
            raise VmctlError("INTERNAL_ERROR", params=[("invariant", "I3"), ("vm", txn.ref("vm", v))])
        if v["power-state"] in LIVE:
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
