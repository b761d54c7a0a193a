import hashlib

from vmctl.engine.snapshot import HostState, PoolState, VMState, tie_key

GiB = 1024**3


def _pool() -> PoolState:
    p = PoolState(uuid="p")
    p.add_host(HostState(uuid="h1", cpu_count=4, memory_total=10 * GiB, memory_overhead=GiB, is_master=True))
    p.add_host(HostState(uuid="h2", cpu_count=4, memory_total=10 * GiB, vcpu_ratio=1.0))
    return p


def test_loads_count_resident_and_scheduled_at_both_ends():
    p = _pool()
    p.add_vm(
        VMState(
            uuid="a",
            power_state="running",
            resident_on="h1",
            scheduled_on="h2",
            vcpus=2,
            memory_static_max=2 * GiB,
            memory_dynamic_max=2 * GiB,
            memory_overhead=GiB,
        )
    )
    p.add_vm(VMState(uuid="b", power_state="halted", vcpus=2, memory_static_max=GiB))
    assert p.load("h1").mem == 3 * GiB and p.load("h2").mem == 3 * GiB
    assert p.load("h1").vcpus == 2
    assert p.master == "h1"
    assert p.vcpu_capacity("h1") == 16 and p.vcpu_capacity("h2") == 4
    assert p.mem_capacity("h1") == 9 * GiB


def test_copy_is_independent_and_incremental_loads_match_rebuild():
    p = _pool()
    p.add_vm(VMState(uuid="a", power_state="halted", vcpus=1, memory_static_max=GiB, groups=("g",)))
    p.loads()
    q = p.copy()
    q.start_on("a", "h2")
    assert p.load("h2").count == 0 and q.load("h2").count == 1
    assert q.group_hosts("g") == {"h2": 1}
    fresh = q.load("h2").mem
    q.invalidate()
    assert q.load("h2").mem == fresh
    q.halt("a")
    assert q.load("h2").count == 0 and q.group_hosts("g") == {}


def test_copies_share_loads_until_either_side_changes_them():
    """copy() shares the per-host load objects (copy on write): a change on either side, to
    any host, never shows on the other, and both stay equal to a rebuild."""
    import random

    def values(ps):
        return {h: tuple(getattr(ld, k) for k in type(ld).__slots__) for h, ld in ps.loads().items()}

    def rebuilt(ps):
        fresh = ps.copy()
        fresh.invalidate()
        return values(fresh)

    r = random.Random(7)
    p = _pool()
    for i in range(12):
        p.add_vm(
            VMState(
                uuid=f"v{i}",
                power_state="halted",
                vcpus=1,
                memory_static_max=GiB // 4,
                groups=("g",) if i % 3 == 0 else (),
            )
        )
    p.loads()
    states = [p]
    for _ in range(60):
        src = r.choice(states)
        if r.random() < 0.3:
            states.append(src.copy())
            continue
        before = [values(s) for s in states]
        vm = f"v{r.randrange(12)}"
        if src.vms[vm].power_state == "halted":
            src.start_on(vm, r.choice(["h1", "h2"]))
        else:
            src.halt(vm)
        for s, b in zip(states, before):
            if s is not src:
                assert values(s) == b  # untouched
        assert values(src) == rebuilt(src)


def test_dynamic_policy_memory_terms():
    v = VMState(
        uuid="v",
        memory_static_max=8,
        memory_dynamic_max=6,
        memory_dynamic_min=2,
        memory_reservation=3,
        memory_overhead=1,
    )
    assert (v.m_st, v.m_max, v.m_min) == (9, 7, 4)
    assert v.m("none") == 9 and v.m("dynamic") == 4


def test_tie_key():
    assert tie_key(0, "v", "h") == hashlib.sha256(b"0:v:h").digest()[:8]


def test_cpu_levelling():
    from vmctl.engine.snapshot import boot_cpu, pool_cpu_flags

    p = PoolState(uuid="p")
    p.add_host(HostState(uuid="a", cpu_flags=frozenset({"sse", "avx", "avx2"}), is_master=True))
    p.add_host(HostState(uuid="b", cpu_flags=frozenset({"sse", "avx"})))
    p.add_host(HostState(uuid="c", cpu_vendor="AuthenticAMD", cpu_flags=frozenset({"sse"})))
    assert pool_cpu_flags(p) == {"sse", "avx"}
    assert boot_cpu(p, "a") == ("GenuineIntel", frozenset({"sse", "avx"}))
    assert boot_cpu(p, "c") == ("AuthenticAMD", frozenset({"sse"}))
    p.cpu_levelling = False
    assert boot_cpu(p, "a")[1] == {"sse", "avx", "avx2"}
