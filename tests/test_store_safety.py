"""Safety of the store: lock timeouts, concurrent writers (SQLite and PostgreSQL), a process
killed mid-transaction, and random command sequences that must never break an invariant."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
import yaml
from cli_helpers import VMCTL, cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pgserver import pg_db, pg_url  # noqa: F401  (fixtures)


def test_lock_timeout_exits_75_and_reads_do_not_block(small):
    hold = sqlite3.connect(small.db, isolation_level=None)
    hold.execute("BEGIN IMMEDIATE")
    try:
        t0 = time.monotonic()
        r = small.run("-t", "1", "vm-create", "name-label=late")
        assert r.rc == 75 and r.out == ""
        assert r.err.startswith("vmctl: INVENTORY_BUSY:")
        assert time.monotonic() - t0 < 20
        assert "web1" in small.ok("vm-list")  # WAL: readers never wait for the writer
        assert "web1" in small.ok("vm-list", "-f", "csv", "params=name-label", "vcpus=2")
    finally:
        hold.execute("ROLLBACK")
        hold.close()
    assert small.ok("vm-list", "name-label=late", "--minimal") == "\n"


WORKER = textwrap.dedent("""
    import sys, vmctl
    from vmctl.errors import VmctlError
    db, k, n, shared = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    inv = vmctl.open(db, timeout=120)
    failures = 0
    for i in range(n):
        try:
            inv.run("vm-create", **{"name-label": f"w{k}-{i}"})
            inv.run("vm-param-set", uuid=shared, **{f"other-config:w{k}-{i}": str(i)})
        except VmctlError as e:
            failures += 1
            print(e.code, e.message, file=sys.stderr)
    print(failures)
""")


def _hammer(db: str, workers: int = 8, each: int = 100):
    inv = __import__("vmctl").open(db)
    inv.run("pool-create", **{"name-label": "p"})
    shared = inv.run("vm-create", **{"name-label": "shared"})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, db, str(k), str(each), shared],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(workers)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    for (out, err), p in zip(outs, procs):
        assert p.returncode == 0, err
        assert out.strip() == "0", err  # no update failed, "database is locked" never surfaced
    oc = inv.run("vm-param-get", uuid=shared, **{"param-name": "other-config"})
    keys = {kv.split(":")[0] for kv in oc.split("; ")} if isinstance(oc, str) else set(oc)
    assert keys == {f"w{k}-{i}" for k in range(workers) for i in range(each)}  # no lost update
    names = {r["name-label"] for r in inv.run("vm-list", params="name-label")}
    assert len(names) == workers * each + 1
    journal = inv.run("journal-list")
    assert [r["seq"] for r in journal] == list(range(1, len(journal) + 1))
    assert len(journal) == 2 + 2 * workers * each


@pytest.mark.slow
def test_concurrent_writers_sqlite(tmp_path):
    _hammer(str(tmp_path / "c.db"))


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_writers_postgresql(pg_db):  # noqa: F811
    _hammer(pg_db)


@pytest.mark.postgres
def test_postgresql_chain_rollback_and_journal(pg_db):  # noqa: F811
    from cli_helpers import Inventory

    inv = Inventory(pg_db)
    env = {"VMCTL_DB": pg_db}
    inv.ok("pool-create", "name-label=p", "--", "vm-create", "name-label=a", "memory=2GiB", env=env)
    r = inv.run("vm-create", "name-label=b", "--", "vm-create", "name-label=c", "vcpus=0", env=env)
    assert r.rc == 1 and r.out == "" and "INVALID_VALUE" in r.err
    assert inv.ok("vm-list", "params=name-label", "--minimal", env=env) == "a\n"
    assert inv.ok("--dry-run", "vm-create", "name-label=d", env=env).strip()
    assert json.loads(inv.ok("journal-list", "-f", "json", env=env))[-1]["seq"] == 1
    assert inv.ok("db-check", env=env) == "db-check: all 16 invariants hold\n"


@pytest.mark.slow
def test_sigkill_mid_batch_leaves_inventory_unchanged(small, tmp_path):
    before = small.snapshot()
    f = tmp_path / "big.yaml"
    f.write_text(yaml.safe_dump([f"vm-create name-label=k{i} memory=1GiB" for i in range(40000)]))
    p = subprocess.Popen(
        [*VMCTL, "batch", str(f)], env=small.env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    time.sleep(4.0)
    assert p.poll() is None, "the batch finished before it could be killed: make it larger"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert small.snapshot() == before
    assert small.ok("db-check") == "db-check: all 16 invariants hold\n"
    small.ok("vm-create", "name-label=after")  # and the inventory is still usable


# --- property test: random command sequences ---------------------------------------------------------
NAMES = st.sampled_from(["a", "b", "web", "db,1", "ü", "", "x y"])
SIZES = st.sampled_from(
    ["1GiB", "512MiB", "8MiB", "2G", "0", "-1", "1.5GiB", "3XB", "99999999999999999999T", "4096"]
)
INTS = st.sampled_from(["1", "2", "0", "257", "-3", "x", "64"])
FIELDS = st.sampled_from(
    [
        "vcpus",
        "memory-static-max",
        "memory-dynamic-max",
        "memory-dynamic-min",
        "memory-static-min",
        "memory-reservation",
        "name-label",
        "power-state",
        "ha-restart-priority",
        "order",
        "tags",
        "other-config:k",
        "is-a-template",
        "affinity",
        "bogus",
    ]
)


@st.composite
def command(draw):
    kind = draw(st.sampled_from(["pool", "host", "vm", "set", "add", "remove", "destroy", "chain", "dry"]))
    if kind == "pool":
        return ["pool-create", f"name-label={draw(NAMES)}"]
    if kind == "host":
        return [
            "host-add",
            f"name-label={draw(NAMES)}",
            f"address=10.0.0.{draw(st.integers(1, 4))}",
            f"cpu-count={draw(INTS)}",
            f"memory-total={draw(SIZES)}",
            "pool=p",
        ]
    if kind == "vm":
        return ["vm-create", f"name-label={draw(NAMES)}", f"memory={draw(SIZES)}", f"vcpus={draw(INTS)}"]
    if kind == "set":
        return [
            "vm-param-set",
            f"uuid={draw(NAMES)}",
            f"{draw(FIELDS)}={draw(st.one_of(SIZES, INTS, NAMES))}",
        ]
    if kind == "add":
        return ["vm-param-add", f"uuid={draw(NAMES)}", "param-name=other-config", f"{draw(NAMES) or 'k'}=v"]
    if kind == "remove":
        return ["vm-param-remove", f"uuid={draw(NAMES)}", "param-name=tags", f"param-key={draw(NAMES)}"]
    if kind == "destroy":
        return ["vm-destroy", f"uuid={draw(NAMES)}"]
    if kind == "dry":
        return ["--dry-run", *draw(command())]
    return [*draw(command()), "--", *draw(command())]


COMMANDS = st.lists(command(), min_size=1, max_size=12)
SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


@pytest.mark.slow
@settings(max_examples=40, **SETTINGS)
@given(COMMANDS)
def test_random_sequences_never_trace_and_keep_invariants(tmp_path_factory, cmds):
    _sequence_never_traces_and_keeps_invariants(tmp_path_factory, cmds)


@settings(max_examples=8, **SETTINGS)
@given(COMMANDS)
def test_random_sequences_never_trace_and_keep_invariants_few_examples(tmp_path_factory, cmds):
    _sequence_never_traces_and_keeps_invariants(tmp_path_factory, cmds)


def _sequence_never_traces_and_keeps_invariants(tmp_path_factory, cmds):
    db = str(tmp_path_factory.mktemp("prop") / "p.db")

    def run(words):
        r = cli(db, *words)
        return r.returncode, r.stdout, r.stderr

    run(["pool-create", "name-label=p"])
    for words in cmds:
        rc, out, err = run(words)
        assert "Traceback" not in err and "INTERNAL_ERROR" not in err, (words, err)
        assert rc in (0, 1), (words, rc, err)
        if rc == 1:
            assert out == "" and err.startswith("vmctl: "), (words, out, err)
    rc, out, err = run(["db-check"])
    assert rc == 0 and out == "db-check: all 16 invariants hold\n", out + err
