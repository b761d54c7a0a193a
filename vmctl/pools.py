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


def homogeneity_checks(ctx: Ctx, host: dict, master: dict, force: bool) -> bool | None:
    """pool-join checks 7-8 (host-add with pool=, pool-join). The software-version plays XAPI's
    platform version: any difference refuses the join, --force or not
    (xapi_pool.pre_join_checks assert_hosts_compatible: HOSTS_NOT_COMPATIBLE [reason]); a pool
    only runs mixed versions during a rolling upgrade of its own hosts (host-update). The CPU
    check, which --force skips, compares vendors on a simulated pool; on a real pool the driver's
    own CPU comparison decides (drivers.md §2) and its verdict is returned, for
    `record_cpu_verdict` (None on a simulated pool)."""
    if host["software-version"] != master["software-version"]:
        same_major = major(host["software-version"]) == major(master["software-version"])
        raise VmctlError(
            "HOSTS_NOT_COMPATIBLE",
            f"The host runs software-version {host['software-version']}, the pool master "
            f"{master['software-version']}: a host joins a pool of its own version only",
            [("reason", "Software versions differ" if same_major else "Major versions differ")],
        )
    from vmctl import drivers

    if not drivers.real(ctx.txn, master["pool"]):
        if not force and host["cpu-vendor"] != master["cpu-vendor"]:
            raise VmctlError("HOSTS_NOT_HOMOGENEOUS", params=[("reason", "CPUs differ")])
        return None
    ok = runs_cpu_of(ctx.txn, host, master)
    if not ok and not force:
        model = master["cpu-model"] or master["cpu-vendor"]
        raise VmctlError(
            "HOSTS_NOT_HOMOGENEOUS",
            params=[("reason", f"CPUs differ: the host cannot run the pool master's CPU ({model})")],
        )
    return ok


CPU_VERDICT = "cpu-compatible"  # host other-config: "false" on a host forced past the CPU check


def runs_cpu_of(txn, host: dict, master: dict) -> bool:
    """Whether a host of a real pool can run the master's CPU: the master's CPU as its hypervisor
    describes it now, compared by the joining host's hypervisor (libvirt's compareCPU). Both
    hosts are asked (reads only, also in a dry run); one that cannot be reached fails the
    command naming it."""
    from vmctl import drivers

    driver = drivers.driver_for(txn, master["pool"])
    assert driver is not None
    # a joining host is not in the inventory yet (host-add): it has no uuid
    joining = drivers.host_target({"uuid": "", **host})
    try:
        cpu = driver.probe(drivers.host_target(master)).cpu_xml
        ok = driver.cpu_compatible(joining, cpu)
    except drivers.DriverFault as f:
        why = " ".join(f.message.split())
        raise VmctlError(
            f.code,
            f"Cannot compare the CPUs of {host['name-label']} and {master['name-label']}: {why}",
            [("host", f.host), ("reason", why)],
        ) from None
    return ok


def record_cpu_verdict(host: dict, ok: bool | None) -> dict:
    """The host's other-config with the CPU check's verdict: a host forced into a real pool that
    cannot run the master's CPU says so, and the engine then moves no running VM onto it."""
    config = {k: v for k, v in host.get("other-config", {}).items() if k != CPU_VERDICT}
    if ok is False:
        config[CPU_VERDICT] = "false"
    return config


def same_pool(txn, cls: str, row: dict, pool_uuid: str) -> None:
    """An object given to a command must be of the pool it acts in (NOT_IN_SAME_POOL)."""
    if row["pool"] != pool_uuid:
        raise VmctlError(
            "NOT_IN_SAME_POOL", params=[("object", txn.ref(cls, row)), ("pool", txn.ref("pool", pool_uuid))]
        )
