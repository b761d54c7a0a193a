"""The partial snapshot a placement reads (engine_adapter.placement_state: every host, the loads
the database sums, only the VMs being placed) decides exactly as the snapshot of every VM: same
per-host loads, same group counts, same host chosen, through memoized and carried-over runs."""

from __future__ import annotations

import random

import pytest
from cli_helpers import with_txn
from pgserver import pg_db, pg_url  # noqa: F401

GiB = 1024**3
MiB = 1024**2


def _loads(ps) -> dict:
    return {h: tuple(getattr(ld, k) for k in type(ld).__slots__) for h, ld in ps.loads().items()}


def _random_inventory(db, seed: int) -> dict:
    """Two pools of random hosts and VMs in every power state, with starts in flight
    (scheduled-to-be-resident-on), restart priorities, strict and soft groups, templates and
    snapshots, written straight into the store. Returns {pool uuid: [halted VM uuids]}."""
    rng = random.Random(seed)

    def body(txn):
        out = {}
        for p in range(2):
            pool = txn.insert(
                "pool",
                {
                    "name-label": f"p{p}",
                    "memory-overcommit-policy": "dynamic" if p else "none",
                    "placement-policy": ("balanced", "pack", "spread")[seed % 3],
                },
            )
            hosts = [
                txn.insert(
                    "host",
                    {
                        "name-label": f"p{p}h{i}",
                        "pool": pool,
                        "cpu-count": rng.choice((8, 16, 32)),
                        "memory-total": rng.choice((64, 128, 256)) * GiB,
                        "enabled": rng.random() > 0.1,
                    },
                )
                for i in range(rng.randrange(3, 9))
            ]
            txn.update("pool", pool, {"master": hosts[0]})
            groups = [
                txn.insert(
                    "vm-group",
                    {
                        "name-label": f"g{p}{i}",
                        "pool": pool,
                        "placement": ("affinity", "anti-affinity", "normal")[i % 3],
                        "strict": i < 3,
                    },
                )
                for i in range(6)
            ]
            halted = []
            for i in range(rng.randrange(30, 80)):
                smax = rng.choice((1, 2, 3, 4, 8)) * GiB + rng.choice((0, 1, 127, 128 * MiB + 1))
                dmax = smax - rng.choice((0, 0, 256 * MiB))
                dmin = dmax - rng.choice((0, 512 * MiB))
                state = rng.choice(("halted", "running", "running", "paused", "suspended"))
                holding = state in ("running", "paused")
                vm = {
                    "name-label": f"v{p}-{i}",
                    "pool": pool,
                    "power-state": state,
                    "vcpus": rng.randrange(1, 9),
                    "memory-static-min": min(dmin, 16 * MiB),
                    "memory-dynamic-min": dmin,
                    "memory-dynamic-max": dmax,
                    "memory-static-max": smax,
                    "memory-reservation": rng.choice((0, 0, dmax)),
                    "resident-on": rng.choice(hosts) if holding and rng.random() > 0.03 else "",
                    "scheduled-to-be-resident-on": rng.choice(hosts) if rng.random() < 0.1 else "",
                    "ha-restart-priority": rng.choice(("restart", "best-effort", "no-restart")),
                    "groups": rng.sample(groups, rng.choice((0, 0, 0, 1, 2))),
                    "is-a-template": rng.random() < 0.05,
                    "is-a-snapshot": rng.random() < 0.05,
                }
                u = txn.insert("vm", vm)
                if state == "halted" and not vm["is-a-template"] and not vm["is-a-snapshot"]:
                    halted.append(u)
            out[pool] = halted
        return out

    return with_txn(db, body)


def _decision(sched, vm: str) -> tuple:
    """The host chosen (with its score and what decided), or the refusal with its reasons."""
    from vmctl.engine.placement import START
    from vmctl.errors import VmctlError

    try:
        p = sched.place(vm, mode=START)
    except VmctlError as e:
        return ("refused", e.code, e.reasons)  # type: ignore[attr-defined]
    return ("host", p.host, p.score, p.decided_by, p.margin)


@pytest.mark.parametrize("seed", range(6))
def test_partial_snapshot_decides_as_the_whole_one(tmp_path, seed):
    _check_partial_against_whole(tmp_path / "p.db", seed)


@pytest.mark.postgres
def test_partial_snapshot_decides_as_the_whole_one_on_postgresql(pg_db):  # noqa: F811
    _check_partial_against_whole(pg_db, 4)


def _check_partial_against_whole(db, seed: int) -> None:
    from vmctl.engine.placement import Scheduler
    from vmctl.engine_adapter import _build_pool_state, placement_state

    pools = _random_inventory(db, seed)

    def body(txn):
        for pool, halted in pools.items():
            whole = _build_pool_state(txn, pool)
            part = placement_state(txn, pool, halted)
            assert part.partial and not whole.partial
            assert set(part.vms) == set(halted)
            assert _loads(part) == _loads(whole)
            assert part.hosts == whole.hosts and part.srs == whole.srs and part.groups == whole.groups
            for u in halted:
                assert part.vms[u] == whole.vms[u]
                for g in part.vms[u].groups:
                    assert part.group_hosts(g) == whole.group_hosts(g)
            decided = 0
            for u in halted:
                a, b = _decision(Scheduler(part.copy()), u), _decision(Scheduler(whole.copy()), u)
                assert a == b
                decided += a[0] == "host"
            assert decided  # the inventories leave room for some
            with pytest.raises(RuntimeError):
                part.vms_on(sorted(part.hosts)[0])

    with_txn(db, body, write=False)


def test_a_run_of_starts_keeps_the_partial_snapshot_current(tmp_path):
    """Starts in one transaction and in the next ones (carried over) take each VM in and keep
    the loads equal to a fresh count of every VM; HA admission makes it the whole snapshot."""
    from vmctl import engine_adapter as ea
    from vmctl.runner import invoke
    from vmctl.store.txn import Store

    db = tmp_path / "r.db"
    pools = _random_inventory(db, 1)
    pool = sorted(pools)[0]
    halted = pools[pool]
    o = {"yes": True, "quiet": True}
    store = Store(str(db))
    builds = []
    real = ea._build_placement_state
    ea_build = lambda txn, ps: builds.append(ps.uuid) or real(txn, ps)  # noqa: E731

    def check(txn):
        ps = ea.placement_state(txn, pool, [])
        assert _loads(ps) == _loads(ea._build_pool_state(txn, pool))
        return ps

    def start(vms):
        def body(txn):
            for u in vms:
                try:
                    invoke(txn, "vm-start", [f"vm={u}"], o)
                except Exception as e:  # a VM that fits nowhere stays halted
                    assert getattr(e, "code", None) == "NO_HOSTS_AVAILABLE"
                assert check(txn).partial
            return True

        return body

    mp = pytest.MonkeyPatch()
    mp.setattr(ea, "_build_placement_state", ea_build)
    try:
        run = lambda body: store.run(body, True, finish=lambda txn: store.append_journal(txn, "t"))[0]  # noqa: E731
        run(start(halted[:4]))
        assert builds == [pool]
        run(start(halted[4:8]))  # carried over: taken in, not rebuilt
        assert builds == [pool]

        def enable_ha(txn):
            txn.update("pool", pool, {"ha-enabled": True, "ha-host-failures-to-tolerate": 0})

        run(enable_ha)

        def whole(txn):
            assert not ea.placement_state(txn, pool, halted[8:9]).partial

        run(whole)
        assert builds == [pool]
    finally:
        mp.undo()
        store.dispose()


def test_network_availability_for_many_hosts_reads_as_one_host_at_a_time(tmp_path):
    """The switches of many hosts read at once are the sessions each host's own read gives, and
    the hosts with a network are those network_available finds one by one (demo inventory: VLAN
    and plain networks, VIFs plugged)."""
    from cli_helpers import run_cli

    from vmctl import xenet

    db = tmp_path / "d.db"
    assert run_cli(db, "demo", "--pools", "2", "--hosts", "6", "--vms", "40", "--seed", "5").returncode == 0

    def one_by_one(txn):
        hosts = sorted(h["uuid"] for h in txn.all("host"))
        nets = {
            n["uuid"]: {h for h in hosts if xenet.network_available(txn, n, h)} for n in txn.all("network")
        }
        return hosts, nets, {h: txn.switch(h).records() for h in hosts}

    hosts, nets, records = with_txn(db, one_by_one, write=False)

    def at_once(txn):
        txn.load_switches(hosts)
        assert {h: txn.switch(h).records() for h in hosts} == records
        return {n["uuid"]: xenet.hosts_with_network(txn, n, hosts) for n in txn.all("network")}

    assert with_txn(db, at_once, write=False) == nets
    assert any(nets.values()) and any(len(v) < len(hosts) for v in nets.values())
