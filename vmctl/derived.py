"""Derived fields (model.md §0 *derived*): computed when read, never stored, never stale.
`fill(txn, cls, rows, names)` adds the requested derived fields to the rows, computing each
with as few queries as possible for the whole list."""

from __future__ import annotations

from collections import defaultdict

from vmctl import capacity
from vmctl.model import CLASSES

_FILLERS: dict[tuple[str, str], object] = {}


def filler(cls: str, *names: str):
    def deco(fn):
        for n in names:
            _FILLERS[(cls, n)] = fn
        return fn

    return deco


def fill(txn, cls: str, rows: list[dict], names) -> None:
    c = CLASSES.get(cls)
    if c is None or not rows:
        return
    wanted = [n for n in names if n in c.fields and not c.fields[n].stored]
    done = set()
    for n in wanted:
        fn = _FILLERS.get((cls, n))
        if fn is None:
            for r in rows:
                r.setdefault(n, c.fields[n].empty())
            continue
        if fn in done:
            continue
        done.add(fn)
        fn(txn, rows)


def _group(rows, key):
    out = defaultdict(list)
    for r in rows:
        out[r[key]].append(r["uuid"])
    return out


@filler("pool", "hosts", "host-count", "cpu-vendor", "software-version", "network-backend", "cpu-flags")
def _pool(txn, rows):
    hosts = txn.all("host")
    by_pool = defaultdict(list)
    for h in hosts:
        by_pool[h["pool"]].append(h)
    for p in rows:
        members = sorted(by_pool.get(p["uuid"], []), key=lambda h: h["uuid"])
        p["hosts"] = [h["uuid"] for h in members]
        p["host-count"] = len(members)
        master = next((h for h in members if h["uuid"] == p["master"]), None)
        p["cpu-vendor"] = master["cpu-vendor"] if master else ""
        p["software-version"] = master["software-version"] if master else ""
        p["network-backend"] = master["network-backend"] if master else ""
        p["cpu-flags"] = pool_cpu_flags(members, master)


def pool_cpu_flags(members: list[dict], master: dict | None) -> list[str]:
    """Intersection of the flags of the hosts sharing the master's vendor (model.md §1.1)."""
    if not members:
        return []
    vendor = master["cpu-vendor"] if master else members[0]["cpu-vendor"]
    flags = None
    for h in members:
        if h["cpu-vendor"] != vendor:
            continue
        flags = set(h["cpu-flags"]) if flags is None else flags & set(h["cpu-flags"])
    return sorted(flags or [])


@filler("host", "memory-committed", "memory-free", "resident-vms", "resident-vm-count")
def _host_memory(txn, rows):
    policies = capacity.pool_policies(txn)
    committed = capacity.committed_by_host(txn, policies)
    resident = defaultdict(list)
    for state in capacity.RESIDENT:
        for vm in txn.select("vm", power_state=state):
            resident[vm["resident-on"]].append(vm["uuid"])
    for h in rows:
        c = committed.get(h["uuid"], 0)
        h["memory-committed"] = c
        h["memory-free"] = capacity.host_capacity(h) - c
        h["resident-vms"] = sorted(resident.get(h["uuid"], []))
        h["resident-vm-count"] = len(h["resident-vms"])


@filler("host", "pifs", "pbds")
def _host_refs(txn, rows):
    pifs, pbds = _group(txn.all("pif"), "host"), _group(txn.all("pbd"), "host")
    for h in rows:
        h["pifs"] = sorted(pifs.get(h["uuid"], []))
        h["pbds"] = sorted(pbds.get(h["uuid"], []))


@filler("vm", "allowed-vbd-devices", "allowed-vif-devices")
def _vm_free_devices(txn, rows):
    for cls in ("vbd", "vif"):
        used = defaultdict(set)
        for d in txn.all(cls):
            used[d["vm"]].add(d["device"])
        for v in rows:
            v[f"allowed-{cls}-devices"] = [str(n) for n in range(16) if n not in used[v["uuid"]]]


@filler("vbd", "empty")
def _vbd_empty(txn, rows):
    for b in rows:
        b["empty"] = not b["vdi"]


@filler("vm", "memory-overhead")
def _vm_overhead(txn, rows):
    for v in rows:
        v["memory-overhead"] = capacity.vm_overhead(v)


@filler("vm", "memory-actual")
def _vm_actual(txn, rows):
    policies = capacity.pool_policies(txn)
    per_host = defaultdict(list)
    for state in capacity.RESIDENT:
        for vm in txn.select("vm", power_state=state):
            per_host[vm["resident-on"]].append(vm)
    actual: dict[str, int] = {}
    for h, vms in per_host.items():
        host = txn.get("host", h)
        if host is None:
            continue
        actual.update(capacity.memory_actual(host, vms, policies.get(host["pool"], "none")))
    for v in rows:
        v["memory-actual"] = actual.get(v["uuid"], 0)


@filler("vm", "snapshots", "vbds", "vifs")
def _vm_refs(txn, rows):
    snaps = defaultdict(list)
    for v in txn.select("vm", is_a_snapshot=True):
        snaps[v["snapshot-of"]].append(v["uuid"])
    vbds, vifs = _group(txn.all("vbd"), "vm"), _group(txn.all("vif"), "vm")
    for v in rows:
        v["snapshots"] = sorted(snaps.get(v["uuid"], []))
        v["vbds"] = sorted(vbds.get(v["uuid"], []))
        v["vifs"] = sorted(vifs.get(v["uuid"], []))


@filler("vm", "allowed-operations")
def _vm_allowed(txn, rows):
    """XAPI's VM.allowed_operations (xapi_vm_lifecycle.update_allowed_operations), by XAPI's
    names: see :func:`vmctl.operations.allowed_operations`."""
    from vmctl.operations import allowed_operations

    upgrading: dict[str, bool] = {}
    for v in rows:
        pool = v["pool"]
        if pool not in upgrading:
            versions = {h["software-version"] for h in txn.select("host", pool=pool)}
            upgrading[pool] = len(versions) > 1
        held = txn.held_by("vm", v["uuid"]) is not None
        v["allowed-operations"] = allowed_operations(v, held=held, upgrading=upgrading[pool])


@filler("vm-group", "vms", "vm-count")
def _group_members(txn, rows):
    members = defaultdict(list)
    for v in txn.all("vm"):
        for g in v["groups"]:
            members[g].append(v["uuid"])
    for g in rows:
        g["vms"] = sorted(members.get(g["uuid"], []))
        g["vm-count"] = len(g["vms"])


@filler("sr", "physical-utilisation", "virtual-allocation", "free-space", "overprovisioning", "pbds", "vdis")
def _sr(txn, rows):
    util, alloc, vdis = defaultdict(int), defaultdict(int), defaultdict(list)
    for d in txn.all("vdi"):
        util[d["sr"]] += d["physical-utilisation"]
        vdis[d["sr"]].append(d["uuid"])
        if d["managed"]:
            alloc[d["sr"]] += d["virtual-size"]
    pbds = _group(txn.all("pbd"), "sr")
    for s in rows:
        u = s["uuid"]
        s["physical-utilisation"] = util[u]
        s["virtual-allocation"] = alloc[u]
        s["free-space"] = s["physical-size"] - util[u]
        s["overprovisioning"] = round(alloc[u] / s["physical-size"], 2) if s["physical-size"] else 0.0
        s["pbds"] = sorted(pbds.get(u, []))
        s["vdis"] = sorted(vdis.get(u, []))


@filler("vdi", "vbds")
def _vdi(txn, rows):
    vbds = _group(txn.all("vbd"), "vdi")
    for d in rows:
        d["vbds"] = sorted(vbds.get(d["uuid"], []))


@filler("network", "pifs", "vifs")
def _network(txn, rows):
    pifs, vifs = _group(txn.all("pif"), "network"), _group(txn.all("vif"), "network")
    for n in rows:
        n["pifs"] = sorted(pifs.get(n["uuid"], []))
        n["vifs"] = sorted(vifs.get(n["uuid"], []))


def _mtus(txn):
    return {n["uuid"]: n["mtu"] for n in txn.all("network")}


@filler(
    "pif",
    "mtu",
    "currently-attached",
    "bond-master-of",
    "bond-slave-of",
    "vlan-master-of",
    "vlan-slave-of",
    "tunnel-access-pif-of",
    "tunnel-transport-pif-of",
)
def _pif(txn, rows):
    from vmctl import xenet

    mtus = _mtus(txn)
    bonds, vlans, tunnels = txn.all("bond"), txn.all("vlan"), txn.all("tunnel")
    for p in rows:
        u = p["uuid"]
        p["mtu"] = mtus.get(p["network"], 1500)
        p["bond-master-of"] = sorted(b["uuid"] for b in bonds if b["master"] == u)
        p["bond-slave-of"] = next((b["uuid"] for b in bonds if u in b["slaves"]), "")
        p["vlan-master-of"] = next((v["uuid"] for v in vlans if v["untagged-pif"] == u), "")
        p["vlan-slave-of"] = sorted(v["uuid"] for v in vlans if v["tagged-pif"] == u)
        p["tunnel-access-pif-of"] = sorted(t["uuid"] for t in tunnels if t["access-pif"] == u)
        p["tunnel-transport-pif-of"] = sorted(t["uuid"] for t in tunnels if t["transport-pif"] == u)
        p["currently-attached"] = xenet.pif_attached(txn, p)


@filler("vif", "mtu", "currently-attached")
def _vif(txn, rows):
    from vmctl import xenet

    mtus = _mtus(txn)
    for v in rows:
        v["mtu"] = mtus.get(v["network"], 1500)
        v["currently-attached"] = xenet.vif_attached(txn, v)
