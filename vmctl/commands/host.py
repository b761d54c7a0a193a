"""Hosts (model.md §3.2): host-add with its hardware facts, PIFs, networks and bridges."""

from __future__ import annotations

import ipaddress
import re

from vmctl import host_switches, volumes, xenet
from vmctl.admission import admit
from vmctl.commands.table import Arg, Ctx, Value, command
from vmctl.errors import VmctlError
from vmctl.fields import param_hook
from vmctl.macs import generate_mac
from vmctl.pools import homogeneity_checks, major, management_vlan, record_cpu_verdict

DEVICE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
VERSION_RE = re.compile(r"^\d+(\.\d+)*$")
DNS_RE = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def _invalid(name: str, value) -> VmctlError:
    return VmctlError("INVALID_VALUE", params=[("name", name), ("value", value)])


def check_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if DNS_RE.match(text) and not text.replace(".", "").isdigit():
        return text.lower()
    raise _invalid("address", text)


@command(
    "host-add",
    "Register a host with its hardware facts (read from the host itself in a libvirt pool); print its uuid",
    family="host",
    args=(
        Arg("name-label", required=True, help="the host's name"),
        Arg("address", required=True, help="IPv4, IPv6 or DNS name; unique"),
        Arg("cpu-count", "int", help="logical CPUs (required unless the pool is a libvirt pool)"),
        Arg("memory-total", "size", help="physical memory (required unless the pool is a libvirt pool)"),
        Arg("pool", "ref:pool", help="join this pool (else a new standalone pool)", complete="pool"),
        Arg("cpu-vendor", help="GenuineIntel, AuthenticAMD, ..."),
        Arg("cpu-model", help="CPU model name"),
        Arg("cpu-family", "int", help="CPU family number"),
        Arg("cpu-flags", "list", help="comma-separated CPU feature flags"),
        Arg("software-version", help="dot-separated integers, e.g. 8.2.1"),
        Arg("network-backend", "enum", values=("openvswitch", "bridge"), help="openvswitch or bridge"),
        Arg("memory-overhead", "size", help="memory kept by the hypervisor and control domain"),
        Arg(
            "pifs",
            "list",
            help="physical NIC devices, comma-separated (default eth0, on a libvirt pool none; empty: none)",
        ),
        Arg("management-device", help="the management NIC (default the first of pifs)"),
        Arg("management-vlan", "int", help="tag the management interface with this VLAN"),
        Arg("name-description", help="a description"),
        Arg("driver-uri", help="libvirt pools: the host's libvirt URI [qemu+ssh://root@ADDRESS/system]"),
        Arg(
            "ovsdb",
            help="libvirt pools: the host's OVSDB remote, unix:PATH|tcp:IP:PORT|ssl:IP:PORT [tcp:ADDRESS:6640]",
        ),
    ),
    flags=("--force", "--may-exist"),
    creates="host",
)
def host_add(ctx: Ctx):
    txn, a = ctx.txn, ctx.a
    address = check_address(a["address"])
    pool = txn.resolve_one("pool", a["pool"]) if "pool" in a else None
    if pool is None and "driver-uri" in a:
        driver = "libvirt"  # a standalone real host: its own pool drives it
    else:
        driver = pool["driver"] if pool else "sim"
    if driver != "sim":
        a.update(probe_hardware(ctx, address, driver))
    else:
        for name in ("driver-uri", "ovsdb"):
            if name in a:
                raise VmctlError(
                    "INVALID_VALUE",
                    f"Only a host of a libvirt pool has {name}=; create the pool with driver=libvirt",
                    [("name", name), ("value", a[name])],
                )
        for name in ("cpu-count", "memory-total"):
            if name not in a:
                raise VmctlError("MISSING_PARAMETER", params=[("name", name)])
    if a["cpu-count"] < 1 or a["cpu-count"] > 65536:
        raise _invalid("cpu-count", a["cpu-count"])
    total = a["memory-total"]
    if isinstance(total, tuple) or total <= 0:
        raise _invalid("memory-total", ctx.raw.get("memory-total"))
    overhead = a.get("memory-overhead", 0)
    if isinstance(overhead, tuple) or overhead >= total:
        raise _invalid("memory-overhead", ctx.raw.get("memory-overhead"))
    version = a.get("software-version", "1.0.0")
    if not VERSION_RE.match(version) or len(version) > 64:
        raise _invalid("software-version", version)
    flags = sorted({f.lower() for f in a.get("cpu-flags", [])})
    # a real host's NICs are its own: plugging one into a bridge would cut the host off its
    # network, so a libvirt pool's host gets the PIFs named, none by default
    default_pifs = ["eth0"] if driver == "sim" else []
    devices = a.get("pifs", default_pifs) if "pifs" in ctx.raw else default_pifs
    seen = set()
    for d in devices:
        if not DEVICE_RE.match(d):
            raise _invalid("pifs", d)
        if d in seen:
            raise VmctlError("DUPLICATE_PIF_DEVICE_NAME", params=[("device", d)])
        seen.add(d)
    mgmt_dev = a.get("management-device", devices[0] if devices else None)
    if mgmt_dev is not None and mgmt_dev not in devices:
        raise _invalid("management-device", mgmt_dev)
    tag = a.get("management-vlan", -1)
    if "management-vlan" in a and not 0 <= tag <= 4094:
        raise VmctlError("VLAN_TAG_INVALID", params=[("tag", tag)])
    if tag >= 0 and mgmt_dev is None:
        raise _invalid("management-vlan", tag)
    existing = txn.select("host", address=address)
    if existing:
        if ctx.flag("may-exist"):
            return Value(existing[0]["uuid"])
        raise VmctlError(
            "HOST_ADDRESS_IN_USE", params=[("address", address), ("host", txn.ref("host", existing[0]))]
        )
    facts = {
        "name-label": a["name-label"],
        "name-description": a.get("name-description", ""),
        "address": address,
        "driver-uri": a.get("driver-uri", ""),
        "ovsdb": a.get("ovsdb", ""),
        "cpu-count": a["cpu-count"],
        "memory-total": total,
        "memory-overhead": overhead,
        "cpu-vendor": a.get("cpu-vendor", "GenuineIntel"),
        "cpu-model": a.get("cpu-model", ""),
        "cpu-family": a.get("cpu-family", 0),
        "cpu-flags": flags,
        "software-version": version,
        "network-backend": a.get("network-backend", "openvswitch"),
    }
    if pool is not None:
        if pool["ha-enabled"]:
            raise VmctlError("HA_IS_ENABLED")
        master = txn.get("host", pool["master"]) if pool["master"] else None
        if master is not None:
            verdict = homogeneity_checks(ctx, facts, master, ctx.force)
            if verdict is False:
                facts["other-config"] = record_cpu_verdict(facts, verdict)
            if tag != management_vlan(txn, master["uuid"]):
                raise VmctlError(
                    "POOL_JOINING_HOST_MANAGEMENT_VLAN_DOES_NOT_MATCH",
                    params=[("local", tag), ("remote", management_vlan(txn, master["uuid"]))],
                )
            if facts["network-backend"] != master["network-backend"]:
                raise VmctlError("OPERATION_NOT_ALLOWED", params=[("reason", "Network backends differ")])
    else:
        pool = txn.get("pool", txn.insert("pool", {"name-label": "", "driver": driver}))
    facts["pool"] = pool["uuid"]
    host_uuid = txn.insert("host", facts)
    host_switches.adopt(txn, host_uuid)  # a real host's bridges and ports, as it has them
    if not pool["master"]:
        txn.update("pool", pool["uuid"], {"master": host_uuid})
    _add_pifs(txn, pool, host_uuid, devices, mgmt_dev, tag, address)
    # bridges for every pool network, PBDs for its shared SRs (model.md §3.2)
    for net in txn.select("network", pool=pool["uuid"]):
        xenet.ensure_network_bridge(txn, net, host_uuid)
    for sr in txn.select("sr", pool=pool["uuid"], shared=True):
        txn.insert(
            "pbd", {"host": host_uuid, "sr": sr["uuid"], "pool": pool["uuid"], "currently-attached": True}
        )
        volumes.attach_sr(txn, sr, [host_uuid])
    return Value(host_uuid)


HARDWARE = (
    "cpu-count",
    "memory-total",
    "cpu-vendor",
    "cpu-model",
    "cpu-family",
    "cpu-flags",
    "software-version",
)
OVSDB_RE = re.compile(r"^(unix:/\S+|(tcp|ssl):(\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z.-]+):\d{1,5})$")


def probe_hardware(ctx: Ctx, address: str, driver: str) -> dict:
    """A real host's hardware, as it reports it (drivers.md §2): given on the command line it
    would only be a second, possibly wrong, source of truth."""
    from vmctl import drivers

    a = ctx.a
    for name in HARDWARE:
        if name in a:
            raise VmctlError(
                "INVALID_VALUE",
                f"A host of a libvirt pool reports its own hardware; remove {name}=",
                [("name", name), ("value", ctx.raw.get(name, a[name]))],
            )
    uri = a.get("driver-uri") or drivers.default_uri(address)
    if not URI_RE.match(uri):
        raise _invalid("driver-uri", uri)
    remote = a.get("ovsdb") or drivers.default_ovsdb(address)
    if not OVSDB_RE.match(remote):
        raise _invalid("ovsdb", remote)
    target = drivers.HostTarget("", a["name-label"], address, uri, remote)
    try:
        f = drivers.driver_named(driver).probe(target)  # type: ignore[union-attr]
    except drivers.DriverFault as e:
        raise VmctlError(
            e.code if e.code != "DRIVER_ERROR" else "HOST_OFFLINE",
            f"Cannot reach the host at {uri}: {' '.join(e.message.split())}",
            [("uri", uri), ("reason", " ".join(e.message.split()))],
        ) from None
    return {
        "driver-uri": uri,
        "ovsdb": remote,
        "cpu-count": f.cpu_count,
        "memory-total": f.memory_total,
        "cpu-vendor": f.cpu_vendor,
        "cpu-model": f.cpu_model,
        "cpu-family": f.cpu_family,
        "cpu-flags": list(f.cpu_flags),
        "software-version": f.software_version,
    }


URI_RE = re.compile(r"^[a-z][a-z0-9+]*:///?[^\s]*$")


def network_for_bridge(txn, pool_uuid: str, bridge: str, label: str) -> dict:
    for n in txn.select("network", pool=pool_uuid, bridge=bridge):
        return n
    u = txn.insert("network", {"name-label": label, "bridge": bridge, "pool": pool_uuid})
    net = txn.get("network", u)
    # a new pool-wide network gets its bridge on every current host of the pool
    for h in txn.select("host", pool=pool_uuid):
        xenet.ensure_network_bridge(txn, net, h["uuid"])
    return net


def _add_pifs(txn, pool: dict, host_uuid: str, devices, mgmt_dev, tag: int, address: str) -> None:
    for d in devices:
        net = network_for_bridge(
            txn, pool["uuid"], xenet.default_bridge_for_device(d), f"Pool-wide network associated with {d}"
        )
        mac = generate_mac(txn, pool["uuid"], f"{host_uuid}:{d}")
        is_mgmt = d == mgmt_dev and tag < 0
        pif = {
            "host": host_uuid,
            "network": net["uuid"],
            "device": d,
            "mac": mac,
            "physical": True,
            "management": is_mgmt,
            "pool": pool["uuid"],
            "plugged": True,
        }
        if is_mgmt:
            pif.update({"ip-configuration-mode": "static", "ip": address})
        u = txn.insert("pif", pif)
        xenet.add_pif_port(txn, txn.get("pif", u))
        if d == mgmt_dev and tag >= 0:
            bridge = f"{net['bridge']}.{tag}"
            vnet = network_for_bridge(txn, pool["uuid"], bridge, f"VLAN {tag} on {d}")
            vp = txn.insert(
                "pif",
                {
                    "host": host_uuid,
                    "network": vnet["uuid"],
                    "device": d,
                    "mac": "fe:ff:ff:ff:ff:ff",
                    "vlan": tag,
                    "physical": False,
                    "management": True,
                    "pool": pool["uuid"],
                    "ip-configuration-mode": "static",
                    "ip": address,
                },
            )
            txn.insert("vlan", {"tagged-pif": u, "untagged-pif": vp, "tag": tag, "pool": pool["uuid"]})
            s = txn.switch(host_uuid)
            if s.has_bridge(bridge):
                s.del_bridge(bridge)
            xenet.ensure_network_bridge(txn, vnet, host_uuid)


# --- enable, disable, forget, update, free memory (model.md §3.2) -----------------------------------------------
_HOST = Arg("host", "ref:host", True, "the host: uuid or name-label", complete="host")


@command(
    "host-enable", "Let a live host take new VMs (already enabled: no change)", family="host", args=(_HOST,)
)
def host_enable(ctx: Ctx):
    txn = ctx.txn
    h = txn.resolve_one("host", ctx.a["host"])
    if h["enabled"]:
        return None  # already so: a no-op (model.md §3.2), even on a host that is not live
    if not h["live"]:
        raise VmctlError("HOST_OFFLINE", params=[("host", txn.ref("host", h))])
    txn.update("host", h["uuid"], {"enabled": True})
    return None


@command(
    "host-disable",
    "Stop a host from taking new VMs (under HA, refused if it breaks the failover plan)",
    family="host",
    args=(
        _HOST,
        # xe's auto-enable=false keeps a host disabled across its reboots; vmctl's hosts never
        # reboot, so a disabled host stays disabled until host-enable either way
        Arg("auto-enable", "bool", help="accepted for xe scripts: a host stays disabled until host-enable"),
    ),
)
def host_disable(ctx: Ctx):

    txn = ctx.txn
    h = txn.resolve_one("host", ctx.a["host"])
    if h["enabled"]:
        admit(txn, h["pool"], disable=[h["uuid"]])
        txn.update("host", h["uuid"], {"enabled": False})
    return None


def _has_resident(txn, h: dict) -> None:
    for st in ("running", "paused"):
        if txn.select("vm", resident_on=h["uuid"], power_state=st):
            raise VmctlError("HOST_HAS_RESIDENT_VMS", params=[("host", txn.ref("host", h))])


def _remove_pool_contents(txn, pool_uuid: str) -> None:
    """Forgetting a pool's only host removes the pool and all of its objects."""
    from vmctl.model import CLASSES

    for cls in (
        "vbd",
        "vif",
        "vm",
        "vm-group",
        "pbd",
        "vdi",
        "sr",
        "vlan",
        "bond",
        "tunnel",
        "pif",
        "network",
    ):
        if cls in CLASSES:
            for r in sorted(txn.select(cls, pool=pool_uuid), key=lambda r: r["uuid"]):
                if txn.get(cls, r["uuid"]) is not None:
                    txn.delete(cls, r["uuid"])


@command(
    "host-forget",
    "Remove a host that is not live (declared dead or failed), with its PIFs, PBDs, bridges and local SRs",
    family="host",
    args=(_HOST,),
    flags=("--force", "--if-exists"),
)
def host_forget(ctx: Ctx):
    txn = ctx.txn
    h = ctx.unless_missing(lambda: txn.resolve_one("host", ctx.a["host"]))
    if h is None:
        return None
    href = txn.ref("host", h)
    pool = txn.get("pool", h["pool"])
    others = [x for x in txn.select("host", pool=pool["uuid"]) if x["uuid"] != h["uuid"]]
    # xapi_host.destroy (precheck_destroy_declare_dead): only a host that is not live, never the
    # master (HOST_IS_LIVE either way); not while HA is enabled; no running or paused VM
    if h["live"]:
        raise VmctlError(
            "HOST_IS_LIVE",
            "Only a host that is not live can be forgotten: eject a live host from its pool "
            "(pool-eject), or declare it dead first (host-declare-dead)",
            [("host", href)],
        )
    if pool["master"] == h["uuid"] and others:
        raise VmctlError(
            "HOST_IS_LIVE",
            "The pool master cannot be forgotten: designate another master first (pool-designate-new-master)",
            [("host", href)],
        )
    if pool["ha-enabled"]:
        raise VmctlError("HA_IS_ENABLED", "Disable HA first (pool-ha-disable)", [])
    _has_resident(txn, h)
    local_srs = sorted(s["uuid"] for s in txn.select("sr", host=h["uuid"]))
    ctx.confirm(
        [f"host {h['uuid']} ({h['name-label']})"]
        + [f"sr {s}" for s in local_srs]
        + ([f"pool {pool['uuid']} and all of its objects"] if not others else [])
    )
    for s in local_srs:
        vdis = {d["uuid"] for d in txn.select("vdi", sr=s)}
        for v in txn.select("vm", power_state="suspended"):
            if v["suspend-vdi"] in vdis:
                txn.update("vm", v["uuid"], {"power-state": "halted", "suspend-vdi": ""})
        for d in sorted(vdis):
            for b in txn.select("vbd", vdi=d):
                txn.delete("vbd", b["uuid"])
        for d in sorted(vdis):
            if txn.get("vdi", d) is not None:
                txn.delete("vdi", d)
        for pbd in txn.select("pbd", sr=s):
            txn.delete("pbd", pbd["uuid"])
        txn.delete("sr", s)
    pifs = {p["uuid"] for p in txn.select("pif", host=h["uuid"])}
    for cls, keys in (
        ("vlan", ("tagged-pif", "untagged-pif")),
        ("bond", ("master",)),
        ("tunnel", ("access-pif", "transport-pif")),
    ):
        for r in txn.select(cls, pool=pool["uuid"]):
            if any(r[k] in pifs for k in keys):
                txn.delete(cls, r["uuid"])
    for p in sorted(pifs):
        txn.delete("pif", p)
    for pbd in txn.select("pbd", host=h["uuid"]):
        txn.delete("pbd", pbd["uuid"])
    for v in txn.select("vm", affinity=h["uuid"]):
        txn.update("vm", v["uuid"], {"affinity": ""})
    txn.drop_switch(h["uuid"])
    txn.delete("host", h["uuid"])
    if not others:
        _remove_pool_contents(txn, pool["uuid"])
        txn.delete("pool", pool["uuid"])
    return None


@command(
    "host-compute-free-memory",
    "Print the memory a host can still commit to VMs (memory-free, bytes)",
    family="host",
    rw=False,
    args=(_HOST,),
)
def host_compute_free_memory(ctx: Ctx):
    from vmctl import derived

    h = dict(ctx.txn.resolve_one("host", ctx.a["host"]))
    derived.fill(ctx.txn, "host", [h], ["memory-free"])
    return Value(h["memory-free"], "int")


@command(
    "host-update",
    "Record new hardware or software facts of a disabled host without running VMs",
    family="host",
    args=(
        _HOST,
        Arg("software-version", help="dot-separated integers"),
        Arg("cpu-vendor", help="GenuineIntel, AuthenticAMD, ..."),
        Arg("cpu-model", help="CPU model name"),
        Arg("cpu-family", "int", help="CPU family number"),
        Arg("cpu-flags", "list", help="comma-separated CPU feature flags (replaces the set)"),
        Arg("cpu-count", "int", help="logical CPUs"),
        Arg("memory-total", "size", help="physical memory"),
        Arg("memory-overhead", "size", help="memory kept by the hypervisor and control domain"),
    ),
    flags=("--force",),
)
def host_update(ctx: Ctx):
    txn, a = ctx.txn, ctx.a
    h = txn.resolve_one("host", a["host"])
    new = dict(h)
    if "software-version" in a:
        if not VERSION_RE.match(a["software-version"]) or len(a["software-version"]) > 64:
            raise _invalid("software-version", a["software-version"])
        new["software-version"] = a["software-version"]
    for k in ("cpu-vendor", "cpu-model", "cpu-family"):
        if k in a:
            new[k] = a[k]
    if "cpu-flags" in a:
        new["cpu-flags"] = sorted({f.lower() for f in a["cpu-flags"]})
    if "cpu-count" in a:
        if not 1 <= a["cpu-count"] <= 65536:
            raise _invalid("cpu-count", a["cpu-count"])
        new["cpu-count"] = a["cpu-count"]
    for k in ("memory-total", "memory-overhead"):
        if k in a:
            if isinstance(a[k], tuple) or a[k] < 0 or (k == "memory-total" and a[k] == 0):
                raise _invalid(k, ctx.raw.get(k))
            new[k] = a[k]
    if new["memory-overhead"] >= new["memory-total"]:
        raise _invalid("memory-overhead", new["memory-overhead"])
    href = txn.ref("host", h)
    if h["enabled"]:
        raise VmctlError("HOST_NOT_DISABLED", params=[("host", href)])
    _has_resident(txn, h)
    pool = txn.get("pool", h["pool"])
    if pool["master"] != h["uuid"] and txn.count("host", pool=pool["uuid"]) > 1:
        master = txn.get("host", pool["master"])
        if major(new["software-version"]) != major(master["software-version"]):
            raise VmctlError("HOSTS_NOT_COMPATIBLE", params=[("reason", "Major versions differ")])
        if not ctx.force and new["cpu-vendor"] != master["cpu-vendor"]:
            raise VmctlError("HOSTS_NOT_HOMOGENEOUS", params=[("reason", "CPUs differ")])
    changes = {k: v for k, v in new.items() if h.get(k) != v}
    if changes:
        txn.update("host", h["uuid"], changes)
    return None


@param_hook("host")
def _host_capacity_rules(ctx: Ctx, host: dict, changes: dict) -> None:
    """other-config:memory-reserved lowers the host's capacity (model.md §3.9): refused when the
    resident VMs would no longer fit (HOST_NOT_ENOUGH_FREE_MEMORY); a vcpu-allocation-ratio
    override must be a number > 0."""
    from vmctl import capacity

    if "other-config" not in changes:
        return
    oc = changes["other-config"]
    ratio = oc.get("vcpu-allocation-ratio")
    if ratio is not None and ratio != host["other-config"].get("vcpu-allocation-ratio"):
        try:
            ok = float(ratio) > 0
        except ValueError:
            ok = False
        if not ok:
            raise _invalid("other-config:vcpu-allocation-ratio", ratio)
    reserved = oc.get("memory-reserved")
    if reserved is None or reserved == host["other-config"].get("memory-reserved"):
        return
    try:
        value = int(reserved)
    except ValueError:
        raise _invalid("other-config:memory-reserved", reserved) from None
    if value < 0:
        raise _invalid("other-config:memory-reserved", reserved)
    txn = ctx.txn
    policy = txn.get("pool", host["pool"])["memory-overcommit-policy"]
    used = capacity.committed_on(txn, host["uuid"], policy)
    available = capacity.host_capacity({**host, "other-config": oc})
    if used > available:
        raise VmctlError(
            "HOST_NOT_ENOUGH_FREE_MEMORY", params=[("needed", used), ("available", max(0, available))]
        )
