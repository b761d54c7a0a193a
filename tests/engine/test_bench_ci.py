"""The benchmark's ci scenario of every suite: quality goals pass and quality fields are
deterministic (engine.md §7, §8.2); the start-up, bridge/port, commit and scale suites only have to
run."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SUITES = (
    "place",
    "pack",
    "replay",
    "ha",
    "migrate",
    "evacuate",
    "rebalance",
    "startup",
    "ovs",
    "commit",
    "scale",
    "vmstart",
)


def _run(suite: str):
    import importlib

    from bench import common

    mod = importlib.import_module(f"bench.suites.{suite}")
    ctx = common.Context(scenario="ci", seed=1, repeat=1, trace_dir=ROOT / "bench" / "data" / "azure-v1")
    return ctx, mod.run(ctx)


@pytest.mark.slow
@pytest.mark.parametrize("suite", SUITES)
def test_ci_quality_goals_pass_and_are_deterministic(suite):
    ctx, first = _run(suite)
    failed = [(g.id, g.target, g.value) for g in first.goals if g.checked(ctx) and not g.passed]
    assert not failed, failed
    assert all(g.kind != "quality" or g.passed for g in first.goals)
    _, second = _run(suite)
    assert first.quality() == second.quality()


def test_trace_loader_refuses_other_files(tmp_path):
    import shutil

    from bench import trace

    src = ROOT / "bench" / "data" / "azure-v1"
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    lines = (tmp_path / "v1.dev.txt").read_text().splitlines()
    (tmp_path / "v1.dev.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match="trace refused"):
        trace.load(tmp_path)
    # A changed token count (one flavor letter more) is refused too.
    lines[0] = lines[0].replace("m,|", "m,m,|", 1)
    (tmp_path / "v1.dev.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="trace refused"):
        trace.load(tmp_path)


def test_trace_counts_and_peak():
    from bench import trace

    arr = trace.load(seed=1)
    assert len(arr) == trace.TOTAL_VMS
    t, peak = trace.peak_snapshot(arr)
    assert (t, len(peak)) == (2_099_400, 15_510)
    assert sum(a.flavor.vcpus for a in peak) == 42_813
    assert sum(a.flavor.memory for a in peak) == 114_107 * 1024**3


def test_lower_bound_and_uuids():
    import uuid

    from bench import scenarios

    assert scenarios.lower_bound([(10, 1)] * 5, [(20, 100)] * 10) == 3
    # mixed hosts: the smallest k whose k largest capacities cover the demand
    assert scenarios.lower_bound([(50, 1)], [(10, 9), (30, 9), (25, 9)]) == 2
    assert scenarios.make_uuid(3, "vm", 7) == str(uuid.uuid5(scenarios.NS, "3:vm:7"))


def test_baselines_respect_capacity():
    from bench import baselines, scenarios

    pk = scenarios.peak(None, 1)
    sc = scenarios.build_pool(1, [(16, 96)] * 5, scenarios.demands_of(scenarios.draw_w(pk, 60, 1)))
    b = baselines.NovaLike(sc.pool, sc.host_order, "ff")
    for u in sc.vm_order:
        v = sc.pool.vms[u]
        h = b.place(v)
        if h is not None:
            b.commit(v, h)
    for h in b.hosts:
        assert h.mem <= h.mem_cap and h.vcpu <= h.vcpu_cap
    placed, unplaced = baselines.ffd_sum(sc.pool, sc.host_order, [sc.pool.vms[u] for u in sc.vm_order])
    assert len(placed) + len(unplaced) == 60
