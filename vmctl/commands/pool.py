"""Pools (model.md §3.1): pool-create, pool-destroy, pool-designate-new-master."""

from __future__ import annotations

from vmctl.commands.table import Arg, Ctx, Value, command
from vmctl.errors import VmctlError
from vmctl.fields import param_hook
from vmctl.model import DRIVERS
from vmctl.pools import homogeneity_checks, management_vlan, record_cpu_verdict


@command(
    "pool-create",
    "Create an empty pool; with master=, join that host as its master",
    family="pool",
    args=(
        Arg("name-label", required=True, help="the pool's name"),
        Arg("name-description", help="a description"),
        Arg("master", "ref:host", help="a standalone host to make this pool's master", complete="host"),
        Arg("driver", "enum", values=DRIVERS, help="sim (records only, the default) or libvirt (real hosts)"),
    ),
    flags=("--may-exist",),
    creates="pool",
)
def pool_create(ctx: Ctx):
    txn = ctx.txn
    name = ctx.a["name-label"]
    if ctx.flag("may-exist"):
        hit = txn.select("pool", name_label=name)
        if hit:
            return Value(sorted(h["uuid"] for h in hit)[0])
    values = {
        "name-label": name,
        "name-description": ctx.a.get("name-description", ""),
        "driver": ctx.a.get("driver", "sim"),
    }
    uuid = txn.insert("pool", values)
    if "master" in ctx.a:
        join(ctx, txn.resolve_one("host", ctx.a["master"]), txn.get("pool", uuid))
    return Value(uuid)


@command(
    "pool-destroy",
    "Destroy a pool that holds no hosts, VMs, SRs or networks",
    family="pool",
    args=(Arg("uuid", "uuid", True, "the pool", complete="pool"),),
    flags=("--if-exists",),
)
def pool_destroy(ctx: Ctx):
    txn = ctx.txn
    pool = ctx.unless_missing(lambda: txn.resolve_one("pool", ctx.a["uuid"]))
    if pool is None:
        return None
    u = pool["uuid"]
    for cls in ("host", "vm", "sr", "network"):
        if txn.select(cls, pool=u):
            raise VmctlError("POOL_NOT_EMPTY", params=[("pool", txn.ref("pool", pool))])
    for cls in ("vm-group",):
        for r in txn.select(cls, pool=u):
            txn.delete(cls, r["uuid"])
    txn.delete("pool", u)
    return None


@command(
    "pool-designate-new-master",
    "Make another live member the pool master",
    family="pool",
    args=(Arg("host", "ref:host", True, "the new master", complete="host"),),
)
def pool_designate_new_master(ctx: Ctx):
    txn = ctx.txn
    h = txn.resolve_one("host", ctx.a["host"])
    if not h["live"]:
        raise VmctlError("HOST_OFFLINE", params=[("host", txn.ref("host", h))])
    pool = txn.get("pool", h["pool"])
    if pool["master"] != h["uuid"]:
        txn.update("pool", pool["uuid"], {"master": h["uuid"]})
    return None


# --- pool-join (model.md §3.1) ---------------------------------------------------------------------------------
def _pool_objects(txn, pool_uuid: str, classes=None):
    from vmctl.model import CLASSES

    for cls, c in CLASSES.items():
        if not c.pooled or cls in ("host", "network") or (classes and cls not in classes):
            continue
        for r in sorted(txn.select(cls, pool=pool_uuid), key=lambda r: r["uuid"]):
            yield cls, r


def join_checks(ctx: Ctx, h: dict, pool: dict, force: bool) -> bool | None:
    """The pre-checks of model.md §3.1, in order; the first failure wins. Returns the CPU
    check's verdict on a real pool (homogeneity_checks)."""

    txn = ctx.txn
    old = txn.get("pool", h["pool"])
    href = txn.ref("host", h)
    if pool["ha-enabled"] or old["ha-enabled"]:  # 1 (xapi_pool.pre_join_checks: HA before the rest)
        raise VmctlError("HA_IS_ENABLED", "HA must be disabled on both pools")
    if h["pool"] == pool["uuid"]:  # 2
        raise VmctlError("OPERATION_NOT_ALLOWED", params=[("reason", "Host is already part of this pool")])
    if old["driver"] != pool["driver"]:  # a simulated host cannot join real ones, nor the reverse
        raise VmctlError(
            "OPERATION_NOT_ALLOWED",
            params=[
                ("reason", f"The host's pool uses the {old['driver']} driver, this pool {pool['driver']}")
            ],
        )
    if txn.count("host", pool=old["uuid"]) > 1:  # 3
        raise VmctlError("JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS", params=[("host", href)])
    if not h["live"]:  # 4
        raise VmctlError("HOST_OFFLINE", params=[("host", href)])
    for st in ("running", "paused"):  # 5
        for v in sorted(txn.select("vm", pool=old["uuid"], power_state=st), key=lambda r: r["uuid"]):
            raise VmctlError("JOINING_HOST_CANNOT_HAVE_RUNNING_VMS", params=[("vm", txn.ref("vm", v))])
    held = {f"host:{h['uuid']}"} | {f"{c}:{r['uuid']}" for c, r in _pool_objects(txn, old["uuid"])}
    for t in sorted(txn.select("task", status="pending"), key=lambda r: r["uuid"]):  # 6
        if held & set(t["objects"]):
            raise VmctlError(
                "JOINING_HOST_CANNOT_HAVE_VMS_WITH_CURRENT_OPERATIONS", params=[("task", t["uuid"])]
            )
    master = txn.get("host", pool["master"]) if pool["master"] else None
    if master is None:
        return None  # an empty pool: H becomes its master
    verdict = homogeneity_checks(ctx, h, master, force)  # 7, 8
    for sr in sorted(txn.select("sr", pool=old["uuid"], shared=True), key=lambda r: r["uuid"]):  # 9
        raise VmctlError("JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS", params=[("sr", txn.ref("sr", sr))])
    my_pifs = {p["uuid"]: p for p in txn.select("pif", host=h["uuid"])}
    for b in sorted(txn.all("bond"), key=lambda r: r["uuid"]):  # 10
        if b["master"] in my_pifs:
            raise VmctlError("POOL_JOINING_HOST_HAS_BONDS", params=[("bond", b["uuid"])])
    for t in sorted(txn.all("tunnel"), key=lambda r: r["uuid"]):  # 11
        if t["access-pif"] in my_pifs or t["transport-pif"] in my_pifs:
            raise VmctlError("POOL_JOINING_HOST_HAS_TUNNELS", params=[("tunnel", t["uuid"])])
    for v in sorted(txn.all("vlan"), key=lambda r: r["uuid"]):  # 12
        if v["tagged-pif"] in my_pifs:
            untagged = my_pifs.get(v["untagged-pif"])
            if untagged is None or not untagged["management"]:
                raise VmctlError("POOL_JOINING_HOST_HAS_NON_MANAGEMENT_VLANS", params=[("vlan", v["uuid"])])
    local, remote = management_vlan(txn, h["uuid"]), management_vlan(txn, master["uuid"])
    if local != remote:  # 13
        raise VmctlError(
            "POOL_JOINING_HOST_MANAGEMENT_VLAN_DOES_NOT_MATCH", params=[("local", local), ("remote", remote)]
        )
    if h["network-backend"] != master["network-backend"]:  # 14
        raise VmctlError("OPERATION_NOT_ALLOWED", params=[("reason", "Network backends differ")])
    return verdict


def join(ctx: Ctx, h: dict, pool: dict, force: bool = False) -> None:
    """Checks, then move H and everything of its old pool into P (model.md §3.1 effects)."""
    from vmctl import xenet

    txn = ctx.txn
    verdict = join_checks(ctx, h, pool, force)
    old = h["pool"]
    p = pool["uuid"]
    members = sorted(x["uuid"] for x in txn.select("host", pool=p))
    for cls, r in list(_pool_objects(txn, old)):
        txn.update(cls, r["uuid"], {"pool": p})
    changes: dict = {"pool": p}
    if record_cpu_verdict(h, verdict) != h["other-config"]:
        changes["other-config"] = record_cpu_verdict(h, verdict)
    txn.update("host", h["uuid"], changes)
    # networks merge by bridge name: P's record (and mtu) wins; the rest become P networks
    ours = {n["bridge"]: n for n in txn.select("network", pool=p)}
    moved = []
    for n in sorted(txn.select("network", pool=old), key=lambda r: r["uuid"]):
        match = ours.get(n["bridge"])
        if match is None:
            txn.update("network", n["uuid"], {"pool": p})
            moved.append(txn.get("network", n["uuid"]))
            continue
        for cls in ("pif", "vif"):
            for r in txn.select(cls, network=n["uuid"]):
                txn.update(cls, r["uuid"], {"network": match["uuid"]})
        txn.delete("network", n["uuid"])
    for n in sorted(txn.select("network", pool=p), key=lambda r: r["uuid"]):
        xenet.ensure_network_bridge(txn, n, h["uuid"])
    for n in moved:
        for m in members:
            xenet.ensure_network_bridge(txn, n, m)
    for sr in sorted(txn.select("sr", pool=p, shared=True), key=lambda r: r["uuid"]):
        if not txn.select("pbd", host=h["uuid"], sr=sr["uuid"]):
            txn.insert("pbd", {"host": h["uuid"], "sr": sr["uuid"], "pool": p, "currently-attached": True})
    if not pool["master"]:
        txn.update("pool", p, {"master": h["uuid"]})
    txn.delete("pool", old)


@command(
    "pool-join",
    "Join a standalone host to a pool (all of its objects move with it)",
    family="pool",
    args=(
        Arg(
            "host",
            "ref:host",
            help="the joining standalone host (default: --host or VMCTL_HOST, the host xe would run on)",
            complete="host",
        ),
        Arg("pool", "ref:pool", help="the pool to join", complete="pool"),
        Arg("master-address", help="name the pool by its master's address instead of pool="),
        # xe logs in to the master with these; vmctl reads the inventory, so they are only checked
        # for form and never stored, printed or journaled (vmctl/redact.py)
        Arg("master-username", help="accepted for xe scripts; not used (vmctl needs no login)"),
        Arg("master-password", help="accepted for xe scripts; not used, never stored or printed"),
    ),
    flags=("--force",),
)
def pool_join(ctx: Ctx):
    txn = ctx.txn
    host = ctx.a.get("host") or ctx.opts.get("host")
    if not host:
        raise VmctlError(
            "MISSING_PARAMETER",
            "Name the joining host with host= (or --host=, as xe runs on it)",
            [("name", "host")],
        )
    if "pool" in ctx.a:
        pool = txn.resolve_one("pool", ctx.a["pool"])
    elif "master-address" in ctx.a:
        hits = txn.select("host", address=ctx.a["master-address"].lower())
        pool = txn.get("pool", hits[0]["pool"]) if hits else None
        if pool is None or pool["master"] != hits[0]["uuid"]:
            raise VmctlError(
                "UUID_INVALID",
                "No pool master has that address",
                [("class", "pool"), ("value", ctx.a["master-address"])],
            )
    else:
        raise VmctlError(
            "MISSING_PARAMETER", "Name the pool with pool= or master-address=", [("name", "pool")]
        )
    join(ctx, txn.resolve_one("host", host), pool, ctx.force)
    return None


# --- pool-eject (model.md §3.1) ------------------------------------------------------------------------------------
def _vm_vdis(txn, vm: dict) -> list[str]:
    out = [b["vdi"] for b in txn.select("vbd", vm=vm["uuid"]) if b["vdi"]]
    if vm["suspend-vdi"]:
        out.append(vm["suspend-vdi"])
    return out


@command(
    "pool-eject",
    "Remove a host from its pool into a new standalone pool, with its local storage "
    "and the VMs whose disks all lie there",
    family="pool",
    args=(Arg("host", "ref:host", True, "the host to eject", complete="host"),),
    flags=("--force",),
)
def pool_eject(ctx: Ctx):
    from vmctl import xenet

    txn = ctx.txn
    h = txn.resolve_one("host", ctx.a["host"])
    href = txn.ref("host", h)
    pool = txn.get("pool", h["pool"])
    # xapi_pool.eject_self's order: HA, the master, a VM resident there (OPERATION_NOT_ALLOWED)
    if pool["ha-enabled"]:
        raise VmctlError("HA_IS_ENABLED", "Disable HA first")
    if pool["master"] == h["uuid"]:
        raise VmctlError("CANNOT_EJECT_MASTER", "Designate another master first", [("host", href)])
    for st in ("running", "paused"):
        if txn.select("vm", resident_on=h["uuid"], power_state=st):
            raise VmctlError(
                "OPERATION_NOT_ALLOWED",
                "VM resident on host: shut down or migrate its running and paused VMs first",
                [("reason", "VM resident on host")],
            )
    local_srs = {s["uuid"] for s in txn.select("sr", pool=pool["uuid"], host=h["uuid"])}
    vdis_there = {d["uuid"] for d in txn.all("vdi") if d["sr"] in local_srs}
    vms = [v for v in txn.select("vm", pool=pool["uuid"]) if not v["is-a-snapshot"]]
    going: list[dict] = []
    for v in sorted(vms, key=lambda r: r["uuid"]):
        mine = _vm_vdis(txn, v)
        if mine and all(d in vdis_there for d in mine):
            going.append(v)
            going += sorted(
                txn.select("vm", snapshot_of=v["uuid"], is_a_snapshot=True), key=lambda r: r["uuid"]
            )
    gone = {v["uuid"] for v in going}
    staying = [v for v in txn.select("vm", pool=pool["uuid"]) if v["uuid"] not in gone]
    if not ctx.force:
        for v in sorted(staying, key=lambda r: r["uuid"]):
            for d in _vm_vdis(txn, v):
                if d in vdis_there:
                    raise VmctlError(
                        "VDI_IN_USE", params=[("vdi", txn.ref("vdi", d)), ("operation", "pool-eject")]
                    )
    ctx.confirm(
        [f"host {h['uuid']} ({h['name-label']}) leaves pool {pool['uuid']}"]
        + [f"vm {v['uuid']} ({v['name-label']}) moves with it" for v in going]
    )
    new = txn.insert("pool", {"name-label": ""})
    txn.update("pool", new, {"master": h["uuid"]})
    # staying VMs lose what moves (only reachable with --force)
    for v in staying:
        for b in txn.select("vbd", vm=v["uuid"]):
            if b["vdi"] in vdis_there:
                txn.delete("vbd", b["uuid"])
        if v["suspend-vdi"] in vdis_there:
            txn.update("vm", v["uuid"], {"power-state": "halted", "suspend-vdi": ""})
    # networks its PIFs or the moved VIFs use are copied into the new pool
    pifs = txn.select("pif", host=h["uuid"])
    vifs = [f for v in going for f in txn.select("vif", vm=v["uuid"])]
    copies: dict[str, str] = {}
    for n in sorted({x["network"] for x in pifs + vifs if x["network"]}):
        net = txn.get("network", n)
        if net is None:
            continue
        copies[n] = txn.insert(
            "network",
            {
                "name-label": net["name-label"],
                "name-description": net["name-description"],
                "bridge": net["bridge"],
                "mtu": net["mtu"],
                "managed": net["managed"],
                "pool": new,
            },
        )
    for x, cls in [(p, "pif") for p in pifs] + [(f, "vif") for f in vifs]:
        txn.update(
            cls,
            x["uuid"],
            {"pool": new, **({"network": copies[x["network"]]} if x["network"] in copies else {})},
        )
    pif_ids = {p["uuid"] for p in pifs}
    for cls, key in (("vlan", "tagged-pif"), ("bond", "master"), ("tunnel", "access-pif")):
        for r in txn.select(cls, pool=pool["uuid"]):
            if r[key] in pif_ids:
                txn.update(cls, r["uuid"], {"pool": new})
    for v in going:
        for b in txn.select("vbd", vm=v["uuid"]):
            txn.update("vbd", b["uuid"], {"pool": new})
        txn.update("vm", v["uuid"], {"pool": new, "groups": [], "affinity": ""})
    for s in local_srs:
        txn.update("sr", s, {"pool": new})
    for d in vdis_there:
        txn.update("vdi", d, {"pool": new})
    for pbd in txn.select("pbd", host=h["uuid"]):
        if pbd["sr"] in local_srs:
            txn.update("pbd", pbd["uuid"], {"pool": new})
        else:
            txn.delete("pbd", pbd["uuid"])
    for v in txn.select("vm", affinity=h["uuid"]):
        if v["pool"] != new:
            txn.update("vm", v["uuid"], {"affinity": ""})
    txn.update("host", h["uuid"], {"pool": new})
    kept = {txn.get("network", c)["bridge"] for c in copies.values()}
    s = txn.switch(h["uuid"])
    for n in sorted(txn.select("network", pool=pool["uuid"]), key=lambda r: r["bridge"], reverse=True):
        if n["bridge"] not in kept and s.has_bridge(n["bridge"]):
            s.del_bridge(n["bridge"])
    for n in sorted(txn.select("network", pool=new), key=lambda r: r["uuid"]):
        xenet.ensure_network_bridge(txn, n, h["uuid"])
    return None


# --- pool field rules (param-set) -----------------------------------------------------------------------------------
@param_hook("pool")
def _pool_rules(ctx: Ctx, pool: dict, changes: dict) -> None:
    from vmctl import capacity

    txn = ctx.txn
    if "vcpu-allocation-ratio" in changes and not changes["vcpu-allocation-ratio"] > 0:
        raise VmctlError(
            "INVALID_VALUE",
            params=[("name", "vcpu-allocation-ratio"), ("value", changes["vcpu-allocation-ratio"])],
        )
    if changes.get("default-sr"):
        sr = txn.get("sr", changes["default-sr"])
        if sr is None:
            raise VmctlError("UUID_INVALID", params=[("class", "sr"), ("value", changes["default-sr"])])
        if sr["pool"] != pool["uuid"]:
            raise VmctlError(
                "NOT_IN_SAME_POOL", params=[("object", txn.ref("sr", sr)), ("pool", txn.ref("pool", pool))]
            )
        if sr["content-type"] != "user":
            raise VmctlError("INVALID_VALUE", params=[("name", "default-sr"), ("value", sr["uuid"])])
    if (
        changes.get("memory-overcommit-policy", pool["memory-overcommit-policy"])
        != pool["memory-overcommit-policy"]
    ):
        policy = changes["memory-overcommit-policy"]
        for h in sorted(txn.select("host", pool=pool["uuid"]), key=lambda r: r["uuid"]):
            used = capacity.committed_on(txn, h["uuid"], policy)
            if used > capacity.host_capacity(h):
                raise VmctlError(
                    "HOST_NOT_ENOUGH_FREE_MEMORY",
                    params=[("needed", used), ("available", capacity.host_capacity(h))],
                )
