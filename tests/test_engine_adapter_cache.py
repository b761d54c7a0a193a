"""The pool snapshot memoized within a transaction (engine_adapter.pool_state) always equals a
fresh build from the rows, through runs of starts, shutdowns and other writes; and it is carried to
the next transaction of the process only while nothing else was committed."""

from __future__ import annotations

import pytest
from cli_helpers import run_cli, with_txn


def _same(a, b) -> None:
    assert a.vms == b.vms
    assert a.hosts == b.hosts

    def values(loads):
        return {h: tuple(getattr(v, k) for k in type(v).__slots__) for h, v in loads.items()}

    assert values(a.loads()) == values(b.loads())


def _inventory(db, vms: int) -> list[str]:
    """Pool p of three 8-core 32 GiB hosts and `vms` halted VMs; their uuids."""
    import vmctl

    inv = vmctl.open(str(db))
    inv.run("pool-create", **{"name-label": "p"})
    for i in range(3):
        inv.run(
            "host-add",
            **{
                "name-label": f"h{i}",
                "address": f"10.0.0.{i + 1}",
                "cpu-count": 8,
                "memory-total": "32GiB",
                "pool": "p",
            },
        )
    return [
        inv.run("vm-create", **{"name-label": f"v{i}", "memory": f"{1 + i % 3}GiB", "vcpus": 1 + i % 2})
        for i in range(vms)
    ]


def test_memoized_snapshot_equals_a_fresh_one(tmp_path):
    from vmctl.engine_adapter import _build_pool_state, pool_state
    from vmctl.runner import invoke

    db = tmp_path / "c.db"
    vms = _inventory(db, 8)
    o = {"yes": True, "quiet": True}

    def body(txn):
        p = txn.resolve_one("pool", "p")["uuid"]
        pool_state(txn, p)  # memoize
        for i, v in enumerate(vms):
            invoke(txn, "vm-start", [f"vm={v}"], o)
            _same(pool_state(txn, p), _build_pool_state(txn, p))
            if i % 3 == 2:
                invoke(txn, "vm-shutdown", [f"vm={vms[i - 1]}", "--force"], o)
                _same(pool_state(txn, p), _build_pool_state(txn, p))
            if i == 4:  # an unrelated write invalidates the memo rather than going stale
                invoke(txn, "host-disable", ["host=h0"], o)
                _same(pool_state(txn, p), _build_pool_state(txn, p))
        # a caller's changes to its copy never leak into the memo
        mine = pool_state(txn, p)
        mine.start_on(vms[1], mine.hosts and sorted(mine.hosts)[1])
        _same(pool_state(txn, p), _build_pool_state(txn, p))

    with_txn(db, body)


def test_snapshot_carried_to_the_next_transaction_while_the_journal_is_unchanged(tmp_path, monkeypatch):
    """A transaction starts from the snapshot the previous one of this process left, only while
    no other change was committed since (by this process or another), and never from one a
    failed or dry-run transaction changed."""
    from vmctl import engine_adapter as ea
    from vmctl.errors import VmctlError
    from vmctl.runner import invoke
    from vmctl.store.txn import Store

    db = tmp_path / "carry.db"
    vms = _inventory(db, 6)
    builds = []
    real_build = ea._build_pool_state
    monkeypatch.setattr(ea, "_build_pool_state", lambda txn, p: builds.append(p) or real_build(txn, p))
    o = {"yes": True, "quiet": True}
    store = Store(str(db))

    def run(body, write=True):
        return store.run(body, write, finish=lambda txn: store.append_journal(txn, "test"))[0]

    def start(vm):
        def body(txn):
            invoke(txn, "vm-start", [f"vm={vm}"], o)
            p = txn.resolve_one("pool", "p")["uuid"]
            _same(ea.pool_state(txn, p), real_build(txn, p))

        return body

    def power(txn):
        return {v: txn.get("vm", v)["power-state"] for v in vms}

    run(start(vms[0]))
    assert len(builds) == 1
    run(start(vms[1]))  # carried: no rebuild, and equal to a fresh build (checked in the body)
    assert len(builds) == 1

    # another process commits a change: the journal head moves, the next transaction rebuilds
    assert run_cli(db, "vm-start", f"vm={vms[2]}").returncode == 0
    run(start(vms[3]))
    assert len(builds) == 2

    # a transaction that fails after changing its snapshot leaves the carried one as it was
    def failing(txn):
        invoke(txn, "vm-start", [f"vm={vms[4]}"], o)
        raise VmctlError("INVALID_VALUE", "stop here")

    with pytest.raises(VmctlError):
        run(failing)
    run(start(vms[5]))
    assert len(builds) == 2
    assert run(power, False)[vms[4]] == "halted"

    # so does a dry run
    dry = Store(str(db), dry_run=True)
    dry.run(lambda txn: invoke(txn, "vm-shutdown", [f"vm={vms[0]}", "--force"], o), True)
    dry.dispose()

    def check(txn):
        p = txn.resolve_one("pool", "p")["uuid"]
        ps = ea.pool_state(txn, p)
        _same(ps, real_build(txn, p))
        return ps.vms[vms[0]].power_state

    n = len(builds)
    assert run(check, False) == "running"
    assert len(builds) == n  # still carried after the dry run

    # a write before the first snapshot in a transaction is part of the state: no carry then
    def create_then_start(txn):
        new = invoke(txn, "vm-create", ["name-label=late", "memory=1GiB"], o).value
        invoke(txn, "vm-start", [f"vm={new}"], o)
        p = txn.resolve_one("pool", "p")["uuid"]
        _same(ea.pool_state(txn, p), real_build(txn, p))

    run(create_then_start)
    assert len(builds) == n + 1
    store.dispose()
