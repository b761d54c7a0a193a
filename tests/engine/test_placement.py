import math

import pytest

from tests.engine.helpers import GiB, group, host, pool, vm
from vmctl.engine.placement import (
    MIGRATE,
    RESUME,
    START,
    Scheduler,
    batch_place,
    check_target,
    choose_host,
    explain,
)
from vmctl.engine.placement import weighers as W
from vmctl.engine.snapshot import HostState, VMState, tie_key
from vmctl.errors import VmctlError


def _code(fn):
    with pytest.raises(VmctlError) as ei:
        fn()
    return ei.value


# ---- filters, one by one, through an explicit target ------------------------------------------
@pytest.mark.parametrize(
    "change,code",
    [
        ({"live": False}, "HOST_NOT_LIVE"),
        ({"enabled": False}, "HOST_DISABLED"),
        ({"evacuating": True}, "HOST_EVACUATE_IN_PROGRESS"),
        ({"srs": frozenset()}, "VM_REQUIRES_SR"),
        ({"networks": frozenset()}, "VM_REQUIRES_NETWORK"),
        ({"cpu_count": 1}, "HOST_NOT_ENOUGH_PCPUS"),
    ],
)
def test_static_filters(change, code):
    p = pool(2)
    p.update_host("h1", **change)
    p.add_vm(vm("a", vcpus=2))
    err = _code(lambda: check_target(p, "a", "h1"))
    assert err.code == code
    check_target(p, "a", "h0")


def test_first_rejecting_filter_wins():
    p = pool(2)
    p.update_host("h1", enabled=False, srs=frozenset())
    p.add_vm(vm("a", mem_gib=100))
    assert _code(lambda: check_target(p, "a", "h1")).code == "HOST_DISABLED"


def test_vcpu_and_memory_capacity():
    p = pool(1, cpus=2, mem_gib=8)  # V_h = 8 vCPUs
    p.add_vm(vm("x", vcpus=2, mem_gib=6, on="h0"))
    p.add_vm(vm("big", vcpus=2, mem_gib=4))
    err = _code(lambda: check_target(p, "big", "h0"))
    assert err.code == "HOST_NOT_ENOUGH_FREE_MEMORY"
    assert dict(err.params) == {"needed": 4 * GiB, "available": 2 * GiB}
    p.add_vm(vm("many", vcpus=2, mem_gib=0.5))
    p.add_vm(vm("y", vcpus=2, mem_gib=0.5, on="h0"))
    p.add_vm(vm("z", vcpus=2, mem_gib=0.5, on="h0"))
    check_target(p, "many", "h0")  # 6 + 2 ≤ 8
    p.add_vm(vm("w", vcpus=2, mem_gib=0.25, on="h0"))
    err = _code(lambda: check_target(p, "many", "h0"))
    assert err.code == "HOST_NOT_ENOUGH_VCPUS" and dict(err.params) == {"needed": 2, "available": 0}


def test_memory_is_checked_before_cpus():
    """xapi_vm_helpers.assert_can_boot_here: assert_enough_memory_available runs before
    assert_enough_pcpus, so a host short of both reports memory."""
    p = pool(1, cpus=2, mem_gib=8)
    p.add_vm(vm("x", vcpus=8, mem_gib=6, on="h0"))
    p.add_vm(vm("both", vcpus=4, mem_gib=4))
    assert _code(lambda: check_target(p, "both", "h0")).code == "HOST_NOT_ENOUGH_FREE_MEMORY"
    p.add_vm(vm("wide", vcpus=3, mem_gib=4))
    assert _code(lambda: check_target(p, "wide", "h0")).code == "HOST_NOT_ENOUGH_FREE_MEMORY"
    p.add_vm(vm("wide-small", vcpus=3, mem_gib=1))
    assert _code(lambda: check_target(p, "wide-small", "h0")).code == "HOST_NOT_ENOUGH_PCPUS"


def test_host_vcpu_ratio_override():
    p = pool(1, cpus=2)
    p.update_host("h0", vcpu_ratio=1.0)
    p.add_vm(vm("a", vcpus=2, on="h0"))
    p.add_vm(vm("b", vcpus=1))
    assert _code(lambda: check_target(p, "b", "h0")).code == "HOST_NOT_ENOUGH_VCPUS"


def test_dynamic_memory_uses_m_min_and_tiers():
    p = pool(2, mem_gib=8, memory_policy="dynamic")
    p.add_vm(vm("x", mem_gib=6, memory_dynamic_min=2 * GiB, memory_static_min=GiB, on="h0"))
    # h0 holds m_min 2 GiB; a VM with m_min 4 fits (6 ≤ 8) though static sums do not.
    p.add_vm(vm("a", mem_gib=6, memory_dynamic_min=4 * GiB, memory_static_min=GiB))
    check_target(p, "a", "h0")
    # Tier: h1 fits the static sums (tier 0), h0 does not (tier 2): h1 wins despite packing.
    s = Scheduler(p, policy="pack")
    pl = s.place("a", margin=True)
    assert pl.host == "h1" and pl.tier == 0 and pl.decided_by == "tier"


def test_cpu_filter_only_when_cpu_state_is_kept():
    p = pool(2)
    p.update_host("h1", cpu_vendor="AuthenticAMD")
    p.update_host("h0", cpu_flags=frozenset({"sse"}))
    p.add_vm(
        vm(
            "a",
            power_state="suspended",
            last_boot_cpu_vendor="GenuineIntel",
            last_boot_cpu_flags=frozenset({"sse", "avx2"}),
        )
    )
    err = _code(lambda: check_target(p, "a", "h1"))
    assert err.code == "VM_INCOMPATIBLE_WITH_THIS_HOST" and dict(err.params)["reason"] == "vendor differs"
    err = _code(lambda: check_target(p, "a", "h0"))
    assert dict(err.params)["reason"] == "missing flags: avx2"
    check_target(p, "a", "h1", force=True)
    check_target(p, "a", "h1", mode=START)  # a cold boot keeps no CPU state


def test_version_filter_for_migrations_only():
    """message_forwarding VM.pool_migrate: a migration to an older host during a rolling upgrade
    is NOT_SUPPORTED_DURING_UPGRADE (XAPI's code within a pool) [host, vm]."""
    p = pool(2)
    p.update_host("h0", software_version=(2, 0, 0))
    p.update_host("h1", software_version=(1, 10, 0))
    p.add_vm(vm("a", on="h0"))
    err = _code(lambda: check_target(p, "a", "h1"))
    assert err.code == "NOT_SUPPORTED_DURING_UPGRADE" and [k for k, _ in err.params] == ["host", "vm"]
    p.update_host("h1", software_version=(2, 0, 1))
    check_target(p, "a", "h1")
    assert choose_host(p, "a").host == "h1"  # migration: never the current host


def test_upgrade_starts_only_on_newest_hosts():
    """message_forwarding VM.start_on / Xapi_vm_helpers.vm_can_run_on_host: while the hosts run
    different versions (a rolling upgrade) a VM starts or resumes only on a host of the newest
    version; with one version everywhere, anywhere."""
    p = pool(3)
    p.update_host("h0", software_version=(2, 0, 0))
    p.add_vm(vm("a"))
    assert _code(lambda: check_target(p, "a", "h1")).code == "NOT_SUPPORTED_DURING_UPGRADE"
    check_target(p, "a", "h0")
    assert choose_host(p, "a").host == "h0"
    for h in ("h1", "h2"):
        p.update_host(h, software_version=(2, 0, 0))
    check_target(p, "a", "h1")


def test_strict_rules():
    p = pool(3)
    group(p, "ga", "affinity", True)
    group(p, "gn", "anti-affinity", True)
    p.add_vm(vm("m1", on="h1", groups=("ga",)))
    p.add_vm(vm("n1", on="h2", groups=("gn",)))
    p.add_vm(vm("a", groups=("ga",)))
    p.add_vm(vm("b", groups=("gn",)))
    assert _code(lambda: check_target(p, "a", "h0")).code == "VM_GROUP_RULE_VIOLATED"
    assert choose_host(p, "a").host == "h1"
    assert _code(lambda: check_target(p, "b", "h2")).code == "VM_GROUP_RULE_VIOLATED"
    assert choose_host(p, "b").host != "h2"


def test_storage_map_counts_target_sr():
    from vmctl.engine.snapshot import VDIState

    p = pool(2)
    p.update_host("h1", srs=frozenset({"sr1"}))
    p.add_vm(vm("a", on="h0", srs=frozenset({"sr0"}), vdis=(VDIState("d1", "sr0", GiB, GiB),)))
    assert _code(lambda: check_target(p, "a", "h1")).code == "VM_REQUIRES_SR"
    check_target(p, "a", "h1", vdi_map={"d1": "sr1"})


# ---- weighers and policies ---------------------------------------------------------------------
def _two_hosts(policy):
    p = pool(2, cpus=4, mem_gib=16, policy=policy, master_bias=False)  # V = 16 vCPUs
    p.add_vm(vm("x", vcpus=4, mem_gib=8, on="h0"))
    p.add_vm(vm("a", vcpus=4, mem_gib=4))
    return p


def test_pack_prefers_fuller_host_and_score_value():
    p = _two_hosts("pack")
    pl = choose_host(p, "a")
    assert pl.host == "h0"
    um, uc = 12 / 16, 8 / 16
    assert pl.score == round(1 - math.hypot(1 - um, 1 - uc) / math.sqrt(2), 9)


def test_spread_prefers_emptier_host_and_score_value():
    pl = choose_host(_two_hosts("spread"), "a")
    assert pl.host == "h1" and pl.score == round(1 - 4 / 16, 9)


def test_balanced_score_value():
    p = _two_hosts("balanced")
    pl = choose_host(p, "a")
    # g = (8+4, 4+4) / (32, 32), normalised; s = 1 − max_d u'_d · (1 + 2·skew(u'))
    gm, gc = 12 / 32, 8 / 32
    n = math.hypot(gm, gc)
    g = (gm / n, gc / n)

    def score(u):
        sk = 1 - (u[0] * g[0] + u[1] * g[1]) / math.hypot(*u)
        return 1 - max(u) * (1 + 2 * sk)

    s0, s1 = score((0.75, 0.5)), score((0.25, 0.25))
    assert s1 > s0  # the emptier host wins: balanced spreads
    assert pl.host == "h1" and pl.score == round(s1, 9)
    # explain shows the same terms, and its base is the decision path's score
    rep = explain(p, "a")
    row = next(r for r in rep.rows if r.host == "h0")
    assert row.terms["base"] == round(s0, 9) == row.score


def _half_full_and_empty(policy):
    """h0 at 47% memory (15 of 32 GiB), h1–h3 empty: the reported case."""
    p = pool(4, cpus=8, mem_gib=32, policy=policy, master_bias=False)
    p.add_vm(vm("x", vcpus=2, mem_gib=15.04, on="h0"))
    p.add_vm(vm("a", vcpus=2, mem_gib=2))
    return p


@pytest.mark.parametrize("shape", [(2, 2), (8, 0.5), (1, 8)])  # even, CPU-heavy, memory-heavy
def test_balanced_picks_an_empty_host_over_a_half_full_one(shape):
    p = _half_full_and_empty("balanced")
    p.add_vm(vm("b", vcpus=shape[0], mem_gib=shape[1]))
    for v in ("a", "b"):
        assert choose_host(p, v).host != "h0"
    # pack consolidates onto the occupied host, as before
    assert choose_host(p, "a", policy="pack").host == "h0"


def test_balanced_avoids_stranding_a_dimension():
    # Equal headroom is not enough: hm holds memory with idle vCPUs, hc the reverse. A CPU-heavy
    # VM fits best where it uses the stranded vCPUs (hm), although spread, looking only at the
    # tightest dimension, prefers hc.
    p = pool(0, master_bias=False, policy="balanced")  # hosts of 32 GiB, 32 vCPUs
    p.add_host(host("hm"))
    p.add_host(host("hc"))
    p.add_vm(vm("m", vcpus=6, mem_gib=16, on="hm"))  # (0.50, 0.19)
    p.add_vm(vm("c", vcpus=8, mem_gib=6, on="hc"))  # (0.19, 0.25)
    p.add_vm(vm("a", vcpus=8, mem_gib=1))
    assert choose_host(p, "a", policy="spread").host == "hc"
    pl = choose_host(p, "a", margin=True)
    assert pl.host == "hm" and pl.decided_by == "score"
    rep = explain(p, "a")
    skews = {r.host: r.terms["skew"] for r in rep.rows}
    assert skews["hm"] < skews["hc"]


def _mixed_vms(p, n, seed=3):
    import random

    rng = random.Random(seed)
    names = []
    for i in range(n):
        vcpus, mem = rng.choice([(1, 1), (1, 2), (2, 4), (2, 8), (4, 8), (4, 16), (8, 4)])
        p.add_vm(vm(f"v{i:03d}", vcpus=vcpus, mem_gib=mem))
        names.append(f"v{i:03d}")
    return names


def _spread_of_load(p):
    """(hosts used, max − min memory load, max − min vCPU load) over the pool's hosts."""
    mem = [p.load(h).mem / p.mem_capacity(h) for h in p.hosts]
    cpu = [p.load(h).vcpus / p.vcpu_capacity(h) for h in p.hosts]
    used = sum(1 for h in p.hosts if p.load(h).count)
    return used, max(mem) - min(mem), max(cpu) - min(cpu)


@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "batch"])
def test_many_starts_balanced_uses_every_host_evenly_pack_consolidates(batch):
    figures = {}
    for policy in ("balanced", "spread", "pack"):
        p = pool(0, policy=policy)
        for i in range(20):  # three sizes of host, as in a real fleet
            cpus, gib = ((16, 64), (32, 128), (24, 96))[i % 3]
            p.add_host(host(f"h{i:02d}", cpus=cpus, mem_gib=gib, is_master=(i == 0)))
        names = _mixed_vms(p, 140)  # about 47% of the memory
        if batch:
            res = batch_place(p, names)
            assert not res.failures
        else:
            s = Scheduler(p)
            for v in names:
                s.commit(v, s.place(v).host)
        figures[policy] = _spread_of_load(p)
    used, mem_range, cpu_range = figures["balanced"]
    assert used == 20
    # One by one the last VMs decide (the largest is a quarter of the smallest host); a batch
    # places the largest first and ends even.
    assert mem_range <= (0.25 if not batch else 0.12)
    # The skew term evens the vCPU load too, which spread (tightest dimension only) leaves uneven.
    assert cpu_range < figures["spread"][2]
    assert figures["pack"][0] <= 8 and figures["pack"][1] == 1.0


def test_soft_groups_and_master_penalty():
    p = pool(3, policy="spread")
    group(p, "soft", "anti-affinity", False)
    p.add_vm(vm("m", on="h1", groups=("soft",)))
    p.add_vm(vm("a", groups=("soft",)))
    s = Scheduler(p)
    req = s.request(p.vms["a"])
    ok = s.feasible_mask(req)
    terms = W.score_terms(s.table, req, "spread", int(ok.sum()), full=True)
    assert terms.group.tolist() == [0.0, -0.5, 0.0]
    assert terms.master.tolist() == [-0.1, 0.0, 0.0]
    assert choose_host(p, "a").host == "h2"
    # master-bias off: the master (h0) is back in the race, decided by the tie key.
    p.master_bias = False
    exp = min(("h0", "h2"), key=lambda h: tie_key(0, "a", h))
    assert choose_host(p, "a").host == exp


def test_soft_affinity_attracts():
    p = pool(3, policy="spread", master_bias=False)
    group(p, "soft", "affinity", False)
    p.add_vm(vm("m", on="h1", groups=("soft",)))
    p.add_vm(vm("a", groups=("soft",)))
    assert choose_host(p, "a").host == "h1"


def test_affinity_host_wins_whenever_it_passes():
    p = pool(3, policy="spread")
    p.add_vm(vm("x", vcpus=8, mem_gib=20, on="h2"))
    p.add_vm(vm("a", affinity="h2"))
    pl = choose_host(p, "a", margin=True)
    assert pl.host == "h2" and pl.decided_by == "affinity"


def test_tie_break_by_tie_key_and_seed():
    p = pool(4, master_bias=False)
    p.add_vm(vm("a"))
    for seed in range(5):
        exp = min(p.hosts, key=lambda h: tie_key(seed, "a", h))
        pl = choose_host(p, "a", seed=seed, margin=True)
        assert pl.host == exp and pl.decided_by == "tie-key" and pl.margin == 0.0


def test_decision_is_independent_of_insertion_order():
    p1 = pool(0)
    p2 = pool(0)
    hs = [host(f"h{i}", mem_gib=16 + i) for i in range(6)]
    for h in hs:
        p1.add_host(h)
    for h in reversed(hs):
        p2.add_host(h)
    for p in (p1, p2):
        p.add_vm(vm("a", mem_gib=3))
    assert choose_host(p1, "a").host == choose_host(p2, "a").host


# ---- nothing fits ---------------------------------------------------------------------------------
def test_no_hosts_available_groups_codes_in_filter_order():
    p = pool(6, mem_gib=8)
    p.update_host("h5", enabled=False)
    p.update_host("h4", srs=frozenset())
    p.update_host("h3", srs=frozenset())
    p.add_vm(vm("a", mem_gib=16, name="db7"))
    err = _code(lambda: choose_host(p, "a"))
    assert err.code == "NO_HOSTS_AVAILABLE"
    assert "no host can run VM db7 (6 hosts examined)" in err.message
    assert list(err.reasons) == ["HOST_DISABLED", "VM_REQUIRES_SR", "HOST_NOT_ENOUGH_FREE_MEMORY"]
    assert err.reasons["VM_REQUIRES_SR"] == ["h3", "h4"]
    assert err.json_params["hosts-examined"] == 6
    lines = dict(err.params[1:])
    assert lines["HOST_NOT_ENOUGH_FREE_MEMORY"] == "3 hosts (h0, h1, h2)"


def test_host_summary_truncates():
    from vmctl.engine.placement.scheduler import summarize_hosts

    p = pool(6)
    assert summarize_hosts(p, ["h0", "h1", "h2", "h3", "h4"]) == "5 hosts (h0, h1, h2, … 2 more)"
    assert summarize_hosts(p, ["h0"]) == "1 host (h0)"


# ---- explain ----------------------------------------------------------------------------------------
def test_explain_rows_footer_json_and_limit():
    p = pool(5, mem_gib=8)
    p.update_host("h4", enabled=False)
    p.add_vm(vm("x", mem_gib=6, on="h3"))
    p.add_vm(vm("a", mem_gib=4, name="web"))
    rep = explain(p, "a")
    verdicts = [r.verdict for r in rep.rows]
    assert verdicts[0] == "chosen" and verdicts.count("rejected") == 2
    rejected = [r for r in rep.rows if r.verdict == "rejected"]
    assert [r.filter for r in rejected] == [2, 8]  # memory is filter 8 (before the CPUs)
    assert rejected[1].reason() == "HOST_NOT_ENOUGH_FREE_MEMORY needed=4 GiB available=2 GiB"
    assert rep.chosen == choose_host(p, "a").host
    assert rep.footer().startswith(f"chosen {rep.chosen} by ")
    assert rep.footer().endswith("policy balanced; seed 0; 3 of 5 hosts feasible")
    js = rep.to_json()
    assert set(js) == {"vm", "policy", "seed", "chosen", "decided-by", "margin", "runner-up", "hosts"}
    assert set(js["hosts"][0]) == {
        "host",
        "host-uuid",
        "verdict",
        "filter",
        "code",
        "params",
        "tier",
        "terms",
        "score",
        "rank",
    }
    assert set(js["hosts"][0]["terms"]) == {"mem", "vcpu", "base", "skew", "group", "master"}
    kept, rest = rep.limited(2)
    assert len(kept) == 2 and sum(c for _, c in rest) == 3


def test_explain_with_ha_marks_not_evaluated():
    p = pool(4, mem_gib=8, ha_enabled=True, ha_failures_to_tolerate=1)
    p.add_vm(vm("x", mem_gib=4, on="h0", ha_restart_priority="restart"))
    p.add_vm(vm("a", mem_gib=4))
    rep = explain(p, "a")
    vs = [r.verdict for r in rep.rows]
    assert vs[0] == "chosen" and "not-evaluated" in vs


# ---- HA filter (11) ---------------------------------------------------------------------------------
def test_ha_filter_rejects_host_breaking_plan():
    p = pool(2, mem_gib=8, ha_enabled=True, ha_failures_to_tolerate=1)
    p.add_vm(vm("x", mem_gib=4, on="h0", ha_restart_priority="restart"))
    p.add_vm(vm("a", mem_gib=6))
    # On h1 it would leave no room for x; on h0 there is no room. Nothing passes.
    err = _code(lambda: check_target(p, "a", "h1"))
    assert err.code == "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN"
    err = _code(lambda: choose_host(p, "a"))
    assert err.code == "NO_HOSTS_AVAILABLE"
    assert "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN" in err.reasons
    p.ha_allow_overcommit = True
    assert choose_host(p, "a").host == "h1"


# ---- chained decisions and batch placement ---------------------------------------------------------
def test_commit_updates_loads_for_chained_decisions():
    p = pool(2, mem_gib=8, policy="pack")
    for i in range(4):
        p.add_vm(vm(f"v{i}", mem_gib=4))
    s = Scheduler(p)
    hosts = []
    for i in range(4):
        pl = s.place(f"v{i}")
        s.commit(f"v{i}", pl.host)
        hosts.append(pl.host)
    assert sorted(hosts) == ["h0", "h0", "h1", "h1"]
    with pytest.raises(VmctlError):
        p.add_vm(vm("v9", mem_gib=1))
        s2 = Scheduler(p)
        s2.place("v9")


def test_batch_strict_affinity_group_is_one_item():
    p = pool(3, mem_gib=8, policy="spread")
    group(p, "g", "affinity", True)
    for i in range(3):
        p.add_vm(vm(f"g{i}", mem_gib=2, groups=("g",)))
    p.add_vm(vm("other", mem_gib=2))
    res = batch_place(p, ["g0", "g1", "g2", "other"])
    hs = res.hosts
    assert hs["g0"] == hs["g1"] == hs["g2"] and not res.failures


def test_batch_pack_is_host_centric_and_reports_failures():
    p = pool(2, cpus=2, mem_gib=8, policy="pack")  # 8 vCPUs, 8 GiB
    vms = [vm(f"v{i}", mem_gib=3) for i in range(5)] + [vm("huge", mem_gib=20)]
    for v in vms:
        p.add_vm(v)
    res = batch_place(p, [v.uuid for v in vms])
    assert res.failures["huge"][0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    placed = [h for v, h in res.placements]
    assert sorted(placed) == ["h0", "h0", "h1", "h1"]
    assert "v4" in res.failures  # 5 × 3 GiB do not fit 2 × 8 GiB


def test_batch_balanced_mixes_shapes():
    p = pool(2, cpus=4, mem_gib=8, policy="balanced", master_bias=False, vcpu_ratio=2.0)  # 8 vCPUs, 8 GiB
    names = []
    for i in range(4):
        p.add_vm(vm(f"c{i}", vcpus=3, mem_gib=1))  # CPU-heavy
        p.add_vm(vm(f"m{i}", vcpus=1, mem_gib=3))  # memory-heavy
        names += [f"c{i}", f"m{i}"]
    res = batch_place(p, names)
    assert not res.failures
    for h in ("h0", "h1"):
        kinds = sorted(v[0] for v, hh in res.placements if hh == h)
        assert kinds == ["c", "c", "m", "m"]


def test_batch_soft_anti_affinity_members_spread_first():
    p = pool(3, policy="pack")
    group(p, "s", "anti-affinity", False)
    for i in range(3):
        p.add_vm(vm(f"s{i}", groups=("s",)))
    res = batch_place(p, ["s0", "s1", "s2"])
    assert sorted(res.hosts.values()) == ["h0", "h1", "h2"]


def test_batch_ha_order_puts_restart_first():
    p = pool(1, mem_gib=4, policy="spread")
    p.add_vm(vm("a", mem_gib=3, ha_restart_priority="best-effort"))
    p.add_vm(vm("b", mem_gib=3, ha_restart_priority="restart"))
    s = Scheduler(p)
    from vmctl.engine.placement import place_batch

    res = place_batch(s, ["a", "b"], ha_order=True)
    assert res.hosts == {"b": "h0"} and "a" in res.failures


def test_migrate_mode_batch_moves():
    p = pool(3, policy="spread")
    p.add_vm(vm("a", on="h0"))
    p.add_vm(vm("b", on="h0"))
    res = batch_place(p, ["a", "b"], mode=MIGRATE, exclude=("h0",))
    assert set(res.hosts.values()) == {"h1", "h2"}
    assert p.vms["a"].power_state == "running" and p.load("h0").count == 0


def test_resume_mode_inferred():
    from vmctl.engine.placement import mode_for

    assert mode_for(VMState(uuid="x", power_state="suspended")) == RESUME
    assert mode_for(VMState(uuid="x")) == START
    assert isinstance(HostState(uuid="h"), HostState)


# ---- consolidation (pack): occupied hosts first, then the largest empty host --------------------
def test_pack_prefers_occupied_then_largest_empty():
    p = pool(0, master_bias=False, policy="pack")
    p.add_host(host("small", mem_gib=16))
    p.add_host(host("big", mem_gib=64, cpus=16))
    p.add_host(host("mid", mem_gib=32))
    p.add_vm(vm("a", mem_gib=2))
    pl = choose_host(p, "a", margin=True)
    assert pl.host == "big" and pl.decided_by == "capacity"
    p.start_on("a", "mid")
    p.add_vm(vm("b", mem_gib=2))
    pl = choose_host(p, "b", margin=True)
    assert pl.host == "mid" and pl.decided_by == "occupancy"
    # the spreading policies keep the pure score ranking: the emptiest host after placement.
    for policy in ("spread", "balanced"):
        pl = choose_host(p, "b", policy=policy, margin=True)
        assert pl.host == "big" and pl.decided_by == "score"


def test_scarce_connectivity_left_to_vms_that_need_it():
    p = pool(0, master_bias=False, policy="pack")
    p.add_host(host("plain", networks=frozenset({"net0"})))
    p.add_host(host("rich", networks=frozenset({"net0", "net1"})))
    p.add_vm(vm("a"))
    p.add_vm(vm("b", networks=frozenset({"net0", "net1"})))
    assert choose_host(p, "a").host == "plain"
    assert choose_host(p, "b").host == "rich"


def test_explain_when_nothing_fits_and_for_a_migration():
    p = pool(2, mem_gib=4)
    p.add_vm(vm("big", mem_gib=8))
    rep = explain(p, "big")
    assert rep.chosen is None and all(r.verdict == "rejected" for r in rep.rows)
    assert rep.footer().startswith("no host chosen")
    p.add_vm(vm("run", on="h0"))
    rep = explain(p, "run")
    assert [r.host for r in rep.rows] == ["h1"] and rep.chosen == "h1" and rep.examined == 1
