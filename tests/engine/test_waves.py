"""Caps and waves of engine.md §4.3."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmctl.engine import migration as mg
from vmctl.engine import waves as wv
from vmctl.engine.snapshot import HostState, NetworkState, PoolState, VDIState, VMState
from vmctl.errors import VmctlError

MiB = 1024**2
GiB = 1024**3
L10 = mg.link_rate(10_000)
L1 = mg.link_rate(1_000)


def mv(i: int, src: str = "H", dst: str = "A", mem: float = 4 * GiB, **kw) -> wv.MoveSpec:
    kw.setdefault("link_src", L10)
    kw.setdefault("link_dst", L10)
    return wv.MoveSpec(vm=f"vm{i:03d}", src=src, dst=dst, memory=mem, dirty_rate=32 * MiB, **kw)


def test_costs_live_and_storage():
    live = mv(0, held_srs=("shared",))
    assert live.costs() == {
        ("host", "H"): 1,
        ("host", "A"): 1,
        ("link", "H"): 1,
        ("link", "A"): 1,
        ("sr", "shared"): 1,
    }
    sm = mv(1, held_srs=("shared",), moved_srs=("local-H",), target_sr="shared", storage_bytes=GiB)
    assert sm.storage_motion
    assert sm.costs() == {
        ("host", "H"): 4,
        ("host", "A"): 4,
        ("link", "H"): 1,
        ("link", "A"): 1,
        ("sr", "shared"): 16,
        ("sr", "local-H"): 16,
    }


def test_host_cap_limits_width_of_an_evacuation():
    # one source: the host cap 8 bounds every wave
    moves = [mv(i, dst=f"D{i % 20:02d}") for i in range(20)]
    waves = wv.cut(moves, 20, wv.Caps())
    assert [len(w) for w in waves] == [8, 8, 4]
    # a slow link on the source: cap 4
    slow = wv.Caps(link_overrides={"H": 4})
    assert [len(w) for w in wv.cut(moves, 20, slow)] == [4] * 5


def test_storage_motion_uses_four_host_units():
    moves = [mv(i, dst=f"D{i}", moved_srs=("loc",), target_sr="sh", storage_bytes=GiB) for i in range(5)]
    assert [len(w) for w in wv.cut(moves, 10, wv.Caps())] == [2, 2, 1]


def test_sr_cap():
    moves = [mv(i, src=f"S{i}", dst=f"D{i}", moved_srs=("loc",), target_sr="sh") for i in range(10)]
    # 16 units per move on "sh" and on "loc": 8 moves per wave at the cap of 128
    assert [len(w) for w in wv.cut(moves, 10, wv.Caps())] == [8, 2]
    assert [len(w) for w in wv.cut(moves, 10, wv.Caps(sr=32))] == [2] * 5


def test_dependency_rule():
    # move 1 goes to move 0's source: it must wait for the next wave
    moves = [mv(0, src="A", dst="B"), mv(1, src="C", dst="A"), mv(2, src="D", dst="E")]
    assert wv.cut(moves, 3, wv.Caps()) == [[0], [1, 2]]
    # the same VM moved twice never shares a wave
    twice = [mv(0, src="A", dst="B"), wv.MoveSpec(vm="vm000", src="B", dst="C", memory=GiB, dirty_rate=0)]
    assert wv.cut(twice, 2, wv.Caps()) == [[0], [1]]


def test_move_alone_over_a_cap_is_refused():
    with pytest.raises(VmctlError) as e:
        wv.cut([mv(0, moved_srs=("l",), target_sr="s")], 1, wv.Caps(host=2))
    assert e.value.code == "TOO_MANY_MIGRATIONS"
    assert dict(e.value.params)["cap"] == 2


def test_rates_share_links():
    # eight moves from one 10G source at 128 MiB/s each would need 1 GiB/s: the link gives 1.125e9/8
    moves = [mv(i, dst=f"D{i}", link_src=L10, link_dst=L10) for i in range(8)]
    s = wv.schedule(moves, wv.Caps())
    for m in s.moves:
        assert m.rate == pytest.approx(min(128 * MiB, L10 / len(s.waves[m.wave - 1])))


def test_schedule_picks_smallest_makespan_and_converging_width():
    # On a 1 Gbit/s source link (cap 4) sharing slows every move: with a high dirty rate only narrow
    # waves converge, so the chosen width must keep every move converging.
    moves = [
        wv.MoveSpec(
            vm=f"v{i}", src="H", dst=f"D{i}", memory=8 * GiB, dirty_rate=40 * MiB, link_src=L1, link_dst=L10
        )
        for i in range(8)
    ]
    s = wv.schedule(moves, wv.Caps(link_overrides={"H": 4}))
    assert s.all_converge
    assert all(m.prediction.converges for m in s.moves)
    for w, makespan, bad in s.widths:
        if bad == 0:
            assert round(s.makespan, 9) <= round(makespan, 9)
            if round(makespan, 9) == round(s.makespan, 9):
                assert s.width <= w
    # at least one wider width was tried and rejected for non-convergence
    assert any(bad > 0 for _, _, bad in s.widths)
    assert s.makespan == pytest.approx(sum(s.wave_times))


def test_schedule_ties_go_to_smaller_width():
    # the stream bandwidth binds, not the links: every width w ≥ 1 gives different makespans,
    # except that all moves identical gives wave time = solo time; the best is the widest
    moves = [mv(i, dst=f"D{i}") for i in range(4)]
    s = wv.schedule(moves)
    assert s.width == 4 and len(s.waves) == 1
    solo = moves[0].solo().total_time
    assert s.makespan == pytest.approx(solo)


def test_empty_plan():
    s = wv.schedule([])
    assert s.makespan == 0 and s.waves == () and s.all_converge


def _pool() -> PoolState:
    p = PoolState(uuid="p", other_config={"migration-cap-sr": "64"})
    p.add_network(NetworkState(uuid="mgmt", management=True))
    p.add_host(
        HostState(uuid="h1", pif_speeds=(("mgmt", 1000),), other_config=(("migration-cap-host", "3"),))
    )
    p.add_host(HostState(uuid="h2", pif_speeds=(("mgmt", 10_000),)))
    p.add_host(HostState(uuid="h3", pif_speeds=(("mgmt", None),)))
    p.add_vm(
        VMState(
            uuid="v",
            power_state="running",
            resident_on="h1",
            memory_dynamic_max=2 * GiB,
            memory_static_max=2 * GiB,
            srs=frozenset({"loc", "sh"}),
            vdis=(VDIState("d1", "loc", GiB, GiB // 2), VDIState("d2", "sh", GiB, GiB)),
        )
    )
    return p


def test_caps_and_specs_from_a_pool():
    p = _pool()
    caps = wv.caps_for(p)
    assert caps.cap(("host", "h1")) == 3 and caps.cap(("host", "h2")) == 8
    assert caps.cap(("link", "h1")) == 4 and caps.cap(("link", "h2")) == 8 and caps.cap(("link", "h3")) == 8
    assert caps.cap(("sr", "x")) == 64
    spec = wv.move_spec(p, p.vms["v"], "h2", storage_map={"d1": "sh"})
    assert spec.moved_srs == ("loc",) and spec.target_sr == "sh" and spec.held_srs == ("sh",)
    assert spec.storage_bytes == GiB // 2
    assert spec.link_src == pytest.approx(L1) and spec.link_dst == pytest.approx(L10)
    assert spec.memory == 2 * GiB and spec.dirty_rate == 32 * MiB
    assert spec.stream_bandwidth == 128 * MiB
    live = wv.move_spec(p, p.vms["v"], "h3")
    assert not live.storage_motion and live.held_srs == ("loc", "sh")


def test_in_flight_usage_and_check():
    p = _pool()
    p.update_vm("v", scheduled_on="h2")
    usage = wv.in_flight_usage(p)
    assert usage[("host", "h1")] == 1 and usage[("link", "h2")] == 1
    caps = wv.Caps(host_overrides={"h2": 1})
    with pytest.raises(VmctlError) as e:
        wv.check_caps(mv(5, src="h3", dst="h2"), caps, usage)
    assert e.value.code == "TOO_MANY_MIGRATIONS"
    assert dict(e.value.params) == {"resource": "host:h2", "in-use": 1, "cap": 1}


@settings(max_examples=60, deadline=None)
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 5), st.booleans(), st.integers(1, 32)),
        min_size=1,
        max_size=25,
    ),
    host_cap=st.integers(4, 10),
    link_cap=st.integers(1, 8),
)
def test_every_wave_respects_caps_and_dependencies(plan, host_cap, link_cap):
    moves = []
    for i, (s, d, storage, gib) in enumerate(plan):
        if s == d:
            d = (d + 1) % 6
        moves.append(
            wv.MoveSpec(
                vm=f"v{i}",
                src=f"h{s}",
                dst=f"h{d}",
                memory=gib * GiB,
                dirty_rate=64 * MiB,
                link_src=L10,
                link_dst=L1 if d % 2 else L10,
                held_srs=("sh",),
                moved_srs=(f"loc{s}",) if storage else (),
                target_sr="sh" if storage else None,
            )
        )
    caps = wv.Caps(host=host_cap, link=link_cap, sr=40)
    s = wv.schedule(moves, caps)
    assert sorted(i for w in s.waves for i in w) == list(range(len(moves)))
    # waves are consecutive slices of the plan
    assert [i for w in s.waves for i in w] == list(range(len(moves)))
    for wave in s.waves:
        assert len(wave) <= s.width
        use: dict = {}
        for i in wave:
            for r, c in moves[i].costs().items():
                use[r] = use.get(r, 0) + c
        assert all(use[r] <= caps.cap(r) for r in use)
        srcs = set()
        for i in wave:
            assert moves[i].dst not in srcs
            srcs.add(moves[i].src)
    assert s.makespan == pytest.approx(sum(s.wave_times))


def test_admit_migration_caps_rate_sharing_and_convergence():
    p = PoolState(uuid="p")
    p.add_network(NetworkState(uuid="mgmt", management=True))
    for h in ("a", "b", "c"):
        p.add_host(HostState(uuid=h, pif_speeds=(("mgmt", 1000),)))
    for i in range(4):
        p.add_vm(
            VMState(
                uuid=f"busy{i}",
                power_state="running",
                resident_on="a",
                scheduled_on="c",
                memory_dynamic_max=GiB,
                memory_static_max=GiB,
            )
        )
    p.add_vm(
        VMState(
            uuid="v",
            power_state="running",
            resident_on="a",
            memory_dynamic_max=GiB,
            memory_static_max=GiB,
            dirty_rate=0,
        )
    )
    # a 1 Gbit/s link carries at most 4 migrations: a is full
    with pytest.raises(VmctlError) as e:
        wv.admit_migration(p, "v", "b")
    assert e.value.code == "TOO_MANY_MIGRATIONS"
    assert dict(e.value.params) == {"resource": "link:a", "in-use": 4, "cap": 4}
    p.update_vm("busy0", scheduled_on=None)
    p.update_vm("busy1", scheduled_on=None)
    spec, pred = wv.admit_migration(p, "v", "b")
    # two migrations in flight on a's link: this one shares it three ways
    assert pred.rate == pytest.approx(L1 / 3)
    assert spec.src == "a" and spec.dst == "b"
    p.update_vm("v", dirty_rate=200 * MiB)
    with pytest.raises(VmctlError) as e:
        wv.admit_migration(p, "v", "b")
    assert e.value.code == "MIGRATION_WOULD_NOT_CONVERGE"
    _, forced = wv.admit_migration(p, "v", "b", force=True)
    assert not forced.converges and forced.hints is not None


def _naive_cut(moves, width, caps):
    """The definition of §4.3, move by move: close the wave when the next move does not fit."""
    waves, cur, use, srcs, vms = [], [], {}, set(), set()
    for j, m in enumerate(moves):
        c = m.costs()
        fits = (
            len(cur) < width
            and m.dst not in srcs
            and m.vm not in vms
            and all(use.get(r, 0) + n <= caps.cap(r) for r, n in c.items())
        )
        if not fits and cur:
            waves.append(cur)
            cur, use, srcs, vms = [], {}, set(), set()
        cur.append(j)
        for r, n in c.items():
            use[r] = use.get(r, 0) + n
        srcs.add(m.src)
        vms.add(m.vm)
    if cur:
        waves.append(cur)
    return waves


@settings(max_examples=80, deadline=None)
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 6), st.booleans(), st.integers(0, 3)),
        min_size=1,
        max_size=30,
    ),
    width=st.integers(1, 12),
    host_cap=st.integers(4, 9),
)
def test_cut_equals_the_definition(plan, width, host_cap):
    moves = []
    for i, (s, d, storage, vm) in enumerate(plan):
        if s == d:
            d = (d + 1) % 7
        moves.append(
            wv.MoveSpec(
                vm=f"v{vm if i % 3 == 0 else i}",
                src=f"h{s}",
                dst=f"h{d}",
                memory=GiB,
                dirty_rate=0,
                held_srs=("sh",),
                moved_srs=("l",) if storage else (),
                target_sr="sh" if storage else None,
            )
        )
    caps = wv.Caps(host=host_cap, link=5, sr=48)
    assert wv.cut(moves, width, caps) == _naive_cut(moves, width, caps)
