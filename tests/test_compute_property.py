"""Property: after any sequence of lifecycle commands (accepted or refused), no host is
overcommitted, every running or paused VM is resident on exactly one live host of its pool, and
`vmctl db-check` finds nothing (model.md §4 I1–I3)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from cli_helpers import with_txn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vmctl
from vmctl.errors import VmctlError

GiB = 1024**3
HOSTS = ("h1", "h2", "h3")
VMS = tuple(f"v{i}" for i in range(6))


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("prop") / "base.db"
    inv = vmctl.open(str(db))
    inv.run("pool-create", **{"name-label": "p"})
    for i, (mem, cpus) in enumerate(((8, 4), (12, 2), (6, 4)), 1):
        inv.run(
            "host-add",
            **{
                "name-label": f"h{i}",
                "address": f"10.0.0.{i}",
                "cpu-count": cpus,
                "memory-total": f"{mem}GiB",
                "pool": "p",
            },
        )

    def sr(t):
        pool = t.resolve_one("pool", "p")
        u = t.insert(
            "sr",
            {
                "name-label": "nfs",
                "type": "nfs",
                "shared": True,
                "physical-size": 40 * GiB,
                "pool": pool["uuid"],
            },
        )
        for h in t.select("host", pool=pool["uuid"]):
            t.insert("pbd", {"host": h["uuid"], "sr": u, "pool": pool["uuid"], "currently-attached": True})
        t.update("pool", pool["uuid"], {"default-sr": u})

    with_txn(db, sr)
    for i, (mem, cpus) in enumerate(((2, 1), (3, 2), (4, 4), (1, 1), (5, 2), (2, 8))):
        inv.run(
            "vm-create",
            **{
                "name-label": f"v{i}",
                "memory": f"{mem}GiB",
                "vcpus": cpus,
                "ha-restart-priority": ("restart", "best-effort", "no-restart")[i % 3],
            },
        )
    return db


vm_ops = st.sampled_from(
    [
        "start",
        "start-paused",
        "shutdown",
        "hard-shutdown",
        "reboot",
        "hard-reboot",
        "suspend",
        "resume",
        "pause",
        "unpause",
        "reset",
        "grow",
    ]
)
host_ops = st.sampled_from(["start-on", "fail", "recover", "disable", "enable"])
step = st.one_of(
    st.tuples(vm_ops, st.sampled_from(VMS), st.just("")),
    st.tuples(host_ops, st.sampled_from(VMS), st.sampled_from(HOSTS)),
    st.tuples(st.just("start-all"), st.just(""), st.just("")),
    st.tuples(st.just("ha"), st.just(""), st.sampled_from(["on", "off"])),
)

CALLS = {
    "start": ("vm-start", {}),
    "start-paused": ("vm-start", {"--paused": True}),
    "shutdown": ("vm-shutdown", {}),
    "hard-shutdown": ("vm-shutdown", {"--force": True}),
    "reboot": ("vm-reboot", {}),
    "hard-reboot": ("vm-reboot", {"--force": True}),
    "suspend": ("vm-suspend", {}),
    "resume": ("vm-resume", {}),
    "pause": ("vm-pause", {}),
    "unpause": ("vm-unpause", {}),
    "reset": ("vm-reset-powerstate", {"--force": True}),
    "grow": ("vm-memory-dynamic-range-set", {"min": "3GiB", "max": "6GiB"}),
}


def apply(inv, op: str, vm: str, host: str) -> None:
    if op in CALLS:
        cmd, extra = CALLS[op]
        inv.run(cmd, vm=vm, **extra)
    elif op == "start-on":
        inv.run("vm-start", vm=vm, on=host)
    elif op == "fail":
        inv.run("host-fail", host=host)
    elif op == "recover":
        inv.run("host-recover", host=host)
    elif op == "disable":
        inv.run("host-disable", host=host)
    elif op == "enable":
        inv.run("host-enable", host=host)
    elif op == "start-all":
        inv.run("vm-start", **{"power-state": "halted", "--multiple": True})
    elif op == "ha":
        inv.run("pool-ha-enable" if host == "on" else "pool-ha-disable")


def check_invariants(db: Path) -> None:
    from vmctl import capacity
    from vmctl.invariants import check

    def fn(t):
        hosts = {h["uuid"]: h for h in t.all("host")}
        policy = t.all("pool")[0]["memory-overcommit-policy"]
        used: dict[str, int] = {}
        for v in t.all("vm"):
            if v["power-state"] in ("running", "paused"):
                h = hosts.get(v["resident-on"])
                assert h is not None and h["live"] and h["pool"] == v["pool"], v
                assert v["domid"] >= 1
                used[h["uuid"]] = used.get(h["uuid"], 0) + capacity.vm_charge(v, policy)
            else:
                assert v["resident-on"] == "" and v["domid"] == -1, v
            assert (v["power-state"] == "suspended") == bool(v["suspend-vdi"]), v
        for u, n in used.items():
            assert n <= capacity.host_capacity(hosts[u])
        domids = [(v["resident-on"], v["domid"]) for v in t.all("vm") if v["resident-on"]]
        assert len(domids) == len(set(domids))
        return check(t)

    assert with_txn(db, fn, write=False) == []


STEPS = st.lists(step, min_size=1, max_size=14)
SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}


@pytest.mark.slow
@settings(max_examples=30, **SETTINGS)
@given(steps=STEPS)
def test_random_lifecycle_sequences_keep_the_invariants(template: Path, steps) -> None:
    _sequence_keeps_the_invariants(template, steps)


@settings(max_examples=5, **SETTINGS)
@given(steps=STEPS)
def test_random_lifecycle_sequences_keep_the_invariants_few_examples(template: Path, steps) -> None:
    _sequence_keeps_the_invariants(template, steps)


def _sequence_keeps_the_invariants(template: Path, steps) -> None:
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "x.db"
        shutil.copy(template, db)
        inv = vmctl.open(str(db))
        for op, vm, host in steps:
            try:
                apply(inv, op, vm, host)
            except VmctlError as e:
                # refusals are expected; an internal invariant failure never is
                assert e.code != "INTERNAL_ERROR", (op, vm, host, e.params)
        check_invariants(db)
