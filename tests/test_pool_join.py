"""pool-join pre-checks (model.md §3.1): one contract test per check, each through the real
executable: the failing condition gives its code and params and changes nothing; --force skips
exactly the CPU check (xapi_pool.pre_join_checks: assert_hosts_homogeneous), never the version
check (assert_hosts_compatible). Plus the join's effects and pool-eject."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import cli, run_cli, with_txn

import vmctl

GiB = 1024**3


def dump(db: Path) -> dict:
    from vmctl.model import CLASSES

    return with_txn(
        db, lambda txn: {c: sorted(txn.all(c), key=lambda r: r["uuid"]) for c in CLASSES}, write=False
    )


def host(db: Path, name: str) -> dict:
    return with_txn(db, lambda t: t.resolve_one("host", name), write=False)


def host_args(name: str, addr: str, **kw) -> dict:
    args = {"name-label": name, "address": addr, "cpu-count": 8, "memory-total": "32GiB"}
    args.update(kw)
    return args


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Pool p1 with master h1 and a VM with a VIF; standalone hosts for each scenario."""
    db = tmp_path_factory.mktemp("join") / "base.db"
    inv = vmctl.open(str(db))
    inv.run("pool-create", **{"name-label": "p1"})
    inv.run("host-add", **host_args("h1", "10.0.0.1", pool="p1"))
    inv.run("host-add", **host_args("h", "10.0.1.1"))
    inv.run("host-add", **host_args("h-major", "10.0.1.2", **{"software-version": "2.0.0"}))
    inv.run("host-add", **host_args("h-minor", "10.0.1.3", **{"software-version": "1.1.0"}))
    inv.run("host-add", **host_args("h-amd", "10.0.1.4", **{"cpu-vendor": "AuthenticAMD"}))
    inv.run("host-add", **host_args("h-vlan", "10.0.1.5", **{"management-vlan": 10}))
    inv.run("host-add", **host_args("h-bridge", "10.0.1.6", **{"network-backend": "bridge"}))
    inv.run("host-add", **host_args("h-major-bond", "10.0.1.7", **{"software-version": "2.0.0"}))
    return db


@pytest.fixture()
def db(base: Path, tmp_path: Path) -> Path:
    p = tmp_path / "case.db"
    shutil.copy(base, p)
    return p


def refused(db: Path, hostname: str, code: str, params: list[str] | None = None, force: bool = False) -> None:
    before = dump(db)
    args = ["pool-join", f"host={hostname}", "pool=p1"] + (["--force"] if force else [])
    r = run_cli(db, *args)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"vmctl: {code}"), r.stderr
    if params is not None:
        assert lines[1:] == params
    assert dump(db) == before


def joins(db: Path, hostname: str, force: bool = False) -> None:
    r = cli(db, "pool-join", f"host={hostname}", "pool=p1", *(["--force"] if force else []))
    assert r.returncode == 0, r.stderr
    assert host(db, hostname)["pool"] == host(db, "h1")["pool"]
    assert cli(db, "db-check").returncode == 0


def ref(db: Path, cls: str, name: str) -> str:
    row = with_txn(db, lambda t: t.resolve_one(cls, name), write=False)
    return f"{row['uuid']} ({row['name-label']})"


def test_1_already_member(db: Path) -> None:
    refused(db, "h1", "OPERATION_NOT_ALLOWED", ["  reason: Host is already part of this pool"])


def test_2_ha_enabled(db: Path) -> None:
    inv = vmctl.open(str(db))
    inv.run("host-add", **host_args("h1b", "10.0.0.2", pool="p1"))
    inv.run("sr-create", **{"name-label": "nfs", "type": "nfs", "physical-size": "100GiB", "pool": "p1"})
    inv.run("pool-ha-enable", pool="p1")
    refused(db, "h", "HA_IS_ENABLED", force=True)
    refused(db, "h1", "HA_IS_ENABLED")  # xapi_pool.pre_join_checks: HA before the rest


def test_3_master_of_other_hosts(db: Path) -> None:
    inv = vmctl.open(str(db))
    inv.run("host-add", **host_args("h-peer", "10.0.1.99", pool=host(db, "h")["pool"]))
    refused(
        db,
        "h",
        "JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS",
        [f"  host: {ref(db, 'host', 'h')}"],
        force=True,
    )


def test_4_offline(db: Path) -> None:
    vmctl.open(str(db)).run("host-fail", host="h")
    refused(db, "h", "HOST_OFFLINE", [f"  host: {ref(db, 'host', 'h')}"], force=True)


def test_5_running_vms(db: Path) -> None:
    inv = vmctl.open(str(db))
    inv.run("vm-create", **{"name-label": "busy", "memory": "1GiB", "pool": host(db, "h")["pool"]})
    inv.run("vm-start", vm="busy", **{"--paused": True})
    refused(db, "h", "JOINING_HOST_CANNOT_HAVE_RUNNING_VMS", [f"  vm: {ref(db, 'vm', 'busy')}"], force=True)


def test_6_pending_task(db: Path) -> None:
    # the sim driver never leaves a task pending; a driver that runs long operations would
    h = host(db, "h")
    task = with_txn(
        db,
        lambda t: t.insert(
            "task", {"name-label": "vm-migrate", "status": "pending", "objects": [f"host:{h['uuid']}"]}
        ),
    )
    refused(db, "h", "JOINING_HOST_CANNOT_HAVE_VMS_WITH_CURRENT_OPERATIONS", [f"  task: {task}"], force=True)


def test_7_major_version(db: Path) -> None:
    """xapi_pool.pre_join_checks assert_hosts_compatible: HOSTS_NOT_COMPATIBLE."""
    refused(db, "h-major", "HOSTS_NOT_COMPATIBLE", ["  reason: Major versions differ"])
    refused(db, "h-major", "HOSTS_NOT_COMPATIBLE", ["  reason: Major versions differ"], force=True)


def test_7_any_software_version_difference(db: Path) -> None:
    """xapi_pool.pre_join_checks assert_hosts_compatible compares the platform versions, which
    software-version plays: a minor difference refuses the join too, --force or not."""
    refused(db, "h-minor", "HOSTS_NOT_COMPATIBLE", ["  reason: Software versions differ"])
    refused(db, "h-minor", "HOSTS_NOT_COMPATIBLE", ["  reason: Software versions differ"], force=True)


def test_9_cpu_vendor(db: Path) -> None:
    refused(db, "h-amd", "HOSTS_NOT_HOMOGENEOUS", ["  reason: CPUs differ"])
    joins(db, "h-amd", force=True)


def test_10_shared_sr(db: Path) -> None:
    pool = host(db, "h")["pool"]

    def fn(t):
        sr = t.insert(
            "sr", {"name-label": "nfs-h", "type": "nfs", "shared": True, "physical-size": GiB, "pool": pool}
        )
        t.insert("pbd", {"host": host(db, "h")["uuid"], "sr": sr, "pool": pool})

    with_txn(db, fn)
    refused(
        db, "h", "JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS", [f"  sr: {ref(db, 'sr', 'nfs-h')}"], force=True
    )


def _pif(t, h: dict, device: str, **kw) -> str:
    net = t.select("pif", host=h["uuid"])[0]["network"]
    return t.insert(
        "pif",
        {
            "host": h["uuid"],
            "network": net,
            "device": device,
            "pool": h["pool"],
            "mac": "02:00:00:00:00:" + f"{len(device):02x}",
            **kw,
        },
    )


def test_11_bond(db: Path) -> None:
    h = host(db, "h")
    bond = with_txn(db, lambda t: t.insert("bond", {"master": _pif(t, h, "bond0"), "pool": h["pool"]}))
    refused(db, "h", "POOL_JOINING_HOST_HAS_BONDS", [f"  bond: {bond}"], force=True)


def test_12_tunnel(db: Path) -> None:
    h = host(db, "h")
    tun = with_txn(
        db,
        lambda t: t.insert(
            "tunnel", {"access-pif": _pif(t, h, "tunnel0", physical=False), "pool": h["pool"]}
        ),
    )
    refused(db, "h", "POOL_JOINING_HOST_HAS_TUNNELS", [f"  tunnel: {tun}"], force=True)


def test_13_non_management_vlan(db: Path) -> None:
    h = host(db, "h")

    def fn(t):
        eth0 = t.select("pif", host=h["uuid"], device="eth0")[0]["uuid"]
        vp = _pif(t, h, "eth0.", physical=False, vlan=20)
        return t.insert("vlan", {"tagged-pif": eth0, "untagged-pif": vp, "tag": 20, "pool": h["pool"]})

    vlan = with_txn(db, fn)
    refused(db, "h", "POOL_JOINING_HOST_HAS_NON_MANAGEMENT_VLANS", [f"  vlan: {vlan}"], force=True)


def test_14_management_vlan(db: Path) -> None:
    # its management VLAN is the only one, so check 13 passes and 14 fires
    refused(
        db,
        "h-vlan",
        "POOL_JOINING_HOST_MANAGEMENT_VLAN_DOES_NOT_MATCH",
        ["  local: 10", "  remote: -1"],
        force=True,
    )


def test_15_network_backend(db: Path) -> None:
    refused(db, "h-bridge", "OPERATION_NOT_ALLOWED", ["  reason: Network backends differ"], force=True)


def test_duplicate_macs_join(db: Path) -> None:
    """xapi_pool.pre_join_checks compares no MAC: VIFs of both pools may share one (XAPI accepts
    any well-formed MAC, Xapi_vif_helpers.create)."""
    inv = vmctl.open(str(db))
    p1 = host(db, "h1")["pool"]
    hp = host(db, "h")["pool"]
    inv.run("vm-create", **{"name-label": "a", "pool": p1})
    inv.run("vm-create", **{"name-label": "b", "pool": hp})

    def fn(t):
        net1 = t.select("network", pool=p1)[0]["uuid"]
        net2 = t.select("network", pool=hp)[0]["uuid"]
        va = t.resolve_one("vm", "a")["uuid"]
        vb = t.resolve_one("vm", "b")["uuid"]
        theirs = t.insert(
            "vif", {"vm": va, "network": net1, "device": 0, "mac": "02:aa:bb:cc:dd:ee", "pool": p1}
        )
        t.insert("vif", {"vm": vb, "network": net2, "device": 0, "mac": "02:aa:bb:cc:dd:ee", "pool": hp})
        return theirs

    with_txn(db, fn)
    joins(db, "h")


def test_first_failing_check_wins(db: Path) -> None:
    h = host(db, "h-major-bond")
    with_txn(db, lambda t: t.insert("bond", {"master": _pif(t, h, "bond0"), "pool": h["pool"]}))
    refused(db, "h-major-bond", "HOSTS_NOT_COMPATIBLE", ["  reason: Major versions differ"], force=True)


def test_join_effects_and_eject(db: Path) -> None:
    inv = vmctl.open(str(db))
    p1 = host(db, "h1")["pool"]
    old = host(db, "h")["pool"]
    h1 = host(db, "h1")["uuid"]

    def shared(t):
        sr = t.insert(
            "sr", {"name-label": "shared", "type": "nfs", "shared": True, "physical-size": GiB, "pool": p1}
        )
        t.insert("pbd", {"host": h1, "sr": sr, "pool": p1, "currently-attached": True})

    with_txn(db, shared)
    inv.run("vm-create", **{"name-label": "mine", "memory": "1GiB", "pool": old})
    inv.run("vm-group-create", **{"name-label": "g", "placement": "anti-affinity", "pool": old})
    r = run_cli(db, "pool-join", "host=h", "master-address=10.0.0.1")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    d = dump(db)
    assert old not in {p["uuid"] for p in d["pool"]}
    h = host(db, "h")
    assert {r["pool"] for r in d["vm"] + d["vm-group"]} == {p1}
    assert {r["pool"] for r in d["pif"] if r["host"] == h["uuid"]} == {p1}
    assert not [r for r in d["network"] if r["pool"] == old]
    assert len([r for r in d["network"] if r["pool"] == p1]) == 1  # xenbr0 merged by bridge name
    assert [(b["sr"], b["currently-attached"]) for b in d["pbd"] if b["host"] == h["uuid"]] == [
        (with_txn(db, lambda t: t.resolve_one("sr", "shared")["uuid"], False), True)
    ]
    assert cli(db, "db-check").returncode == 0
    # pool-eject: the master cannot go; a VM running on the host blocks; confirmation
    r = cli(db, "pool-eject", "host=h1")
    assert r.returncode == 1 and r.stderr.startswith("vmctl: CANNOT_EJECT_MASTER")
    inv.run("vm-start", vm="mine", on="h")
    r = cli(db, "pool-eject", "host=h")  # xapi_pool.eject_self
    assert r.returncode == 1 and r.stderr.startswith("vmctl: OPERATION_NOT_ALLOWED")
    inv.run("vm-shutdown", vm="mine")
    r = cli(db, "pool-eject", "host=h")
    assert r.returncode == 1 and "CONFIRMATION_REQUIRED" in r.stderr
    r = cli(db, "--yes", "pool-eject", "host=h")
    assert r.returncode == 0, r.stderr
    h = host(db, "h")
    assert h["pool"] != p1 and with_txn(db, lambda t: t.get("pool", h["pool"])["master"], False) == h["uuid"]
    assert not [b for b in dump(db)["pbd"] if b["host"] == h["uuid"]]
    assert cli(db, "db-check").returncode == 0
