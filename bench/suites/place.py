"""Online placement (P1 on S1, P2 on S2): one decision per VM, committed before the next."""

from __future__ import annotations

import time

from bench import common, scenarios
from bench.baselines import NovaLike

SUITE = "place"
DEFAULT_SCENARIO = "S1"
SCENARIOS = ("ci", "S1", "S2")
ENGINES = ["vmctl", "nova-ff", "nova-spread"]


def _run_engine(name: str, sc: scenarios.Scenario) -> tuple[dict, list[int]]:
    pool = sc.pool.copy()
    common.quiesce()
    t0 = time.perf_counter_ns()
    ns: list[int] = []
    rejections = 0
    clock = time.perf_counter_ns
    if name.startswith("vmctl"):
        from vmctl.engine.placement import Scheduler

        policy = name.split("-", 1)[1] if "-" in name else None
        s = Scheduler(pool, policy=policy)
        setup = clock() - t0
        vms = pool.vms
        for vu in sc.vm_order:
            a = clock()
            v = vms[vu]
            pl = s.place_request(s.request(v))
            if pl is None:
                rejections += 1
            else:
                s.commit(vu, pl.host)
            ns.append(clock() - a)
        hosts = int((s.table.count > 0).sum())
    else:
        b = NovaLike(pool, sc.host_order, "ff" if name == "nova-ff" else "spread")
        setup = clock() - t0
        vms = pool.vms
        for vu in sc.vm_order:
            a = clock()
            v = vms[vu]
            h = b.place(v)
            if h is None:
                rejections += 1
            else:
                b.commit(v, h)
            ns.append(clock() - a)
        hosts = b.nonempty
    return {
        "decisions": len(sc.vm_order),
        "rejections": rejections,
        "hosts": hosts,
        "setup-ms": round(setup / 1e6, 2),
    }, ns


def run(ctx: common.Context) -> common.SuiteResult:
    if ctx.scenario == "S2":
        sc = scenarios.s2(ctx.seed, ctx.trace_dir)
        gid, ref_rate, ref_p99 = "P2", 5000, 500
    else:
        sc = scenarios.s1(ctx.seed, ctx.trace_dir, ci=ctx.ci)
        gid, ref_rate, ref_p99 = "P1", 10000, 250
    engines = ctx.engines_or(ENGINES)
    if "nova-ff" not in engines:
        engines.append("nova-ff")
    res = common.SuiteResult(SUITE, ctx.scenario)
    res.timing = {"decisions/s", "p50-us", "p99-us", "setup-ms"}
    quality: dict[str, dict] = {}
    timings: dict[str, list[dict]] = {e: [] for e in engines}
    for r in range(ctx.repeat):
        order = engines[r % len(engines) :] + engines[: r % len(engines)]  # rotate between repeats
        for e in order:
            q, ns = _run_engine(e, sc)
            t = common.timing_summary(ns)
            t["setup-ms"] = q.pop("setup-ms")
            if e in quality and quality[e] != q:
                raise AssertionError(f"{e}: quality differs between repeats: {quality[e]} vs {q}")
            quality[e] = q
            timings[e].append(t)
    for e in engines:
        res.engines[e] = {**quality[e], **common.median_of(timings[e])}
    caps = [(sc.pool.mem_capacity(h), sc.pool.vcpu_capacity(h)) for h in sc.host_order]
    dem = [(v.m_st, v.vcpus) for v in sc.pool.vms.values()]
    res.lower_bound = scenarios.lower_bound(dem, caps)
    main = "vmctl" if "vmctl" in engines else engines[0]
    me, ff = res.engines[main], res.engines["nova-ff"]
    ratio = me["decisions/s"] / ff["decisions/s"] if ff["decisions/s"] else 0.0
    res.goals = [
        common.Goal(gid, "decisions/s ≥ 3.0 × nova-ff", round(ratio, 2), ratio >= 3.0, "timing"),
        common.Goal(
            gid,
            "p99 ≤ nova-ff p99",
            f"{me['p99-us']} µs vs {ff['p99-us']} µs",
            me["p99-us"] <= ff["p99-us"],
            "timing",
        ),
        common.Goal(gid, "0 rejections", me["rejections"], me["rejections"] == 0),
        common.Goal(
            gid, "non-empty hosts ≤ nova-ff", f"{me['hosts']} vs {ff['hosts']}", me["hosts"] <= ff["hosts"]
        ),
        common.Goal(
            gid,
            f"≥ {ref_rate:,} decisions/s (reference)",
            me["decisions/s"],
            me["decisions/s"] >= ref_rate,
            "absolute",
        ),
        common.Goal(
            gid, f"p99 ≤ {ref_p99} µs (reference)", me["p99-us"], me["p99-us"] <= ref_p99, "absolute"
        ),
    ]
    res.notes.append(
        f"{len(sc.host_order)} hosts, {len(sc.vm_order)} VMs; engine `vmctl` = pool policy "
        f"{sc.pool.policy}; HA admission off (placement only)"
    )
    return res
