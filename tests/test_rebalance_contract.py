"""pool-rebalance (engine.md §5): the dry-run plan and what is applied are the same moves, the
imbalance never grows under spread and balanced, arguments are checked, every move is journalled,
and pack frees hosts."""

from __future__ import annotations

import json

import pytest
from test_migrate_contract import build, ids

SIZES = (2, 3, 4, 6, 2, 5, 3, 8, 4, 2, 1, 3)  # GiB


@pytest.fixture
def skewed(inv):
    """Four 64 GiB hosts; twelve VMs all on h1."""
    lines = [
        "pool-create name-label=p1",
        *(
            f"host-add name-label=h{i} address=10.0.0.{i} cpu-count=16 memory-total=64GiB pool=p1"
            for i in range(1, 5)
        ),
    ]
    for n, size in enumerate(SIZES):
        lines += [
            f"-- --id=@v{n} vm-create name-label=v{n} memory={size}GiB vcpus={1 + n % 3}",
            f"vm-start vm=@v{n} on=h1",
        ]
    build(inv, lines)
    return inv


def _residence(inv) -> dict[str, str]:
    return {
        r["uuid"]: r["resident-on"]
        for r in json.loads(inv.ok("vm-list", "params=uuid,resident-on", "-f", "json"))
    }


@pytest.mark.parametrize("policy", ["spread", pytest.param("balanced", marks=pytest.mark.slow)])
def test_apply_equals_the_dry_run_plan(skewed, policy):
    inv = skewed
    u = ids(inv)
    before = inv.snapshot()
    plan = json.loads(inv.ok("pool-rebalance", f"policy={policy}", "--dry-run", "-f", "json"))
    assert inv.snapshot() == before
    assert set(plan) >= {"policy", "threshold", "target", "sigma-before", "sigma-after", "moves"}
    assert plan["policy"] == policy and plan["threshold"] == 3
    moves = plan["moves"]
    assert moves and [m["step"] for m in moves] == sorted(m["step"] for m in moves)
    # every move improves the metric (gain ΔI > cost ≥ 0), so I never increases
    assert all(m["gain"] > 0 and m["gain"] > m["cost"] for m in moves if not m["mandatory"])
    if policy == "spread":
        steps = [(plan["sigma-before"]["memory"] + plan["sigma-before"]["vcpu"])]
        steps += [m["sigma-memory"] + m["sigma-vcpu"] for m in moves]
        assert all(b <= a + 1e-12 for a, b in zip(steps, steps[1:]))
        assert plan["sigma-after"]["memory"] < plan["sigma-before"]["memory"]
    text = inv.ok("pool-rebalance", f"policy={policy}", "--dry-run")
    assert text.splitlines()[0].split()[:6] == ["step", "vm", "name-label", "from", "to", "memory"]
    assert "sigma before: memory" in text and f"{len(moves)} move" in text and "makespan" in text

    assert inv.ok("pool-rebalance", f"policy={policy}") == ""
    want = _residence_after(before_res=_plan_start(plan, u), moves=moves)
    assert _residence(inv) == want
    inv.ok("db-check")
    moved = moves[0]["vm"]
    entry = json.loads(inv.ok("journal-list", f"object={moved}", "params=all", "-f", "json"))[-1]
    assert entry["command"].endswith(f"pool-rebalance policy={policy}")
    assert entry["changes"][f"vm:{moved}"]["resident-on"][1] == want[moved]
    # the plan reached its target: nothing more to do at the same threshold
    again = json.loads(inv.ok("pool-rebalance", f"policy={policy}", "--dry-run", "-f", "json"))
    if plan["stop-reason"] == "target-reached":
        assert again["moves"] == []


def _plan_start(plan, u) -> dict[str, str]:
    return {u[f"v{n}"]: u["h1"] for n in range(len(SIZES))}


def _residence_after(before_res: dict[str, str], moves: list[dict]) -> dict[str, str]:
    out = dict(before_res)
    for m in moves:
        assert out[m["vm"]] == m["from"]
        out[m["vm"]] = m["to"]
    return out


@pytest.mark.slow  # a large scenario through the real executable
def test_limits_thresholds_and_arguments(skewed):
    inv = skewed
    one = json.loads(inv.ok("pool-rebalance", "max-moves=1", "--dry-run", "-f", "json"))
    assert len(one["moves"]) == 1
    assert json.loads(inv.ok("pool-rebalance", "threshold=1", "--dry-run", "-f", "json"))["moves"] == []
    two = json.loads(inv.ok("pool-rebalance", "max-moves=2", "--dry-run", "-f", "json"))["moves"]
    assert (
        inv.ok("pool-rebalance", "max-moves=2", "--dry-run", "--minimal")
        == ",".join(m["vm"] for m in two) + "\n"
    )
    csv = inv.ok("pool-rebalance", "max-moves=1", "--dry-run", "-f", "csv").splitlines()
    assert (
        csv[0] == "step,vm,name-label,from,to,memory,gain,cost,sigma-memory,sigma-vcpu,time" and len(csv) == 2
    )
    five = json.loads(
        inv.ok("pool-rebalance", "threshold=5", "max-moves=unlimited", "--dry-run", "-f", "json")
    )
    assert len(five["moves"]) >= len(json.loads(inv.ok("pool-rebalance", "--dry-run", "-f", "json"))["moves"])
    for args, code in (
        (["threshold=0"], "INVALID_VALUE"),
        (["threshold=6"], "INVALID_VALUE"),
        (["threshold=x"], "INVALID_VALUE"),
        (["max-moves=-1"], "INVALID_VALUE"),
        (["max-moves=lots"], "INVALID_VALUE"),
        (["policy=random"], "INVALID_VALUE"),
        (["pool=nope"], "UUID_INVALID"),
    ):
        inv.fail("pool-rebalance", *args, code=code)


@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_pack_frees_hosts(inv):
    build(
        inv,
        [
            "pool-create name-label=p1",
            *(
                f"host-add name-label=h{i} address=10.0.0.{i} cpu-count=16 memory-total=64GiB pool=p1"
                for i in range(1, 4)
            ),
            *(
                x
                for n in range(6)
                for x in (
                    f"-- --id=@v{n} vm-create name-label=v{n} memory=2GiB",
                    f"vm-start vm=@v{n} on=h{1 + n % 3}",
                )
            ),
        ],
    )
    plan = json.loads(inv.ok("pool-rebalance", "policy=pack", "--dry-run", "-f", "json"))
    assert plan["freed-hosts"] and plan["moves"]
    assert "hosts freed:" in inv.ok("pool-rebalance", "policy=pack", "--dry-run")
    inv.ok("pool-rebalance", "policy=pack")
    counts = {
        r["uuid"]: r["resident-vm-count"]
        for r in json.loads(inv.ok("host-list", "params=uuid,resident-vm-count", "-f", "json"))
    }
    assert all(counts[h] == 0 for h in plan["freed-hosts"])
    inv.ok("db-check")


@pytest.mark.slow
def test_exchange_step_through_the_command(inv):
    """Two hosts whose loads point against each VM shape: no single move helps, one exchange
    (a 4 GiB VM out, a 24 GiB VM back) evens them; both moves are applied and journalled."""
    build(
        inv,
        [
            "pool-create name-label=p1",
            *(
                f"host-add name-label=h{i} address=10.0.0.{i} cpu-count=32 memory-total=192GiB pool=p1"
                for i in (1, 2)
            ),
            *(
                x
                for n, (host, vcpus, gib) in enumerate(
                    (("h1", 4, 4), ("h1", 4, 4), ("h2", 2, 24), ("h2", 2, 24))
                )
                for x in (
                    f"-- --id=@v{n} vm-create name-label=v{n} memory={gib}GiB vcpus={vcpus}",
                    f"vm-start vm=@v{n} on={host}",
                )
            ),
        ],
    )
    plan = json.loads(inv.ok("pool-rebalance", "threshold=4", "--dry-run", "-f", "json"))
    # both directions score the same (the tie goes to the smaller uuid going out): one small VM
    # and one large VM cross, in one step
    moves = plan["moves"]
    assert [(m["step"], m["exchange"]) for m in moves] == [(1, True), (1, True)]
    assert sorted(m["memory"] // 2**30 for m in moves) == [4, 24]
    assert moves[0]["from"] == moves[1]["to"] and moves[0]["to"] == moves[1]["from"]
    assert max(plan["sigma-after"].values()) < 1e-9 < min(plan["sigma-before"].values())
    text = inv.ok("pool-rebalance", "threshold=4", "--dry-run")
    assert "2 moves (1 exchange step)" in text
    inv.ok("pool-rebalance", "threshold=4")
    where = {
        r["name-label"]: r["resident-on"]
        for r in json.loads(inv.ok("vm-list", "params=name-label,resident-on", "-f", "json"))
    }
    hosts = {
        r["name-label"]: r["uuid"]
        for r in json.loads(inv.ok("host-list", "params=name-label,uuid", "-f", "json"))
    }
    assert {where["v0"], where["v1"]} == {where["v2"], where["v3"]} == {hosts["h1"], hosts["h2"]}
    for m in moves:
        entry = json.loads(inv.ok("journal-list", f"object={m['vm']}", "params=all", "-f", "json"))[-1]
        assert entry["command"].endswith("pool-rebalance threshold=4")
        assert entry["changes"][f"vm:{m['vm']}"]["resident-on"] == [m["from"], m["to"]]
    inv.ok("db-check")
