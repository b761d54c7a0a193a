"""Pools (model.md §3.1): pool-create, pool-destroy, pool-designate-new-master."""

from __future__ import annotations

from vmctl.commands.table import Arg, Ctx, Value, command
from vmctl.errors import VmctlError


def only_pool(txn, value: str | None = None) -> dict:
    """`pool=` when given, else the only pool (POOL_REQUIRED when there are several or none)."""
    if value:
        return txn.resolve_one("pool", value)
    pools = txn.all("pool")
    if len(pools) != 1:
        raise VmctlError("POOL_REQUIRED", "Name the pool with pool=" if pools else "The inventory has no pool",
                         [("pools", len(pools))])
    return pools[0]


@command("pool-create", "Create an empty pool; with master=, join that host as its master",
         family="pool", args=(Arg("name-label", required=True, help="the pool's name"),
                              Arg("name-description", help="a description"),
                              Arg("master", "ref:host", help="a standalone host to make this pool's master",
                                  complete="host")),
         flags=("--may-exist",), creates="pool")
def pool_create(ctx: Ctx):
    txn = ctx.txn
    name = ctx.a["name-label"]
    if ctx.flag("may-exist"):
        hit = txn.select("pool", name_label=name)
        if hit:
            return Value(sorted(h["uuid"] for h in hit)[0])
    values = {"name-label": name, "name-description": ctx.a.get("name-description", "")}
    uuid = txn.insert("pool", values)
    if "master" in ctx.a:
        from vmctl.commands import host as host_cmds

        host_cmds.join_pool(ctx, txn.resolve_one("host", ctx.a["master"]), txn.get("pool", uuid))
    return Value(uuid)


@command("pool-destroy", "Destroy a pool that holds no hosts, VMs, SRs or networks", family="pool",
         args=(Arg("uuid", "uuid", True, "the pool", complete="pool"),), flags=("--if-exists",))
def pool_destroy(ctx: Ctx):
    txn = ctx.txn
    try:
        pool = txn.resolve_one("pool", ctx.a["uuid"])
    except VmctlError as e:
        if ctx.flag("if-exists") and e.code == "UUID_INVALID":
            return None
        raise
    u = pool["uuid"]
    for cls in ("host", "vm", "sr", "network"):
        if txn.select(cls, pool=u):
            raise VmctlError("POOL_NOT_EMPTY", params=[("pool", txn.ref("pool", pool))])
    for cls in ("vm-group",):
        for r in txn.select(cls, pool=u):
            txn.delete(cls, r["uuid"])
    txn.delete("pool", u)
    return None


@command("pool-designate-new-master", "Make another live member the pool master", family="pool",
         args=(Arg("host", "ref:host", True, "the new master", complete="host"),))
def pool_designate_new_master(ctx: Ctx):
    txn = ctx.txn
    h = txn.resolve_one("host", ctx.a["host"])
    if not h["live"]:
        raise VmctlError("HOST_OFFLINE", params=[("host", txn.ref("host", h))])
    pool = txn.get("pool", h["pool"])
    if pool["master"] != h["uuid"]:
        txn.update("pool", pool["uuid"], {"master": h["uuid"]})
    return None
