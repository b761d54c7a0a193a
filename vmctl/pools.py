"""Pool rules shared by the pool, host, network, SR and VM commands: the pool a command means
when it names none, and the homogeneity checks of pool-join (model.md §3.1)."""

from __future__ import annotations

from vmctl.commands.table import Ctx
from vmctl.errors import VmctlError


def only_pool(txn, value: str | None = None) -> dict:
    """`pool=` when given, else the only pool (POOL_REQUIRED when there are several or none)."""
    if value:
        return txn.resolve_one("pool", value)
    pools = txn.all("pool")
    if len(pools) != 1:
        raise VmctlError(
            "POOL_REQUIRED",
            "Name the pool with pool=" if pools else "The inventory has no pool",
            [("pools", len(pools))],
        )
    return pools[0]


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def major(v: str) -> int:
    return version_tuple(v)[0]


def management_vlan(txn, host_uuid: str) -> int:
    for p in txn.select("pif", host=host_uuid, management=True):
        return p["vlan"]
    return -1


def homogeneity_checks(ctx: Ctx, host: dict, master: dict, force: bool) -> None:
    """pool-join checks 7-9 (host-add with pool=, host-update)."""
    if major(host["software-version"]) != major(master["software-version"]):
        raise VmctlError("HOSTS_NOT_COMPATIBLE", params=[("reason", "Major versions differ")])
    if not force and host["software-version"] != master["software-version"]:
        raise VmctlError("HOSTS_NOT_HOMOGENEOUS", params=[("reason", "Software version differs")])
    if not force and host["cpu-vendor"] != master["cpu-vendor"]:
        raise VmctlError("HOSTS_NOT_HOMOGENEOUS", params=[("reason", "CPUs differ")])


def same_pool(txn, cls: str, row: dict, pool_uuid: str) -> None:
    """An object given to a command must be of the pool it acts in (NOT_IN_SAME_POOL)."""
    if row["pool"] != pool_uuid:
        raise VmctlError(
            "NOT_IN_SAME_POOL", params=[("object", txn.ref(cls, row)), ("pool", txn.ref("pool", pool_uuid))]
        )
