"""VM groups (model.md §1.4, engine.md §1–2): vm-group-create and vm-group-destroy. Membership is
the VM's set field ``groups`` (``vm-param-add uuid=V param-name=groups param-key=G``), checked
to be of the VM's pool by the vm param rules (I15)."""

from __future__ import annotations

from vmctl.commands.table import Arg, Ctx, Value, command
from vmctl.pools import only_pool


@command(
    "vm-group-create",
    "Create a VM group with a placement rule; print its uuid",
    family="vm-group",
    args=(
        Arg("name-label", required=True, help="the group's name"),
        Arg(
            "placement",
            "enum",
            True,
            "affinity, anti-affinity or normal (no placement effect)",
            values=("normal", "affinity", "anti-affinity"),
        ),
        Arg(
            "strict",
            "bool",
            help="true: a start or migration breaking the rule is refused; false (default): a preference",
        ),
        Arg("pool", "ref:pool", help="the pool (default: the only pool)", complete="pool"),
        Arg("name-description", help="a description"),
    ),
    flags=("--may-exist",),
    creates="vm-group",
)
def vm_group_create(ctx: Ctx):
    txn = ctx.txn
    pool = only_pool(txn, ctx.a.get("pool"))
    name = ctx.a["name-label"]
    if ctx.flag("may-exist"):
        hit = sorted(txn.select("vm-group", name_label=name, pool=pool["uuid"]), key=lambda r: r["uuid"])
        if hit:
            return Value(hit[0]["uuid"])
    return Value(
        txn.insert(
            "vm-group",
            {
                "name-label": name,
                "placement": ctx.a["placement"],
                "strict": ctx.a.get("strict", False),
                "pool": pool["uuid"],
                "name-description": ctx.a.get("name-description", ""),
            },
        )
    )


@command(
    "vm-group-destroy",
    "Destroy a VM group; its members leave it",
    family="vm-group",
    args=(Arg("uuid", "uuid", True, "the group", complete="vm-group"),),
    flags=("--if-exists",),
)
def vm_group_destroy(ctx: Ctx):
    txn = ctx.txn
    g = ctx.unless_missing(lambda: txn.resolve_one("vm-group", ctx.a["uuid"]))
    if g is None:
        return None
    for vm in sorted(txn.select("vm", pool=g["pool"]), key=lambda r: r["uuid"]):
        if g["uuid"] in vm["groups"]:
            txn.update("vm", vm["uuid"], {"groups": [x for x in vm["groups"] if x != g["uuid"]]})
    txn.delete("vm-group", g["uuid"])
    return None
