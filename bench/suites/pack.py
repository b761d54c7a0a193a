"""Offline packing (P4): the peak snapshot on an unbounded fleet of identical hosts (64 cores,
vCPU ratio 4.0 — and 1.0 for the CPU-bound variant — 512 GiB), batch placement (§2.3) against
``ffd-sum``. The ``ci`` scenario packs the peak snapshot of the first 288 lines of the replay.

The targets are the dense policy's (``pack``); ``balanced`` spreads over the whole fleet and is
reported in full runs with the spreading figures (hosts used, memory-load range, σ)."""

from __future__ import annotations

import math
import time

from bench import common, scenarios
from bench.baselines import ffd_sum

SUITE = "pack"
DEFAULT_SCENARIO = "S1"  # the full peak snapshot (not tied to the S1 fleet; any non-ci scenario)
SCENARIOS = ("ci", "S1", "S2", "C96")
ENGINES = ["pack", "balanced", "ffd-sum"]
GATED = ("pack", "ffd-sum")
CI_LINES = 288


def _fleet(seed: int, ratio: float, demands, lb_hint: int) -> scenarios.Scenario:
    n = math.ceil(lb_hint * 1.25) + 5  # "unbounded": more hosts than any engine needs
    return scenarios.build_pool(seed, [(64, 512)] * n, demands, ratio=ratio, name=f"pack-r{ratio:g}")


def _lb(sc: scenarios.Scenario) -> int:
    caps = [(sc.pool.mem_capacity(h), sc.pool.vcpu_capacity(h)) for h in sc.host_order[:1]]
    mem = sum(v.m_st for v in sc.pool.vms.values())
    cpu = sum(v.vcpus for v in sc.pool.vms.values())
    return max(math.ceil(mem / caps[0][0]), math.ceil(cpu / caps[0][1]))


def _run(engine: str, sc: scenarios.Scenario) -> dict:
    pool = sc.pool.copy()
    vms = [pool.vms[u] for u in sc.vm_order]
    t0 = time.perf_counter()
    if engine == "ffd-sum":
        placed, unplaced = ffd_sum(pool, sc.host_order, vms)
        hosts = len(set(placed.values()))
        failures = len(unplaced)
        mem: dict[str, int] = {}
        cpu: dict[str, int] = {}
        for vu, h in placed.items():
            v = pool.vms[vu]
            mem[h] = mem.get(h, 0) + v.m_st
            cpu[h] = cpu.get(h, 0) + v.vcpus
        spread = common.load_spread(
            (mem.get(h, 0) / pool.mem_capacity(h), cpu.get(h, 0) / pool.vcpu_capacity(h))
            for h in sc.host_order
        )
    else:
        from vmctl.engine.placement import Scheduler, place_batch

        s = Scheduler(pool, policy=engine)
        res = place_batch(s, sc.vm_order, ha=False)
        hosts = int((s.table.count > 0).sum())
        failures = len(res.failures)
        # Independent capacity check: no host over capacity in any dimension.
        assert (s.table.free_mem >= 0).all() and (s.table.free_vcpu >= 0).all()
        spread = common.load_spread(common.table_loads(s.table))
    return {
        "hosts": hosts,
        "unplaced": failures,
        **spread,
        "time-s": round(time.perf_counter() - t0, 3),
    }


def run(ctx: common.Context) -> common.SuiteResult:
    pk = scenarios.peak(ctx.trace_dir, ctx.seed, CI_LINES if ctx.ci else None)
    demands = scenarios.demands_of(pk)
    res = common.SuiteResult(SUITE, ctx.scenario)
    res.timing = {"time-s"}
    # ci keeps the gated engines only (balanced is reported in full runs).
    engines = ctx.engines_or([e for e in ENGINES if e in GATED] if ctx.ci else ENGINES)
    for e in GATED:
        if e not in engines:
            engines.append(e)
    lbs = {}
    for ratio in (4.0, 1.0):
        probe = scenarios.build_pool(ctx.seed, [(64, 512)], demands, ratio=ratio)
        lb = _lb(probe)
        sc = _fleet(ctx.seed, ratio, demands, lb)
        lbs[f"ratio-{ratio:g}"] = lb
        for e in engines:
            runs = []
            for _ in range(ctx.repeat):
                runs.append(_run(e, sc))
            q = {k: v for k, v in runs[0].items() if k != "time-s"}
            for r in runs[1:]:
                assert {k: v for k, v in r.items() if k != "time-s"} == q, (
                    "pack results differ between repeats"
                )
            res.engines[f"{e} (ratio {ratio:g})"] = {
                **q,
                "lb": lb,
                "time-s": sorted(r["time-s"] for r in runs)[len(runs) // 2],
            }
    res.lower_bound = lbs
    b4, f4 = res.engines["pack (ratio 4)"], res.engines["ffd-sum (ratio 4)"]
    b1 = res.engines["pack (ratio 1)"]
    lim4 = math.ceil(1.01 * lbs["ratio-4"])
    lim1 = math.ceil(1.01 * lbs["ratio-1"])
    res.goals = [
        common.Goal(
            "P4",
            f"pack hosts ≤ ⌈1.01·LB⌉ = {lim4} (ratio 4.0)",
            b4["hosts"],
            b4["hosts"] <= lim4 and b4["unplaced"] == 0,
        ),
        # At small scale 0.94 × ffd-sum can fall below LB itself (the ci peak: ffd-sum 89, LB 84):
        # the goal is then unattainable and reported as information only.
        common.Goal(
            "P4",
            "pack hosts ≤ 0.94 × ffd-sum (ratio 4.0)"
            + ("" if 0.94 * f4["hosts"] >= lbs["ratio-4"] else " [unattainable: 0.94 × ffd-sum < LB]"),
            f"{b4['hosts']} vs {f4['hosts']} ({b4['hosts'] / max(1, f4['hosts']):.3f})",
            b4["hosts"] <= 0.94 * f4["hosts"],
            "quality" if 0.94 * f4["hosts"] >= lbs["ratio-4"] else "info",
        ),
        common.Goal(
            "P4",
            f"pack hosts ≤ ⌈1.01·LB⌉ = {lim1} (ratio 1.0)",
            b1["hosts"],
            b1["hosts"] <= lim1 and b1["unplaced"] == 0,
        ),
    ]
    res.notes.append(
        f"peak snapshot: {len(pk)} VMs{' (first 288 lines)' if ctx.ci else ''}; hosts 64 cores, "
        "512 GiB; memory at m(v) = static-max + overhead"
    )
    return res
