"""HA through the commands (engine.md §3): max failures against an independent brute force on
small inventories, the hypothetical variant, enable/disable rules, admission control on the
operations of §3.4, and host failure with restarts."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from cli_helpers import cli, run_cli, with_txn

import vmctl
from vmctl.errors import VmctlError

GiB, MiB = 1024**3, 1024**2


def db_problems(db: Path) -> list:
    from vmctl.invariants import check

    return with_txn(db, check, write=False)


# --- the independent brute force --------------------------------------------------------------------------------
def overhead(vcpus: int, static_max: int) -> int:
    raw = 4 * MiB + vcpus * MiB + -(-static_max // 128)
    return -(-raw // MiB) * MiB


def brute_max(db: Path, priorities: dict[str, str] | None = None) -> int:
    """Largest r such that every set of r live enabled hosts failing leaves a placement of their
    protected VMs (full static memory, vCPUs within cpu-count × ratio) on the survivors, scanning
    r = 1, 2, ... and stopping at the first r without one (engine.md §3.3)."""
    prio = priorities or {}

    def read(t):
        pool = t.all("pool")[0]
        hosts = [h for h in t.all("host") if h["live"] and h["enabled"]]
        vms = [v for v in t.all("vm") if v["power-state"] in ("running", "paused")]
        return pool, hosts, vms

    pool, hosts, vms = with_txn(db, read, write=False)
    ratio = pool["vcpu-allocation-ratio"]
    cap = {
        h["uuid"]: [h["memory-total"] - h["memory-overhead"], int(h["cpu-count"] * ratio + 1e-9)]
        for h in hosts
    }
    cpus = {h["uuid"]: h["cpu-count"] for h in hosts}
    free = {u: list(c) for u, c in cap.items()}
    prot: dict[str, list[tuple[int, int]]] = {u: [] for u in cap}
    for v in vms:
        need = (v["memory-static-max"] + overhead(v["vcpus"], v["memory-static-max"]), v["vcpus"])
        if v["resident-on"] in free:
            free[v["resident-on"]][0] -= need[0]
            free[v["resident-on"]][1] -= need[1]
            if prio.get(v["uuid"], v["ha-restart-priority"]) == "restart":
                prot[v["resident-on"]].append(need)
    n = len(cap)

    def fits(items, surv_free, surv) -> bool:
        if not items:
            return True
        (m, c), rest = items[0], items[1:]
        for s in surv:
            f = surv_free[s]
            if f[0] >= m and f[1] >= c and c <= cpus[s]:
                f[0] -= m
                f[1] -= c
                ok = fits(rest, surv_free, surv)
                f[0] += m
                f[1] += c
                if ok:
                    return True
        return False

    best = 0
    for r in range(1, n):
        for failed in itertools.combinations(sorted(cap), r):
            surv = [u for u in sorted(cap) if u not in failed]
            items = sorted((x for u in failed for x in prot[u]), reverse=True)
            if not fits(items, {u: list(free[u]) for u in surv}, surv):
                return best
        best = r
    return best


def build(db: Path, rng: random.Random) -> vmctl.api.Inventory:
    inv = vmctl.open(str(db))
    inv.run("pool-create", **{"name-label": "p"})
    n = rng.randint(2, 5)
    for i in range(n):
        inv.run(
            "host-add",
            **{
                "name-label": f"h{i}",
                "address": f"10.0.0.{i + 1}",
                "cpu-count": rng.choice([2, 4]),
                "memory-total": f"{rng.choice([6, 8, 12, 16])}GiB",
                "pool": "p",
            },
        )
    for j in range(rng.randint(1, 9)):
        prio = rng.choice(["restart", "restart", "best-effort", "no-restart"])
        inv.run(
            "vm-create",
            **{
                "name-label": f"v{j}",
                "memory": f"{rng.choice([1, 2, 3, 4])}GiB",
                "vcpus": rng.choice([1, 2]),
                "ha-restart-priority": prio,
            },
        )
        try:
            inv.run("vm-start", vm=f"v{j}", on=f"h{rng.randrange(n)}")
        except VmctlError:
            pass  # that host is full: the VM stays halted
    return inv


@pytest.mark.parametrize(
    "seed", [*range(4), *(pytest.param(s, marks=pytest.mark.slow) for s in range(4, 14))]
)
def test_max_failures_equals_brute_force(tmp_path: Path, seed: int) -> None:
    db = tmp_path / "ha.db"
    inv = build(db, random.Random(seed))
    got = inv.run("pool-ha-compute-max-host-failures-to-tolerate")
    assert got["max"] == brute_max(db), got
    assert got["max"] <= got["upper-bound"]
    # the hypothetical question: every running VM protected
    running = with_txn(
        db, lambda t: sorted(v["uuid"] for v in t.all("vm") if v["power-state"] == "running"), False
    )
    if running:
        words = [w for u in running for w in (f"vm-uuid={u}", "restart-priority=restart")]
        r = (
            run_cli(db, "-f", "json", "pool-ha-compute-hypothetical-max-host-failures-to-tolerate", *words)
            if seed < 3
            else None
        )
        hyp = json.loads(r.stdout)["max"] if r is not None else _hyp_api(inv, running)
        assert hyp == brute_max(db, {u: "restart" for u in running})


def _hyp_api(inv, running: list[str]) -> int:
    from vmctl.cli.bind import bind, lookup
    from vmctl.cli.grammar import Segment
    from vmctl.runner import Options, Runner

    words = [w for u in running for w in (f"vm-uuid={u}", "restart-priority=restart")]
    name = "pool-ha-compute-hypothetical-max-host-failures-to-tolerate"
    b = bind(lookup(name), Segment(name=name, args=words))
    return Runner(Options(db=inv.opts.db), "test").run([b])[0].data["max"]


# --- enable, admission, failure ---------------------------------------------------------------------------------
@pytest.fixture()
def ha3(tmp_path: Path) -> Path:
    """3 hosts of 8 GiB; four 2 GiB protected VMs spread by hand, one best-effort, one no-restart."""
    db = tmp_path / "ha3.db"
    inv = vmctl.open(str(db))
    inv.run("pool-create", **{"name-label": "p"})
    for i in (1, 2, 3):
        inv.run(
            "host-add",
            **{
                "name-label": f"h{i}",
                "address": f"10.0.0.{i}",
                "cpu-count": 4,
                "memory-total": "8GiB",
                "pool": "p",
            },
        )
    # the SR for HA's statefile (xapi_ha.enable: CANNOT_CREATE_STATE_FILE without one)
    inv.run("sr-create", **{"name-label": "nfs", "type": "nfs", "physical-size": "100GiB", "pool": "p"})
    for name, host, prio in (
        ("a", "h1", "restart"),
        ("b", "h1", "restart"),
        ("c", "h2", "restart"),
        ("d", "h3", "restart"),
        ("e", "h2", "best-effort"),
        ("f", "h3", "no-restart"),
    ):
        inv.run("vm-create", **{"name-label": name, "memory": "2GiB", "ha-restart-priority": prio})
        inv.run("vm-start", vm=name, on=host)
    return db


def pool_row(db: Path) -> dict:
    return with_txn(db, lambda t: t.all("pool")[0], False)


def vm(db: Path, name: str) -> dict:
    return with_txn(db, lambda t: t.resolve_one("vm", name), False)


def test_enable_rules(tmp_path: Path, ha3: Path) -> None:
    """xapi_ha.enable: a statefile SR is needed (CANNOT_CREATE_STATE_FILE), a one-host pool is
    fine, a pool without a failover plan is enabled and marked overcommitted
    (Xapi_ha_vm_failover.update_pool_status), HA_IS_ENABLED when enabled, HOST_OFFLINE for a host
    that is not live."""
    one = tmp_path / "one.db"
    inv1 = vmctl.open(str(one))
    inv1.run("pool-create", **{"name-label": "p"})
    inv1.run(
        "host-add",
        **{"name-label": "h1", "address": "10.0.0.1", "cpu-count": 4, "memory-total": "8GiB", "pool": "p"},
    )
    r = run_cli(one, "pool-ha-enable")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: CANNOT_CREATE_STATE_FILE")
    inv1.run("sr-create", **{"name-label": "local", "type": "ext", "physical-size": "10GiB", "host": "h1"})
    inv1.run("pool-ha-enable")
    assert pool_row(one)["ha-enabled"]
    inv = vmctl.open(str(ha3))
    # a plan for 2 failures does not exist: enabled, overcommitted, planned for what holds
    inv.run("pool-ha-enable", **{"ha-host-failures-to-tolerate": 2})
    p = pool_row(ha3)
    assert (p["ha-enabled"], p["ha-plan-exists-for"], p["ha-overcommitted"]) == (True, 1, True)
    inv.run("pool-ha-disable")
    inv.run("pool-param-set", uuid=p["uuid"], **{"ha-host-failures-to-tolerate": 1})
    inv.run("pool-ha-enable")
    p = pool_row(ha3)
    assert (p["ha-enabled"], p["ha-plan-exists-for"], p["ha-overcommitted"]) == (True, 1, False)
    r = cli(ha3, "pool-ha-enable")
    assert r.returncode == 1 and "HA_IS_ENABLED" in r.stderr
    inv.run("pool-ha-disable")
    inv.run("pool-ha-disable")
    assert not pool_row(ha3)["ha-enabled"]
    inv.run("host-fail", host="h3")
    r = cli(ha3, "pool-ha-enable")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: HOST_OFFLINE")


def test_agility(ha3: Path) -> None:
    """xapi_vm.set_ha_restart_priority checks no agility: a VM with a local disk may be given
    `restart` while HA is off; under HA a running one is admitted against the plan, which it
    breaks (assert_new_vm_preserves_ha_plan)."""
    pool = pool_row(ha3)["uuid"]
    h3 = with_txn(ha3, lambda t: t.resolve_one("host", "h3")["uuid"], False)  # where f runs

    def local_disk(t):
        sr = t.insert(
            "sr", {"name-label": "local", "type": "ext", "host": h3, "physical-size": 10 * GiB, "pool": pool}
        )
        t.insert("pbd", {"host": h3, "sr": sr, "pool": pool, "currently-attached": True})
        d = t.insert("vdi", {"name-label": "disk", "sr": sr, "virtual-size": GiB, "pool": pool})
        t.insert("vbd", {"vm": t.resolve_one("vm", "f")["uuid"], "vdi": d, "device": 0, "pool": pool})

    with_txn(ha3, local_disk)
    f = vm(ha3, "f")["uuid"]
    r = cli(ha3, "vm-param-set", f"uuid={f}", "ha-restart-priority=restart")
    assert r.returncode == 0, r.stderr
    r = cli(ha3, "vm-param-set", f"uuid={f}", "ha-restart-priority=no-restart", "--", "pool-ha-enable")
    assert r.returncode == 0, r.stderr
    r = cli(ha3, "vm-param-set", f"uuid={f}", "ha-restart-priority=restart")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN")
    assert vm(ha3, "f")["ha-restart-priority"] == "no-restart"


def test_admission_control(ha3: Path) -> None:
    inv = vmctl.open(str(ha3))
    inv.run("vm-create", **{"name-label": "k", "memory": "3GiB"})
    inv.run("vm-start", vm="k", on="h1")
    inv.run("pool-ha-enable")
    # h1 has 4 GiB protected; the survivors of any single failure must take it
    inv.run("vm-create", **{"name-label": "g", "memory": "3GiB", "ha-restart-priority": "restart"})
    r = cli(ha3, "vm-start", "vm=g", "on=h2")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN")
    r = cli(ha3, "host-disable", "host=h2")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN")
    assert with_txn(ha3, lambda t: t.resolve_one("host", "h2")["enabled"], False)
    r = cli(ha3, "vm-param-set", f"uuid={vm(ha3, 'k')['uuid']}", "ha-restart-priority=restart")
    assert r.returncode == 1 and "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN" in r.stderr
    r = cli(ha3, "pool-param-set", f"uuid={pool_row(ha3)['uuid']}", "ha-host-failures-to-tolerate=2")
    assert r.returncode == 1 and "HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN" in r.stderr
    # lowering is always fine; overcommit allowed lets operations through and marks the pool
    r = cli(
        ha3,
        "pool-param-set",
        f"uuid={pool_row(ha3)['uuid']}",
        "ha-allow-overcommit=true",
        "--",
        "vm-start",
        "vm=g",
        "on=h2",
    )
    assert r.returncode == 0, r.stderr
    p = pool_row(ha3)
    assert (p["ha-overcommitted"], p["ha-plan-exists-for"]) == (True, 0)
    assert db_problems(ha3) == []


def test_host_fail_restarts_and_recover(ha3: Path) -> None:
    inv = vmctl.open(str(ha3))
    inv.run("pool-ha-enable")
    plan = inv.run("pool-ha-compute-vm-failover-plan", **{"host-uuids": "h1"})
    assert [(r["name-label"], r["error"]) for r in plan] == [("a", None), ("b", None)] or sorted(
        r["name-label"] for r in plan
    ) == ["a", "b"]
    dry = cli(ha3, "--dry-run", "-f", "json", "host-fail", "host=h2")
    assert dry.returncode == 0, dry.stderr
    rows = {r["name-label"]: r for r in json.loads(dry.stdout)}
    assert rows["c"]["result"] == "restarted" and rows["e"]["priority"] == "best-effort"
    assert vm(ha3, "c")["resident-on"] == with_txn(ha3, lambda t: t.resolve_one("host", "h2")["uuid"], False)
    r = cli(ha3, "host-fail", "host=h3")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    h3 = with_txn(ha3, lambda t: t.resolve_one("host", "h3"), False)
    assert not h3["live"]
    d, f = vm(ha3, "d"), vm(ha3, "f")
    assert d["power-state"] == "running" and d["resident-on"] != h3["uuid"]
    assert f["power-state"] == "halted" and f["resident-on"] == ""
    assert db_problems(ha3) == []
    r = cli(ha3, "vm-start", "vm=f", "on=h3")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: HOST_NOT_LIVE")
    inv.run("host-recover", host="h3")
    assert with_txn(ha3, lambda t: t.resolve_one("host", "h3")["live"], False)
    assert vm(ha3, "d")["resident-on"] != h3["uuid"]  # VMs do not move back
    inv.run("host-declare-dead", uuid=h3["uuid"])
    assert not with_txn(ha3, lambda t: t.resolve_one("host", "h3")["live"], False)
    assert db_problems(ha3) == []


def test_host_fail_without_ha_halts_everything(ha3: Path) -> None:
    r = cli(ha3, "host-fail", "host=h1,h2", "--explain")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["vm", "name-label", "priority", "result", "host/code"]
    assert all(line.split()[3] == "halted" for line in r.stdout.splitlines()[1:])
    assert all(vm(ha3, n)["power-state"] == "running" for n in "abce")  # --explain only explains
    r = cli(ha3, "host-fail", "host=h1,h2")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert all(vm(ha3, n)["power-state"] == "halted" for n in "abce")
    assert vm(ha3, "d")["power-state"] == "running"
    assert db_problems(ha3) == []


def test_disk_change_breaking_agility_is_refused_under_ha(ha3: Path) -> None:
    inv = vmctl.open(str(ha3))
    inv.run("sr-create", **{"name-label": "loc", "type": "ext", "physical-size": "10GiB", "host": "h1"})
    inv.run("vm-create", **{"name-label": "z", "memory": "1GiB"})
    inv.run("vm-start", vm="z", on="h1")
    inv.run("pool-ha-enable")
    r = cli(ha3, "vm-disk-add", "vm=a", "disk-size=1GiB", "sr-uuid=loc")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: HA_CONSTRAINT_VIOLATION_SR_NOT_SHARED")
    r = cli(ha3, "vm-disk-add", "vm=z", "disk-size=1GiB", "sr-uuid=loc")  # not protected: fine
    assert r.returncode == 0, r.stderr
