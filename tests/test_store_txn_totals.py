"""txn.total: aggregates kept current through inserts, updates and deletes of a transaction
equal a fresh GROUP BY after commit."""

from __future__ import annotations

import random

from vmctl.store.txn import Store


def test_totals_follow_writes(tmp_path):
    s = Store(str(tmp_path / "t.db"))
    rng = random.Random(3)

    def body(txn):
        pool = txn.insert("pool", {"name-label": "p"})
        srs = [
            txn.insert("sr", {"name-label": f"s{i}", "pool": pool, "physical-size": 1 << 40})
            for i in range(3)
        ]
        assert txn.total("vdi", "physical-utilisation", "sr", srs[0]) == 0
        vdis = []
        for i in range(200):
            op = rng.random()
            if op < 0.6 or not vdis:
                vdis.append(
                    txn.insert(
                        "vdi",
                        {
                            "sr": rng.choice(srs),
                            "pool": pool,
                            "virtual-size": 1 << 30,
                            "physical-utilisation": rng.randrange(1 << 30),
                            "managed": rng.random() < 0.8,
                        },
                    )
                )
            elif op < 0.85:
                txn.update(
                    "vdi",
                    rng.choice(vdis),
                    {
                        "physical-utilisation": rng.randrange(1 << 30),
                        "sr": rng.choice(srs),
                        "managed": rng.random() < 0.5,
                    },
                )
            else:
                txn.delete("vdi", vdis.pop(rng.randrange(len(vdis))))
            if i % 50 == 0:
                txn.total("vdi", "virtual-size", "sr", srs[1], only=("managed", True))
        return srs, {
            u: (
                txn.total("vdi", "physical-utilisation", "sr", u),
                txn.total("vdi", "virtual-size", "sr", u, only=("managed", True)),
            )
            for u in srs
        }

    (srs, kept), _ = s.run(body, True, finish=lambda t: s.append_journal(t, "x"))

    def fresh(txn):
        rows = txn.all("vdi")
        return {
            u: (
                sum(r["physical-utilisation"] for r in rows if r["sr"] == u),
                sum(r["virtual-size"] for r in rows if r["sr"] == u and r["managed"]),
            )
            for u in srs
        }

    assert s.run(fresh, False)[0] == kept
    s.dispose()
