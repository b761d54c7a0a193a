"""VM groups with placement rules and the host commands (model.md §1.4, §3.2; engine.md §2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import cli, run_cli, with_txn

import vmctl
from vmctl.errors import VmctlError


def row(db: Path, cls: str, name: str) -> dict | None:
    def fn(t):
        rows = t.select(cls, name_label=name)
        return rows[0] if rows else None

    return with_txn(db, fn, write=False)


@pytest.fixture()
def pool3(tmp_path: Path) -> Path:
    db = tmp_path / "g.db"
    inv = vmctl.open(str(db))
    inv.run("pool-create", **{"name-label": "p"})
    for i in (1, 2, 3):
        inv.run(
            "host-add",
            **{
                "name-label": f"h{i}",
                "address": f"10.0.0.{i}",
                "cpu-count": 8,
                "memory-total": "16GiB",
                "pool": "p",
            },
        )
    for n in ("a", "b", "c"):
        inv.run("vm-create", **{"name-label": n, "memory": "2GiB"})
    return db


@pytest.mark.slow  # one of the longest: the fast tier stays under 3 minutes
def test_strict_anti_affinity(pool3: Path) -> None:
    r = run_cli(pool3, "vm-group-create", "name-label=apart", "placement=anti-affinity", "strict=true")
    assert r.returncode == 0, r.stderr
    g = r.stdout.strip()
    assert (
        run_cli(
            pool3, "--may-exist", "vm-group-create", "name-label=apart", "placement=affinity"
        ).stdout.strip()
        == g
    )
    for n in ("a", "b", "c"):
        r = run_cli(
            pool3,
            "vm-param-add",
            f"uuid={row(pool3, 'vm', n)['uuid']}",
            "param-name=groups",
            "param-key=apart",
        )
        assert r.returncode == 0, r.stderr
    assert cli(pool3, "vm-group-list", "params=vm-count", "--minimal").stdout.strip() == "3"
    r = cli(pool3, "vm-start", "vm=a", "on=h1", "--", "vm-start", "vm=b", "on=h1")
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0].startswith("vmctl: VM_GROUP_RULE_VIOLATED")
    assert lines[1].endswith("(b)") and lines[2].endswith("(apart)") and lines[3].endswith("(h1)")
    # the engine spreads them, in one chain (a batch) as in separate invocations
    r = cli(pool3, "vm-start", "vm=a", "--", "vm-start", "vm=b", "--", "vm-start", "vm=c")
    assert r.returncode == 0, r.stderr
    assert len({row(pool3, "vm", n)["resident-on"] for n in "abc"}) == 3
    vmctl.open(str(pool3)).run("vm-create", **{"name-label": "d", "memory": "1GiB", "groups": g})
    r = cli(pool3, "vm-start", "vm=d")
    assert r.returncode == 1 and "VM_GROUP_RULE_VIOLATED: 3 hosts" in r.stderr
    r = cli(pool3, "vm-group-destroy", f"uuid={g}", "--", "vm-start", "vm=d")
    assert r.returncode == 0, r.stderr
    assert all(row(pool3, "vm", n)["groups"] == [] for n in "abcd")
    assert cli(pool3, "vm-group-destroy", f"uuid={g}", "--if-exists").returncode == 0


def test_strict_affinity_batch_keeps_members_together(pool3: Path) -> None:
    inv = vmctl.open(str(pool3))
    g = inv.run("vm-group-create", **{"name-label": "together", "placement": "affinity", "strict": "true"})
    for n in ("a", "b"):
        inv.run("vm-param-add", uuid=row(pool3, "vm", n)["uuid"], **{"param-name": "groups", "param-key": g})
    r = cli(pool3, "vm-start", "vm=a", "--", "vm-start", "vm=b", "--", "vm-start", "vm=c")
    assert r.returncode == 0, r.stderr
    assert row(pool3, "vm", "a")["resident-on"] == row(pool3, "vm", "b")["resident-on"]
    other = vmctl.open(str(pool3))
    other.run("pool-create", **{"name-label": "q"})
    q = with_txn(pool3, lambda t: t.resolve_one("pool", "q")["uuid"], False)
    other.run("vm-create", **{"name-label": "x", "pool": q})
    with pytest.raises(VmctlError) as exc:
        other.run(
            "vm-param-add", uuid=row(pool3, "vm", "x")["uuid"], **{"param-name": "groups", "param-key": g}
        )
    assert exc.value.code == "NOT_IN_SAME_POOL"


def test_host_enable_disable_forget_update(pool3: Path) -> None:
    inv = vmctl.open(str(pool3))
    inv.run("host-disable", host="h3")
    inv.run("host-disable", host="h3")  # already so: no change
    r = cli(pool3, "vm-start", "vm=a", "on=h3")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: HOST_DISABLED")
    r = cli(pool3, "--dry-run", "vm-start", "vm=a")
    assert r.stdout.strip() != row(pool3, "host", "h3")["uuid"]
    free = cli(pool3, "host-compute-free-memory", "host=h1").stdout.strip()
    assert (
        free
        == cli(
            pool3, "host-param-get", f"uuid={row(pool3, 'host', 'h1')['uuid']}", "param-name=memory-free"
        ).stdout.strip()
    )
    # host-update: disabled, no resident VMs; a non-master keeps the master's major version
    r = cli(pool3, "host-update", "host=h1", "cpu-count=16")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: HOST_NOT_DISABLED")
    r = cli(pool3, "host-update", "host=h3", "software-version=2.0.0")
    assert r.returncode == 1 and "HOSTS_NOT_COMPATIBLE" in r.stderr
    r = cli(pool3, "host-update", "host=h3", "cpu-vendor=AuthenticAMD")
    assert r.returncode == 1 and "HOSTS_NOT_HOMOGENEOUS" in r.stderr
    r = cli(pool3, "host-update", "host=h3", "cpu-vendor=AuthenticAMD", "memory-total=32GiB", "--force")
    assert r.returncode == 0, r.stderr
    assert row(pool3, "host", "h3")["memory-total"] == 32 * 1024**3
    inv.run("vm-start", vm="a", on="h2")
    inv.run("host-disable", host="h2")
    # xapi_host.precheck_destroy_declare_dead: only a host that is not live, never the master
    r = cli(pool3, "host-forget", "host=h2", "--force")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: HOST_IS_LIVE")
    r = cli(pool3, "host-forget", "host=h3", "--force")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: HOST_IS_LIVE")
    inv.run("host-declare-dead", uuid=row(pool3, "host", "h3")["uuid"])
    r = cli(pool3, "host-forget", "host=h3")
    assert r.returncode == 1 and "CONFIRMATION_REQUIRED" in r.stderr
    r = cli(pool3, "host-forget", "host=h3", "--force")
    assert r.returncode == 0, r.stderr
    assert row(pool3, "host", "h3") is None
    r = cli(pool3, "host-forget", "host=h1", "--force")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: HOST_IS_LIVE")
    r = cli(pool3, "host-enable", "host=h2")
    assert r.returncode == 0
    inv.run("host-fail", host="h2")
    r = cli(pool3, "host-enable", "host=h2")
    assert r.returncode == 0  # already enabled
    inv.run("host-disable", host="h2")
    r = cli(pool3, "host-enable", "host=h2")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: HOST_OFFLINE")
    assert cli(pool3, "db-check").returncode == 0


def test_forget_only_host_removes_pool(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    inv = vmctl.open(str(db))
    inv.run(
        "host-add", **{"name-label": "solo", "address": "10.9.9.9", "cpu-count": 2, "memory-total": "4GiB"}
    )
    inv.run("vm-create", **{"name-label": "v", "memory": "1GiB"})
    r = cli(db, "--yes", "host-forget", "host=solo")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: HOST_IS_LIVE")
    inv.run("host-declare-dead", uuid=with_txn(db, lambda t: t.resolve_one("host", "solo")["uuid"], False))
    r = cli(db, "--yes", "host-forget", "host=solo")
    assert r.returncode == 0, r.stderr
    assert with_txn(
        db, lambda t: (t.count("pool"), t.count("vm"), t.count("network"), t.count("pif")), False
    ) == (0, 0, 0, 0)


def test_memory_reserved_cannot_strand_resident_vms(pool3: Path) -> None:
    inv = vmctl.open(str(pool3))
    inv.run("vm-start", vm="a", on="h1")
    h1 = row(pool3, "host", "h1")["uuid"]
    r = cli(pool3, "host-param-set", f"uuid={h1}", f"other-config:memory-reserved={15 * 1024**3}")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: HOST_NOT_ENOUGH_FREE_MEMORY")
    r = cli(
        pool3,
        "host-param-set",
        f"uuid={h1}",
        f"other-config:memory-reserved={4 * 1024**3}",
        "--",
        "host-compute-free-memory",
        "host=h1",
    )
    assert r.returncode == 0, r.stderr
    charge = 2 * 1024**3 + 21 * 1024**2  # static-max + overhead (4 MiB + 1 MiB + 16 MiB)
    assert int(r.stdout) == 12 * 1024**3 - charge
