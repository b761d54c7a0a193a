"""Small pool builders for the engine tests."""

from __future__ import annotations

from vmctl.engine.snapshot import GroupState, HostState, PoolState, SRState, VMState

GiB = 1024**3


def host(uuid: str, cpus: int = 8, mem_gib: float = 32, **kw) -> HostState:
    kw.setdefault("srs", frozenset({"sr0"}))
    kw.setdefault("networks", frozenset({"net0"}))
    return HostState(
        uuid=uuid, name=kw.pop("name", uuid), cpu_count=cpus, memory_total=int(mem_gib * GiB), **kw
    )


def vm(uuid: str, vcpus: int = 1, mem_gib: float = 1, *, on: str | None = None, **kw) -> VMState:
    m = int(mem_gib * GiB)
    kw.setdefault("srs", frozenset({"sr0"}))
    kw.setdefault("networks", frozenset({"net0"}))
    for f in ("memory_static_min", "memory_dynamic_min", "memory_dynamic_max", "memory_static_max"):
        kw.setdefault(f, m)
    if on is not None:
        kw.setdefault("power_state", "running")
        kw.setdefault("last_boot_cpu_vendor", "GenuineIntel")
        kw["resident_on"] = on
    return VMState(uuid=uuid, name=kw.pop("name", uuid), vcpus=vcpus, **kw)


def pool(n_hosts: int = 4, cpus: int = 8, mem_gib: float = 32, **kw) -> PoolState:
    p = PoolState(uuid="pool", **kw)
    p.add_sr(SRState(uuid="sr0", name="shared", shared=True))
    for i in range(n_hosts):
        p.add_host(host(f"h{i}", cpus, mem_gib, is_master=(i == 0)))
    return p


def group(p: PoolState, uuid: str, placement: str, strict: bool) -> GroupState:
    g = GroupState(uuid=uuid, name=uuid, placement=placement, strict=strict)
    p.add_group(g)
    return g
