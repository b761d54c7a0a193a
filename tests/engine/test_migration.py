"""The pre-copy model of engine.md §4.2 and the rates of §4.3 (benchmark goal P9)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmctl.engine import migration as mg

MiB = 1024**2
GiB = 1024**3
M16 = 16 * GiB


def closed_form(memory: float, lam: float, k: int, rate: float, tr: float = 0.0):
    sent = (k + 1) * memory if lam == 1 else memory * (1 - lam ** (k + 1)) / (1 - lam)
    return sent, sent / rate + tr, memory * lam**k / rate + tr


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


@pytest.mark.parametrize(
    "dirty, rate, rounds, bytes_mib, factor, total, downtime, reason",
    [
        (100, 1190, 2, 17876.50, 1.0911, 15.022, 0.0972, "converged"),
        (100, 128, 4, 53100.02, 3.2410, 414.84, 47.68, "byte-cap"),
        (0, 128, 1, 16384.0, 1.0, 128.0, 0.0, "converged"),
    ],
)
def test_spec_vectors(dirty, rate, rounds, bytes_mib, factor, total, downtime, reason):
    p = mg.predict(M16, dirty * MiB, rate * MiB)
    assert p.rounds == rounds
    assert p.stop_reason == reason
    assert p.converges == (reason == "converged")
    lam = dirty / rate
    sent, t, dt = closed_form(M16, lam, rounds, rate * MiB)
    assert rel(p.bytes, sent) < 1e-9
    assert rel(p.total_time, t) < 1e-9
    assert p.downtime == pytest.approx(dt, rel=1e-9, abs=1e-12)
    # the rounded figures printed in the spec's table
    assert p.bytes / MiB == pytest.approx(bytes_mib, abs=0.01)
    assert p.bytes / M16 == pytest.approx(factor, abs=1e-4)
    assert p.total_time == pytest.approx(total, abs=5e-3)  # shown to 3 or 5 digits
    assert p.downtime == pytest.approx(downtime, abs=1e-2 if downtime > 1 else 1e-4)
    assert not p.dirty_rate_at_or_above_bandwidth


def test_row2_required_bandwidth_and_hints():
    p = mg.predict(M16, 100 * MiB, 128 * MiB)
    assert p.hints is not None
    rb = p.hints.required_bandwidth
    assert rb is not None
    assert abs(rb - 149.8 * MiB) < 0.1 * MiB
    # never optimistic: the hint converges, 0.1 MiB/s less does not
    assert mg.converges(M16, 100 * MiB, rb)
    assert not mg.converges(M16, 100 * MiB, rb - 0.1 * MiB)
    assert p.hints.cold_downtime == pytest.approx(128.0, rel=1e-12)
    th = p.hints.throttle_to
    assert th is not None and th < 100 * MiB
    assert mg.converges(M16, th, 128 * MiB)
    assert not mg.converges(M16, th + 0.1 * MiB, 128 * MiB)
    assert p.hints.post_copy
    d = p.as_dict()
    assert d["stop-reason"] == "byte-cap" and d["converges"] is False
    assert set(d["hints"]) == {"required-bandwidth", "throttle-to", "cold-downtime", "post-copy"}


def test_converging_migration_has_no_hints():
    assert mg.predict(M16, 100 * MiB, 1190 * MiB).hints is None


def test_defaults():
    lim = mg.Limits()
    assert (lim.downtime, lim.max_rounds, lim.byte_factor, lim.resume_time) == (0.3, 30, 3.0, 0.0)
    assert mg.DEFAULT_STREAM_BANDWIDTH == 128 * MiB
    assert mg.DEFAULT_DIRTY_RATE == 32 * MiB
    assert mg.limits_for() == lim
    assert mg.stream_bandwidth_for() == 128 * MiB
    assert mg.dirty_rate_for(None) == 32 * MiB


def test_overrides():
    lim = mg.limits_for(
        pool_other_config={
            "migration-max-rounds": "5",
            "migration-byte-factor": "2.5",
            "migration-resume-time": "0.05",
        },
        vm_other_config={"migration-resume-time": "0.2"},
        pool_downtime=0.5,
    )
    assert lim == mg.Limits(downtime=0.5, max_rounds=5, byte_factor=2.5, resume_time=0.2)
    assert mg.limits_for(pool_downtime=0.5, downtime=0.1).downtime == 0.1
    assert mg.dirty_rate_for({"dirty-rate": "64M"}) == 64 * MiB
    assert mg.dirty_rate_for({"dirty-rate": "bogus"}, 10 * MiB) == 10 * MiB
    assert mg.stream_bandwidth_for(None, {"migration-bandwidth": "1G/s"}) == GiB
    assert mg.stream_bandwidth_for(50 * MiB, {"migration-bandwidth": "1G"}) == 50 * MiB
    assert mg.stream_bandwidth_for(None, None, 64 * MiB) == 64 * MiB


def test_calibration_knobs_come_from_the_pool_and_bad_values_are_ignored():
    lim = mg.limits_for(
        pool_other_config={"migration-setup-time": "250ms", "migration-memory-fraction": "0.89"}
    )
    assert (lim.setup_time, lim.memory_fraction) == (0.25, 0.89)
    for bad in ({"migration-setup-time": "-1"}, {"migration-memory-fraction": "0"}):
        assert mg.limits_for(pool_other_config=bad) == mg.Limits()
    assert mg.limits_for(pool_other_config={"migration-memory-fraction": "1.5"}).memory_fraction == 1.0


def test_setup_time_adds_to_the_total_time_only():
    p = mg.predict(M16, 100 * MiB, 1190 * MiB, mg.Limits(setup_time=0.4))
    q = mg.predict(M16, 100 * MiB, 1190 * MiB)
    assert p.total_time == pytest.approx(q.total_time + 0.4, rel=1e-12)
    assert (p.downtime, p.bytes, p.rounds) == (q.downtime, q.bytes, q.rounds)


def test_memory_fraction_runs_the_whole_model_on_the_memory_that_holds_data():
    """Zero pages cost QEMU a few bytes each: a guest with 89% of its memory written migrates
    as a guest of 0.89·M would."""
    p = mg.predict(M16, 64 * MiB, 128 * MiB, mg.Limits(memory_fraction=0.89))
    q = mg.predict(0.89 * M16, 64 * MiB, 128 * MiB)
    assert p == q and p.memory == 0.89 * M16
    # so a migration can converge with it and not without (a smaller remainder)
    lim = mg.Limits(downtime=1.0, max_rounds=2)
    r = mg.predict(1024 * MiB, 64 * MiB, 128 * MiB, lim)
    s = mg.predict(
        1024 * MiB, 64 * MiB, 128 * MiB, mg.Limits(downtime=1.0, max_rounds=2, memory_fraction=0.5)
    )
    assert (r.converges, s.converges) == (False, True)


def test_the_streams_ceiling_slows_the_model_but_not_the_rate_allowed():
    lim = mg.limits_for(pool_other_config={"migration-max-rate": "180MiB/s"})
    assert lim.max_rate == 180 * MiB
    p = mg.predict(256 * MiB, 32 * MiB, 256 * MiB, lim)
    q = mg.predict(256 * MiB, 32 * MiB, 180 * MiB)
    assert p.rate == 256 * MiB  # what the hypervisor is told
    assert (p.total_time, p.downtime, p.bytes, p.rounds) == (q.total_time, q.downtime, q.bytes, q.rounds)
    below = mg.predict(256 * MiB, 32 * MiB, 128 * MiB, lim)
    assert below == mg.predict(256 * MiB, 32 * MiB, 128 * MiB)  # a ceiling above R changes nothing
    assert mg.limits_for(pool_other_config={"migration-max-rate": "0"}).max_rate == math.inf


def test_resume_time_adds_to_total_and_downtime():
    lim = mg.Limits(resume_time=0.25)
    p = mg.predict(M16, 100 * MiB, 1190 * MiB, lim)
    q = mg.predict(M16, 100 * MiB, 1190 * MiB)
    assert p.total_time == pytest.approx(q.total_time + 0.25, rel=1e-12)
    assert p.downtime == pytest.approx(q.downtime + 0.25, rel=1e-12)
    # a resume time does not change when pre-copy stops (the rule compares M·λ^k/R with d)
    assert p.rounds == q.rounds


def test_storage_bytes_add_to_total_time_only():
    p = mg.predict(M16, 100 * MiB, 1190 * MiB, storage_bytes=10 * GiB)
    q = mg.predict(M16, 100 * MiB, 1190 * MiB)
    assert p.storage_bytes == 10 * GiB
    assert p.total_time == pytest.approx(q.total_time + 10 * GiB / (1190 * MiB), rel=1e-12)
    assert p.downtime == q.downtime
    assert p.total_bytes == p.bytes + 10 * GiB


def test_dirty_rate_at_bandwidth_flag_and_lambda_one():
    p = mg.predict(M16, 128 * MiB, 128 * MiB)
    assert p.dirty_rate_at_or_above_bandwidth
    assert not p.converges
    # λ = 1: every round resends M; byte cap first exceeded at k = 3 ((k+1)·M > 3·M)
    assert p.stop_reason == "byte-cap" and p.rounds == 3
    assert p.bytes == 4 * M16
    assert p.downtime == pytest.approx(M16 / (128 * MiB))
    assert p.hints is not None and p.hints.required_bandwidth > 128 * MiB
    q = mg.predict(M16, 300 * MiB, 128 * MiB)
    assert q.dirty_rate_at_or_above_bandwidth and not q.converges and q.stop_reason == "byte-cap"


def test_max_rounds():
    # λ = 0.5 never reaches 3·M (the series tends to 2·M), so a tight target hits the round limit
    lim = mg.Limits(downtime=1e-12)
    p = mg.predict(M16, 64 * MiB, 128 * MiB, lim)
    assert p.stop_reason == "max-rounds" and p.rounds == 30 and not p.converges
    sent, t, dt = closed_form(M16, 0.5, 30, 128 * MiB)
    assert rel(p.bytes, sent) < 1e-9 and rel(p.downtime, dt) < 1e-9
    assert mg.predict(M16, 64 * MiB, 128 * MiB, mg.Limits(downtime=1e-12, max_rounds=7)).rounds == 7


def test_byte_cap_three_times_memory():
    p = mg.predict(M16, 100 * MiB, 128 * MiB)
    assert p.bytes > 3 * M16
    # the previous round still fitted under the cap
    sent_before, _, _ = closed_form(M16, 100 / 128, p.rounds - 1, 128 * MiB)
    assert sent_before <= 3 * M16
    # a larger factor lets it converge
    assert mg.predict(M16, 100 * MiB, 128 * MiB, mg.Limits(byte_factor=10)).converges


def test_stop_reason_order_converged_wins_on_the_last_round():
    # converges exactly at k = max-rounds: "converged" is checked first
    lam = 0.5
    rate = 128 * MiB
    memory = M16
    k = 3
    d = memory * lam**k / rate
    p = mg.predict(memory, lam * rate, rate, mg.Limits(downtime=d * (1 + 1e-12), max_rounds=3))
    assert p.stop_reason == "converged" and p.rounds == 3


def test_small_vm_converges_at_round_zero():
    p = mg.predict(16 * MiB, 32 * MiB, 128 * MiB)
    assert p.rounds == 0 and p.converges and p.bytes == 16 * MiB


def test_zero_downtime_target_hints():
    p = mg.predict(GiB, MiB, 128 * MiB, mg.Limits(downtime=0.0))
    assert not p.converges
    assert p.hints is not None and p.hints.required_bandwidth is None
    assert p.hints.throttle_to == 0.0


def test_rate_must_be_positive():
    with pytest.raises(ValueError):
        mg.predict(GiB, MiB, 0)


def test_link_rate_and_migration_rate():
    assert mg.link_rate(10_000) == pytest.approx(0.9 * 10_000 * 125_000)
    assert mg.link_rate(None) == math.inf and mg.link_rate(0) == math.inf
    l10 = mg.link_rate(10_000)  # 1.125e9 B/s
    assert mg.migration_rate(128 * MiB, l10, 1, l10, 1) == 128 * MiB
    assert mg.migration_rate(GiB, l10, 4, l10, 1) == pytest.approx(l10 / 4)
    assert mg.migration_rate(GiB, l10, 1, mg.link_rate(1000), 2) == pytest.approx(0.9 * 1000 * 125_000 / 2)
    assert mg.migration_rate(GiB) == GiB


@settings(max_examples=200, deadline=None)
@given(
    memory=st.integers(min_value=1, max_value=64 * GiB),
    dirty=st.floats(min_value=0, max_value=2048 * MiB),
    rate=st.floats(min_value=1 * MiB, max_value=4096 * MiB),
)
def test_closed_forms_and_monotonicity(memory, dirty, rate):
    p = mg.predict(memory, dirty, rate, with_hints=False)
    lam = dirty / rate
    sent, t, dt = closed_form(memory, lam, p.rounds, rate)
    assert rel(p.bytes, sent) < 1e-9
    assert rel(p.total_time, t) < 1e-9
    assert p.downtime == pytest.approx(dt, rel=1e-9, abs=1e-15)
    assert p.rounds <= 30
    assert p.dirty_rate_at_or_above_bandwidth == (lam >= 1)
    if p.converges:
        assert p.downtime <= 0.3 * (1 + 1e-12)
        # faster links converge too (the hint search relies on it)
        assert mg.converges(memory, dirty, rate * 1.5)
    else:
        assert mg.predict(memory, dirty, rate).hints is not None


def _pool():
    from vmctl.engine.snapshot import HostState, NetworkState, PoolState, VMState

    p = PoolState(uuid="p", default_dirty_rate=100 * MiB)
    p.add_network(NetworkState(uuid="mgmt", management=True))
    p.add_network(NetworkState(uuid="fast", migration_bandwidth=2 * GiB))
    p.add_host(HostState(uuid="a", pif_speeds=(("fast", 100_000), ("mgmt", 10_000))))
    p.add_host(HostState(uuid="b", pif_speeds=(("fast", 100_000), ("mgmt", 1_000))))
    p.add_vm(
        VMState(
            uuid="v", power_state="running", resident_on="a", memory_dynamic_max=M16, memory_static_max=M16
        )
    )
    return p


def test_snapshot_helpers():
    p = _pool()
    assert mg.resolve_network(p) == "mgmt"
    assert mg.resolve_network(p, "fast") == "fast"
    p.migration_network = "fast"
    assert mg.resolve_network(p) == "fast"
    assert mg.pool_stream_bandwidth(p, "fast") == 2 * GiB
    assert mg.pool_stream_bandwidth(p, "mgmt") == 128 * MiB
    assert mg.host_link_rate(p, "b", "mgmt") == pytest.approx(0.9 * 1000 * 125_000)
    assert mg.vm_dirty_rate(p, p.vms["v"]) == 100 * MiB
    # over the management network the 1 Gbit/s link of b binds: 112.5 MB/s < 128 MiB/s
    q = mg.predict_vm(p, "v", "b", network="mgmt")
    assert q.rate == pytest.approx(0.9 * 1000 * 125_000)
    assert not q.converges
    # the fast network at 2 GiB/s converges; `bandwidth=` and `downtime=` override
    assert mg.predict_vm(p, "v", "b").converges
    assert mg.predict_vm(p, "v", "b", bandwidth=1190 * MiB).rounds == 2
    assert mg.predict_vm(p, "v", "b", bandwidth=1190 * MiB, downtime=10.0).rounds == 1


def test_convergence_error():
    p = mg.predict(M16, 100 * MiB, 128 * MiB)
    err = mg.convergence_error(p)
    assert err is not None and err.code == "MIGRATION_WOULD_NOT_CONVERGE"
    params = dict(err.params)
    assert params["predicted-downtime"] == p.downtime and params["downtime-target"] == 0.3
    assert abs(params["required-bandwidth"] - 149.8 * MiB) < 0.1 * MiB
    assert mg.convergence_error(mg.predict(M16, 100 * MiB, 1190 * MiB)) is None
