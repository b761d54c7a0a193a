"""The pool snapshot memoized within a transaction (engine_adapter.pool_state) always equals a
fresh build from the rows, through runs of starts, shutdowns and other writes."""

from __future__ import annotations

from cli_helpers import with_txn


def _same(a, b) -> None:
    assert a.vms == b.vms
    assert a.hosts == b.hosts
    def values(loads):
        return {h: tuple(getattr(v, k) for k in type(v).__slots__) for h, v in loads.items()}

    assert values(a.loads()) == values(b.loads())


def test_memoized_snapshot_equals_a_fresh_one(tmp_path):
    import vmctl
    from vmctl.api import invoke
    from vmctl.engine_adapter import _build_pool_state, pool_state

    db = tmp_path / "c.db"
    inv = vmctl.open(str(db))
    inv.run("pool-create", **{"name-label": "p"})
    for i in range(3):
        inv.run("host-add", **{"name-label": f"h{i}", "address": f"10.0.0.{i + 1}", "cpu-count": 8,
                               "memory-total": "32GiB", "pool": "p"})
    vms = [inv.run("vm-create", **{"name-label": f"v{i}", "memory": f"{1 + i % 3}GiB", "vcpus": 1 + i % 2})
           for i in range(8)]
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
