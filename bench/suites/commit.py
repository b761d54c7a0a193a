"""Placement + commit through the real store (P3): VMs of W(N) started with the real `vm-start`
command inside SQLite WAL transactions, one decision per transaction and then 100 per
transaction (engine.md §7: ≥ 2,000 and ≥ 5,000 decisions/s on the reference machine; there is
no ratio target, so these figures are gated only with --reference). `--db URL` measures another
database (e.g. PostgreSQL) instead of a fresh temporary SQLite file.

Scenarios: ci = 100 hosts / 1,500 VMs, S1 = 1,000 / 15,000, S2 = 2,500 / 40,000 (default)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from bench import common, scenarios

SUITE = "commit"
DEFAULT_SCENARIO = "S2"
SCENARIOS = ("ci", "S1", "S2")
SIZES = {"ci": (100, 1500), "S1": (1000, 15000), "S2": (2500, 40000)}
OPTS = {"yes": True, "quiet": True}


def _build(store, hosts: int, demands, seed: int) -> list[str]:
    from vmctl.runner import invoke

    def body(txn):
        invoke(txn, "pool-create", ["name-label=bench"], OPTS)
        for i in range(hosts):
            cores, gib = scenarios.SKUS[i % len(scenarios.SKUS)]
            invoke(
                txn,
                "host-add",
                [
                    f"name-label=h{i:05d}",
                    f"address=10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                    f"cpu-count={cores}",
                    f"memory-total={gib}GiB",
                    "pool=bench",
                ],
                OPTS,
            )
        return [
            invoke(
                txn, "vm-create", [f"name-label=vm{i:06d}", f"vcpus={d.vcpus}", f"memory={d.memory}"], OPTS
            ).value
            for i, d in enumerate(demands)
        ]

    return store.run(body, True, finish=lambda txn: store.append_journal(txn, "bench commit build"))[0]


def _start(store, vms: list[str]) -> tuple[int, int]:
    """Start the VMs in one transaction; return (started, refused)."""
    from vmctl.errors import VmctlError
    from vmctl.runner import invoke

    def body(txn):
        ok = bad = 0
        for u in vms:
            try:
                invoke(txn, "vm-start", [f"vm={u}"], OPTS)
                ok += 1
            except VmctlError:
                bad += 1
        return ok, bad

    return store.run(body, True, finish=lambda txn: store.append_journal(txn, "bench commit start"))[0]


def run(ctx: common.Context) -> common.SuiteResult:
    from vmctl.store.txn import Store
    from vmctl.units import UuidSource

    hosts, n = SIZES[ctx.scenario]
    res = common.SuiteResult(SUITE, ctx.scenario)
    demands = scenarios.demands_of(scenarios.draw_w(scenarios.peak(ctx.trace_dir, ctx.seed), n, ctx.seed))
    tmp = tempfile.mkdtemp(prefix="vmctl-bench-commit-")
    db = getattr(ctx, "db", None) or os.path.join(tmp, "inv.db")
    try:
        store = Store(db, uuids=UuidSource(f"bench-commit:{ctx.seed}"))
        t0 = time.perf_counter()
        vms = _build(store, hosts, demands, ctx.seed)
        build_s = time.perf_counter() - t0
        half = len(vms) // 2
        # one transaction each: a sample, since each builds the pool snapshot and commits on its own
        single = vms[: min(half, 750 if ctx.ci else 200)]
        batched = vms[half:]
        common.quiesce()
        t0 = time.perf_counter()
        ok1 = bad1 = 0
        for u in single:
            ok, bad = _start(store, [u])
            ok1, bad1 = ok1 + ok, bad1 + bad
        t1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        ok2 = bad2 = 0
        for i in range(0, len(batched), 100):
            ok, bad = _start(store, batched[i : i + 100])
            ok2, bad2 = ok2 + ok, bad2 + bad
        t2 = time.perf_counter() - t0
        store.dispose()
        r1, r2 = len(single) / t1, len(batched) / t2
        res.engines["vmctl (SQLite WAL)" if "://" not in db else "vmctl"] = {
            "build (s)": round(build_s, 1),
            "1/txn decisions": len(single),
            "1/txn started": ok1,
            "1/txn refused": bad1,
            "1/txn decisions/s": round(r1, 1),
            "100/txn decisions": len(batched),
            "100/txn started": ok2,
            "100/txn refused": bad2,
            "100/txn decisions/s": round(r2, 1),
        }
        res.timing = {"build (s)", "1/txn decisions/s", "100/txn decisions/s"}
        res.goals += [
            common.Goal(
                "P3",
                "≥ 2,000 decisions/s at one transaction each (reference)",
                round(r1, 1),
                r1 >= 2000,
                "absolute",
            ),
            common.Goal(
                "P3",
                "≥ 5,000 decisions/s at 100 per transaction (reference)",
                round(r2, 1),
                r2 >= 5000,
                "absolute",
            ),
        ]
        res.notes.append(
            f"{hosts} hosts, {n} VMs of W(N); the real vm-start command (engine placement, "
            "lifecycle hooks, journal) in each transaction"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res
