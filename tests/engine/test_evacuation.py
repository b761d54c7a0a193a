"""Evacuation planning (engine.md §4.4) and its caps (§4.3)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmctl.engine import evacuate as ev
from vmctl.engine import waves as wv
from vmctl.engine.snapshot import (
    GroupState,
    HostState,
    NetworkState,
    PoolState,
    SRState,
    VDIState,
    VMState,
)
from vmctl.errors import VmctlError

MiB = 1024**2
GiB = 1024**3
FLAVORS = [(1, 2), (2, 4), (2, 8), (4, 8), (4, 16), (8, 32), (1, 1), (16, 64)]


def make_vm(uuid: str, vcpus: int, gib: float, **kw) -> VMState:
    m = int(gib * GiB)
    kw.setdefault("srs", frozenset({"shared"}))
    kw.setdefault("networks", frozenset({"net0"}))
    kw.setdefault("last_boot_cpu_vendor", "GenuineIntel")
    return VMState(
        uuid=uuid,
        name=kw.pop("name", uuid),
        vcpus=vcpus,
        memory_static_min=m,
        memory_dynamic_min=m,
        memory_dynamic_max=m,
        memory_static_max=m,
        memory_overhead=(4 + vcpus) * MiB + m // 128,
        **kw,
    )


def random_pool(
    seed: int,
    hosts: int = 8,
    vms: int = 60,
    *,
    groups: bool = True,
    local: bool = True,
    immobile: bool = True,
    fill: float = 1.0,
    mixed: bool = True,
) -> PoolState:
    """A feasible random pool: hosts of a few sizes (some on 1 Gbit/s links), one shared SR and a
    local SR per host, strict and soft groups, a few immobile VMs and VMs on local storage."""
    r = random.Random(seed)
    p = PoolState(uuid=f"pool-{seed}", name="pool")
    p.add_network(NetworkState(uuid="net0", name="mgmt", management=True))
    names = [f"h{i:02d}" for i in range(hosts)]
    p.add_sr(SRState(uuid="shared", name="nfs", shared=True, hosts=frozenset(names)))
    for i, h in enumerate(names):
        cores, mem = ((16, 96), (24, 144), (32, 192))[i % 3] if mixed else (32, 192)
        speed = 1000 if mixed and i % 4 == 3 else 10_000
        p.add_sr(SRState(uuid=f"local-{h}", name=f"local-{h}", hosts=frozenset({h})))
        p.add_host(
            HostState(
                uuid=h,
                name=h,
                cpu_count=cores,
                memory_total=mem * GiB,
                memory_overhead=GiB,
                srs=frozenset({"shared", f"local-{h}"}),
                networks=frozenset({"net0"}),
                pif_speeds=(("net0", speed),),
                is_master=(i == 0),
            )
        )
    if groups:
        p.add_group(GroupState(uuid="g-anti", name="anti", placement="anti-affinity", strict=True))
        p.add_group(GroupState(uuid="g-aff", name="aff", placement="affinity", strict=True))
        p.add_group(GroupState(uuid="g-soft", name="soft", placement="anti-affinity", strict=False))
    for j in range(vms):
        c, g = r.choice(FLAVORS)
        grp: tuple[str, ...] = ()
        if groups:
            x = r.random()
            grp = ("g-anti",) if x < 0.08 else ("g-aff",) if x < 0.12 else ("g-soft",) if x < 0.2 else ()
        vm = make_vm(f"vm-{j:04d}", c, g, groups=grp)
        if immobile and r.random() < 0.03:
            vm = replace(vm, immobile=True)
        order = names[:]
        r.shuffle(order)
        if "g-aff" in grp:
            on = sorted({v.resident_on for v in p.vms.values() if "g-aff" in v.groups and v.resident_on})
            order = on or order
        for h in order:
            if p.free_memory(h) < vm.m_st * (1 / fill) or p.free_vcpus(h) < vm.vcpus:
                continue
            if "g-anti" in grp and any(v.resident_on == h for v in p.vms.values() if "g-anti" in v.groups):
                continue
            if local and r.random() < 0.05:
                vm = replace(
                    vm,
                    srs=frozenset({f"local-{h}", "shared"}),
                    vdis=(
                        VDIState(f"vdi-{j}", f"local-{h}", 20 * GiB, 5 * GiB),
                        VDIState(f"vdi-{j}-b", "shared", 10 * GiB, GiB),
                    ),
                )
            vm = replace(vm, power_state="running" if r.random() > 0.1 else "paused", resident_on=h)
            break
        p.add_vm(vm)
    return p


# --- an independent checker (not the engine's filters) ----------------------------------------------


def check_final_state(pool: PoolState, evacuated: str, affinity: bool = True) -> list[str]:
    """Capacity and strict rules, recomputed from the VMs. Within an evacuation the members of an
    affinity item may travel in different waves, so per-wave checks pass affinity=False."""
    errors = []
    mem: dict[str, int] = {h: 0 for h in pool.hosts}
    cpu: dict[str, int] = {h: 0 for h in pool.hosts}
    for v in pool.vms.values():
        if v.power_state in ("running", "paused") and v.resident_on:
            mem[v.resident_on] += v.memory_static_max + v.memory_overhead
            cpu[v.resident_on] += v.vcpus
            if v.vcpus > pool.hosts[v.resident_on].cpu_count:
                errors.append(f"pcpus {v.uuid}")
    for h, host in pool.hosts.items():
        cap_m = host.memory_total - host.memory_overhead - host.memory_reserved
        cap_c = int(host.cpu_count * (host.vcpu_ratio or pool.vcpu_ratio) + 1e-9)
        if mem[h] > cap_m:
            errors.append(f"memory {h} {mem[h]} > {cap_m}")
        if cpu[h] > cap_c:
            errors.append(f"vcpus {h} {cpu[h]} > {cap_c}")
    for g, grp in pool.groups.items():
        if not grp.strict:
            continue
        where = [
            v.resident_on
            for v in pool.vms.values()
            if g in v.groups and v.power_state in ("running", "paused")
        ]
        if grp.placement == "anti-affinity" and len(where) != len(set(where)):
            errors.append(f"anti-affinity {g}")
        if affinity and grp.placement == "affinity" and len(set(where)) > 1:
            errors.append(f"affinity {g}")
    return errors


def check_waves(pool: PoolState, plan: ev.EvacuationPlan) -> list[str]:
    errors = []
    for n, wave in enumerate(plan.schedule.waves, start=1):
        host_use: dict[str, int] = {}
        link_use: dict[str, int] = {}
        sr_use: dict[str, int] = {}
        for i in wave:
            m = plan.moves[i]
            assert m.wave == n
            hc = 4 if m.storage_motion else 1
            for h in {m.src, m.dst}:
                host_use[h] = host_use.get(h, 0) + hc
                link_use[h] = link_use.get(h, 0) + 1
            vm = pool.vms[m.vm]
            for sr in vm.srs:
                moved = any(d.sr == sr and d.uuid in plan.storage_map for d in vm.vdis)
                sr_use[sr] = sr_use.get(sr, 0) + (16 if moved else 1)
            if m.storage_motion:
                for t in {plan.storage_map[d.uuid] for d in vm.vdis if d.uuid in plan.storage_map}:
                    sr_use[t] = sr_use.get(t, 0) + 16
        for h, u in host_use.items():
            if u > 8:
                errors.append(f"wave {n}: host {h} {u}")
        for h, u in link_use.items():
            speed = pool.hosts[h].pif_speed("net0")
            if u > (4 if speed and speed < 10_000 else 8):
                errors.append(f"wave {n}: link {h} {u}")
        for s, u in sr_use.items():
            if u > 128:
                errors.append(f"wave {n}: sr {s} {u}")
    return errors


# --- unit tests -------------------------------------------------------------------------------------


def small_pool() -> PoolState:
    p = random_pool(0, hosts=3, vms=0, groups=False)
    p.add_vm(replace(make_vm("a", 2, 8, name="alpha"), power_state="running", resident_on="h00"))
    p.add_vm(replace(make_vm("b", 4, 16, name="beta"), power_state="paused", resident_on="h00"))
    p.add_vm(replace(make_vm("c", 1, 2, name="gamma"), power_state="halted"))
    p.add_vm(replace(make_vm("d", 1, 2, name="delta"), power_state="running", resident_on="h01"))
    return p


def test_plan_moves_running_and_paused_vms_only():
    p = small_pool()
    plan = ev.plan_evacuation(p, "h00")
    assert sorted(m.vm for m in plan.moves) == ["a", "b"]
    assert all(m.dst in ("h01", "h02") for m in plan.moves)
    # longest solo time first
    assert plan.moves[0].vm == "b"
    assert plan.makespan == pytest.approx(sum(plan.schedule.wave_times))
    assert plan.footer().startswith("2 VMs, ")
    assert set(plan.rows()[0]) == {"wave", "vm", "name-label", "to", "memory", "bytes", "time", "downtime"}
    assert plan.targets == {m.vm: m.dst for m in plan.moves}
    # the snapshot is untouched
    assert p.vms["a"].resident_on == "h00" and not p.hosts["h00"].evacuating
    assert ev.vms_preventing_evacuation(p, "h00") == []


def test_immobile_vm_refuses_with_per_vm_lines():
    p = small_pool()
    p.update_vm("a", immobile=True)
    with pytest.raises(VmctlError) as e:
        ev.plan_evacuation(p, "h00")
    err = e.value
    assert err.code == "CANNOT_EVACUATE_HOST"
    assert err.params == [("alpha", "VM_IS_IMMOBILE vm=alpha")]
    rows = ev.vms_preventing_evacuation(p, "h00")
    assert [(b.uuid, b.code) for b in rows] == [("a", "VM_IS_IMMOBILE")]
    assert rows[0].reason == "VM_IS_IMMOBILE,a"


def test_local_storage_requires_sr_unless_shared_target():
    p = small_pool()
    vm = p.vms["a"]
    p.set_vm(
        replace(
            vm,
            srs=frozenset({"local-h00", "shared"}),
            vdis=(VDIState("disk", "local-h00", 10 * GiB, 3 * GiB),),
        )
    )
    rows = ev.vms_preventing_evacuation(p, "h00")
    assert [(b.uuid, b.code) for b in rows] == [("a", "VM_REQUIRES_SR")]
    assert dict(rows[0].params)["sr"].uuid == "local-h00"
    plan = ev.plan_evacuation(p, "h00", sr="shared")
    a = next(m for m in plan.moves if m.vm == "a")
    assert a.storage_motion and plan.storage_map == {"disk": "shared"}
    assert a.prediction.storage_bytes == 3 * GiB
    with pytest.raises(VmctlError) as e:
        ev.plan_evacuation(p, "h00", sr="local-h01")
    assert e.value.code == "INVALID_VALUE"
    scratch = p.copy()
    ev.apply_plan(scratch, plan)
    assert scratch.vms["a"].srs == frozenset({"shared"}) and scratch.vms["a"].resident_on == a.dst


def test_no_room_names_each_vm():
    """xapi_host.compute_evacuation_plan_no_wlb: with no other enabled host to go to, every VM's
    reason is NO_HOSTS_AVAILABLE [vm]."""
    p = small_pool()
    for h in ("h01", "h02"):
        p.update_host(h, enabled=False)
    with pytest.raises(VmctlError) as e:
        ev.plan_evacuation(p, "h00")
    names = [k for k, _ in e.value.params]
    assert names == ["alpha", "beta"]
    assert all(v.startswith("NO_HOSTS_AVAILABLE vm=") for _, v in e.value.params)
    assert sorted(b.uuid for b in e.value.blockers) == ["a", "b"]


def test_version_and_cpu_filters_apply():
    p = small_pool()
    p.update_host("h00", software_version=(2, 0, 0))
    p.update_host("h01", software_version=(1, 0, 0))
    p.update_host("h02", software_version=(2, 1, 0), cpu_vendor="AuthenticAMD")
    rows = ev.vms_preventing_evacuation(p, "h00")
    assert {b.code for b in rows} <= {
        "NOT_SUPPORTED_DURING_UPGRADE",  # an older host: XAPI's rolling-upgrade rule
        "VM_INCOMPATIBLE_WITH_THIS_HOST",
    }
    assert len(rows) == 2
    p.update_host("h02", cpu_vendor="GenuineIntel")
    plan = ev.plan_evacuation(p, "h00")
    assert {m.dst for m in plan.moves} == {"h02"}


def test_strict_anti_affinity_respected():
    p = random_pool(1, hosts=3, vms=0, groups=True)
    for i, h in enumerate(("h00", "h01", "h02")):
        p.add_vm(replace(make_vm(f"x{i}", 1, 2, groups=("g-anti",)), power_state="running", resident_on=h))
    rows = ev.vms_preventing_evacuation(p, "h00")
    assert [(b.uuid, b.code) for b in rows] == [("x0", "VM_GROUP_RULE_VIOLATED")]


def test_ha_refusal_names_the_pool():
    from vmctl.engine import ha

    p = random_pool(2, hosts=3, vms=0, groups=False, mixed=False)
    # three protected 70 GiB VMs, one per host (191 GiB each): after h00 is emptied, losing the
    # host holding two of them leaves 140 GiB for the 121 GiB free on the last one
    for i, h in enumerate(("h00", "h01", "h02")):
        p.add_vm(
            replace(
                make_vm(f"p{i}", 2, 70, ha_restart_priority="restart"), power_state="running", resident_on=h
            )
        )
    p.ha_enabled = True
    p.ha_failures_to_tolerate = 1
    assert ha.admission_error(p) is None
    rows = ev.vms_preventing_evacuation(p, "h00")
    assert len(rows) == 1 and rows[0].cls == "pool" and rows[0].uuid == p.uuid
    assert rows[0].code == "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN"
    with pytest.raises(VmctlError) as e:
        ev.plan_evacuation(p, "h00")
    assert e.value.code == "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN"
    # without admission control it plans
    assert len(ev.plan_evacuation(p, "h00", ha=False).moves) == 1


def test_waves_on_a_slow_link_and_determinism():
    p = random_pool(3, hosts=8, vms=45, groups=False, immobile=False, local=False)
    h = "h03"  # 1 Gbit/s: link cap 4
    plan = ev.plan_evacuation(p, h)
    assert all(len(w) <= 4 for w in plan.schedule.waves)
    again = ev.plan_evacuation(p, h)
    assert again.rows() == plan.rows() and again.makespan == plan.makespan
    # the engine keeps the width with the smallest makespan among converging ones
    for _w, makespan, bad in plan.schedule.widths:
        if bad == 0:
            assert round(plan.makespan, 9) <= round(makespan, 9)


def test_unknown_host():
    with pytest.raises(VmctlError) as e:
        ev.plan_evacuation(small_pool(), "nope")
    assert e.value.code == "UUID_INVALID"


@pytest.mark.parametrize("policy", ["spread", "pack", "balanced"])
def test_policies(policy):
    p = random_pool(4, hosts=6, vms=60, groups=True, immobile=False, local=False)
    host = max(sorted(p.hosts), key=lambda h: p.load(h).mem)
    try:
        plan = ev.plan_evacuation(p, host, policy=policy)
    except VmctlError as e:
        assert e.code == "CANNOT_EVACUATE_HOST"
        return
    scratch = p.copy()
    ev.apply_plan(scratch, plan)
    assert check_final_state(scratch, host) == []
    assert scratch.resident_vms(host) == []


def test_balanced_evacuation_spreads_pack_consolidates():
    dests = {}
    for policy in ("balanced", "pack"):
        p = random_pool(0, hosts=4, vms=0, groups=False, mixed=False)
        p.master_bias = False
        p.add_vm(replace(make_vm("other", 2, 4), power_state="running", resident_on="h01"))
        for i in range(3):
            p.add_vm(replace(make_vm(f"v{i}", 2, 8), power_state="running", resident_on="h00"))
        plan = ev.plan_evacuation(p, "h00", policy=policy)
        dests[policy] = sorted(m.dst for m in plan.moves)
    # balanced: one VM per host (h01, holding 4 GiB, is still the least loaded after one VM);
    # pack: all onto the occupied host
    assert dests["balanced"] == ["h01", "h02", "h03"]
    assert dests["pack"] == ["h01", "h01", "h01"]


# --- property test --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    hosts=st.integers(2, 9),
    vms=st.integers(0, 90),
    policy=st.sampled_from([None, "spread", "pack", "balanced"]),
    use_sr=st.booleans(),
)
def test_evacuation_never_violates_capacity_rules_or_caps(seed, hosts, vms, policy, use_sr):
    # up to about 7 VMs per host keeps most draws evacuable; fuller pools exercise refusals
    p = random_pool(seed, hosts=hosts, vms=min(vms, 7 * hosts) if seed % 3 else vms)
    host = f"h{seed % hosts:02d}"
    on_h = {v.uuid for v in p.resident_vms(host)}
    try:
        plan = ev.plan_evacuation(p, host, policy=policy, sr="shared" if use_sr else None)
    except VmctlError as e:
        assert e.code == "CANNOT_EVACUATE_HOST"
        named = {b.uuid for b in e.blockers}
        assert named and named <= on_h
        assert {v.uuid for v in p.resident_vms(host) if v.immobile} <= named
        if not use_sr:
            assert {v.uuid for v in p.resident_vms(host) if ev.local_srs(p, v, host)} <= named
        assert [
            b.uuid
            for b in ev.vms_preventing_evacuation(p, host, policy=policy, sr="shared" if use_sr else None)
        ] == [b.uuid for b in e.blockers]
        return
    assert {m.vm for m in plan.moves} == on_h
    assert all(m.dst != host for m in plan.moves)
    scratch = p.copy()
    ev.apply_plan(scratch, plan)
    assert check_final_state(scratch, host) == []
    assert check_waves(p, plan) == []
    assert [i for w in plan.schedule.waves for i in w] == list(range(len(plan.moves)))
    # capacity and anti-affinity hold after every wave too
    step = p.copy()
    for wave in plan.schedule.waves:
        for i in wave:
            m = plan.moves[i]
            step.move_to(m.vm, m.dst)
        assert check_final_state(step, host, affinity=False) == []


def test_caps_are_the_documented_ones():
    assert (wv.HOST_CAP, wv.LINK_CAP_SLOW, wv.LINK_CAP_FAST, wv.SR_CAP) == (8, 4, 8, 128)
