"""txn.select and txn.exists: a class the transaction has read whole is answered through
equality indexes that inserts, updates and deletes keep current; the answers (which rows, which
dicts, in which order) are those of a scan of the rows, and those of the SQL query a class not
yet read whole gets."""

from __future__ import annotations

import random

from vmctl.store.txn import Store


def _scan(txn, cls: str, **where) -> list[dict]:
    crit = {k.replace("_", "-"): v for k, v in where.items()}
    return [r for r in txn.all(cls) if all(r[k] == v for k, v in crit.items())]


def _ids(rows: list[dict]) -> list[int]:
    return [id(r) for r in rows]


def _queries(nets: list[str], vms: list[str]) -> list[dict]:
    qs: list[dict] = [{"network": n} for n in nets]
    qs += [{"network": n, "plugged": True} for n in nets]
    qs += [{"vm": v, "device": d} for v in vms[:5] for d in range(3)]
    qs += [{"plugged": False}, {"mac": "02:00:00:00:00:07"}, {"vm": "no-such-vm"}]
    return qs


def test_indexed_answers_equal_scans_through_writes(tmp_path):
    s = Store(str(tmp_path / "t.db"))
    rng = random.Random(11)

    def body(txn):
        pool = txn.insert("pool", {"name-label": "p"})
        nets = [txn.insert("network", {"name-label": f"n{i}", "pool": pool}) for i in range(4)]
        vms = [txn.insert("vm", {"name-label": f"vm{i}", "pool": pool}) for i in range(30)]
        txn.all("vif")  # read whole from the start: every select below goes through the indexes
        vifs: list[str] = []
        for i in range(600):
            op = rng.random()
            if op < 0.5 or not vifs:
                vifs.append(
                    txn.insert(
                        "vif",
                        {
                            "vm": rng.choice(vms),
                            "network": rng.choice(nets),
                            "device": rng.randrange(3),
                            "mac": f"02:00:00:00:00:{rng.randrange(16):02x}",
                            "plugged": rng.random() < 0.5,
                            "pool": pool,
                        },
                    )
                )
            elif op < 0.85:
                # moves rows between buckets, often an older row into a bucket of newer ones
                txn.update(
                    "vif",
                    rng.choice(vifs),
                    {"network": rng.choice(nets), "plugged": rng.random() < 0.5, "device": rng.randrange(3)},
                )
            else:
                txn.delete("vif", vifs.pop(rng.randrange(len(vifs))))
            if i % 20 == 0:
                for q in _queries(nets, vms):
                    got = txn.select("vif", **q)
                    assert _ids(got) == _ids(_scan(txn, "vif", **q)), q
                    assert txn.exists("vif", **q) == bool(got), q
        return nets, vms

    (nets, vms), _ = s.run(body, True, finish=lambda t: s.append_journal(t, "x"))

    def fresh(txn):
        # a new transaction: the first query of each kind is answered by SQL, the later ones
        # from memory once the class was read whole; both give the stored rows in the same order
        answers = [[r["uuid"] for r in txn.select("vif", **q)] for q in _queries(nets, vms)]
        assert "vif" in txn._complete
        again = [[r["uuid"] for r in txn.select("vif", **q)] for q in _queries(nets, vms)]
        return answers, again

    (answers, again), _ = s.run(fresh, False)
    assert answers == again
    assert any(len(a) > 1 for a in answers)
    s.dispose()


def test_rows_read_before_the_whole_class_keep_the_stored_order(tmp_path):
    """Rows a transaction fetched one by one before reading their class whole are neither
    duplicated nor moved first: the order stays the database's, whichever way a select is
    answered."""
    s = Store(str(tmp_path / "t.db"))

    def build(txn):
        pool = txn.insert("pool", {"name-label": "p"})
        return [txn.insert("vm", {"name-label": "same", "pool": pool}) for _ in range(40)]

    vms, _ = s.run(build, True, finish=lambda t: s.append_journal(t, "x"))

    def body(txn):
        for u in reversed(vms):  # into the identity map newest first
            txn.get("vm", u)
        by_sql = txn.select("vm", name_label="same")
        by_scan = txn.all("vm")
        by_index = txn.select("vm", name_label="same")
        return by_sql, by_scan, by_index

    (by_sql, by_scan, by_index), _ = s.run(body, False)
    assert [r["uuid"] for r in by_sql] == vms
    assert _ids(by_scan) == _ids(by_sql) and _ids(by_index) == _ids(by_sql)
    s.dispose()


def _statements(s: Store, fn) -> list[str]:
    """The SQL statements fn(txn) makes in a read-only transaction."""
    from sqlalchemy import event

    seen: list[str] = []

    def body(txn):
        event.listen(txn.conn, "before_cursor_execute", lambda conn, cursor, stmt, *a: seen.append(stmt))
        fn(txn)

    s.run(body, False)
    return seen


def test_a_class_queried_again_and_again_is_read_whole_once(tmp_path):
    """Queries of a class cost SQL statements until they have cost about as many rows as it
    holds; then it is read once and the next queries cost none. A query SQL narrows only to the
    pool reads the pool's share of the class: in a one-pool inventory, all of it."""
    s = Store(str(tmp_path / "t.db"))

    def build(txn):
        pool = txn.insert("pool", {"name-label": "p"})
        vms = [txn.insert("vm", {"name-label": f"vm{i}", "pool": pool}) for i in range(400)]
        for i, u in enumerate(vms):
            txn.insert("vif", {"vm": u, "mac": f"02:00:00:00:{i // 256:02x}:{i % 256:02x}", "pool": pool})
        return pool, vms

    (pool, vms), _ = s.run(build, True, finish=lambda t: s.append_journal(t, "x"))

    def by_name(txn):
        for i, u in enumerate(vms):
            assert txn.select("vm", name_label=f"vm{i}")[0]["uuid"] == u

    # 400 lookups by an indexed name: a few dozen statements, then one read of the class
    named = len(_statements(s, by_name))
    assert 1 < named < 60

    def by_mac(txn):
        for i in range(400):
            assert txn.exists("vif", pool=pool, mac=f"02:00:00:00:{i // 256:02x}:{i % 256:02x}")

    # 400 lookups by pool and an unindexed MAC, each scanning the whole pool: read sooner
    assert 1 < len(_statements(s, by_mac)) < named
    s.dispose()
