"""Capacity accounting of model.md §3.9: host memory capacity, VM charges, memory-actual.
Shared by commands, derived fields, the engine adapter and db-check, so all agree."""

from __future__ import annotations

MiB = 1024**2
RESIDENT = ("running", "paused")


# memory-static-max bytes per MiB of overhead, the last partial one counting whole
STATIC_MAX_PER_OVERHEAD_MIB = 128 * MiB


def vm_overhead(vm: dict) -> int:
    """4 MiB + vcpus × 1 MiB + memory-static-max / 128, rounded up to a whole MiB."""
    return overhead_of(1, vm["vcpus"], -(-vm["memory-static-max"] // STATIC_MAX_PER_OVERHEAD_MIB))


def overhead_of(count: int, vcpus: int, static_max_units: int) -> int:
    """The overhead of `count` VMs of Σ vcpus `vcpus` and Σ ⌈memory-static-max / 128 MiB⌉
    `static_max_units`. 4 MiB and vcpus × 1 MiB are whole MiB, so rounding 4 MiB + vcpus MiB +
    ⌈memory-static-max / 128⌉ up to a MiB adds ⌈memory-static-max / (128 × 1 MiB)⌉ MiB: only
    that term is per VM, and per-host sums of the three give the hosts' overheads exactly (the
    placement snapshot reads them from the database, vmctl/store/loads.py)."""
    return (4 * count + vcpus + static_max_units) * MiB


def vm_charge(vm: dict, policy: str) -> int:
    """Memory a running or paused VM commits on its host."""
    base = (
        vm["memory-static-max"]
        if policy == "none"
        else max(vm["memory-dynamic-min"], vm["memory-reservation"])
    )
    return vm_overhead(vm) + base


def host_reserved(host: dict) -> int:
    try:
        return max(0, int(host["other-config"].get("memory-reserved", 0)))
    except (TypeError, ValueError):
        return 0


def host_capacity(host: dict) -> int:
    return host["memory-total"] - host["memory-overhead"] - host_reserved(host)


def memory_actual(host: dict, vms: list[dict], policy: str) -> dict[str, int]:
    """memory-actual of each VM resident on one host (model.md §3.9)."""
    if policy == "none":
        return {v["uuid"]: v["memory-dynamic-max"] for v in vms}
    floors = {v["uuid"]: max(v["memory-dynamic-min"], v["memory-reservation"]) for v in vms}
    spare = host_capacity(host) - sum(floors[v["uuid"]] + vm_overhead(v) for v in vms)
    want = sum(v["memory-dynamic-max"] - floors[v["uuid"]] for v in vms)
    f = 1.0 if want <= 0 else max(0.0, min(1.0, spare / want))
    return {
        v["uuid"]: floors[v["uuid"]] + int(f * (v["memory-dynamic-max"] - floors[v["uuid"]])) for v in vms
    }


def committed_on(txn, host_uuid: str, policy: str) -> int:
    """Σ charges of the VMs resident on one host, under the pool's policy (or the one a
    change to it would set)."""
    return sum(
        vm_charge(v, policy)
        for st in RESIDENT
        for v in txn.select("vm", resident_on=host_uuid, power_state=st)
    )


def committed_by_host(txn, pool_policy: dict[str, str]) -> dict[str, int]:
    """Σ charges of resident VMs per host uuid (one query for the whole inventory)."""
    out: dict[str, int] = {}
    for state in RESIDENT:
        for vm in txn.select("vm", power_state=state):
            h = vm["resident-on"]
            if h:
                out[h] = out.get(h, 0) + vm_charge(vm, pool_policy.get(vm["pool"], "none"))
    return out


def pool_policies(txn) -> dict[str, str]:
    return {p["uuid"]: p["memory-overcommit-policy"] for p in txn.all("pool")}
