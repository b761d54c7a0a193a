"""`vmctl demo` starts its VMs through the engine (batch placement), deterministically for a seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import cli, run_cli


@pytest.mark.slow  # one of the longest: the fast tier stays under 3 minutes
def test_demo_places_every_vm_deterministically(tmp_path: Path) -> None:
    outs = []
    for name in ("a.db", "b.db"):
        db = tmp_path / name
        r = run_cli(db, "demo", "--pools", "2", "--hosts", "6", "--vms", "40", "--seed", "5")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("demo (seed 5): 2 pools, 6 hosts, 40 VMs (40 running)")
        vms = json.loads(
            run_cli(
                db,
                "-f",
                "json",
                "vm-list",
                "params=uuid,name-label,resident-on,domid,last-boot-cpu-flags,power-state",
            ).stdout
        )
        assert len(vms) == 40 and all(v["power-state"] == "running" and v["resident-on"] for v in vms)
        assert run_cli(db, "db-check").returncode == 0
        outs.append((r.stdout, vms))
    assert outs[0] == outs[1]


def test_default_demo_is_unchanged(tmp_path: Path) -> None:
    """The default datacenter (cli.md §7): its summary and its host addresses, 10.P.0.11 up."""
    db = tmp_path / "d.db"
    r = run_cli(db, "demo")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (
        "demo (seed 1): 3 pools, 24 hosts, 400 VMs (400 running), 9 templates, 27 SRs, 9 networks\n"
    )
    hosts = json.loads(run_cli(db, "-f", "json", "host-list", "params=name-label,address").stdout)
    assert {h["name-label"]: h["address"] for h in hosts} == {
        f"pool{p + 1}-h{n:02d}": f"10.{p}.0.{n + 10}" for p in range(3) for n in range(1, 9)
    }


def test_host_addresses_are_valid_and_unique_up_to_the_limits() -> None:
    import ipaddress

    from vmctl.demo import MAX_HOSTS, MAX_POOLS, host_address

    per_pool = 0xFFFE - 10  # 10.P.0.11 to 10.P.255.254
    assert per_pool >= MAX_HOSTS
    for p in (0, MAX_POOLS - 1):
        addrs = [host_address(p, n) for n in range(1, per_pool + 1)]
        assert len(set(addrs)) == per_pool
        net = ipaddress.ip_network(f"10.{p}.0.0/16")
        ips = [int(ipaddress.IPv4Address(a)) for a in addrs]  # four octets of 0-255 each
        # inside the pool's /16, neither its network nor its broadcast address
        assert int(net.network_address) < min(ips) and max(ips) < int(net.broadcast_address)
        # the first 245 hosts of a pool keep the addresses they always had
        assert addrs[:245] == [f"10.{p}.0.{n + 10}" for n in range(1, 246)]
        assert addrs[245:247] == [f"10.{p}.1.0", f"10.{p}.1.1"]
    for p, n in ((MAX_POOLS, 1), (0, per_pool + 1), (0, 0)):
        with pytest.raises(ValueError):
            host_address(p, n)


@pytest.mark.slow  # one of the longest: the fast tier stays under 3 minutes
def test_demo_puts_more_than_245_hosts_in_one_pool(tmp_path: Path) -> None:
    # the 246th host of a pool was given 10.0.0.256 and the demo failed (INVALID_VALUE address)
    db = tmp_path / "d.db"
    r = run_cli(db, "demo", "--pools", "1", "--hosts", "247", "--vms", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("demo (seed 1): 1 pools, 247 hosts, 1 VMs (1 running)")
    hosts = json.loads(cli(db, "-f", "json", "host-list", "params=name-label,address").stdout)
    addrs = {h["name-label"]: h["address"] for h in hosts}
    assert len(set(addrs.values())) == 247
    assert (addrs["pool1-h245"], addrs["pool1-h246"], addrs["pool1-h247"]) == (
        "10.0.0.255",
        "10.0.1.0",
        "10.0.1.1",
    )


@pytest.mark.parametrize(
    "args, name, most",
    [
        (["--pools", "257", "--hosts", "300"], "pools", "256"),
        (["--hosts", "2501"], "hosts", "2,500"),
        (["--vms", "40001"], "VMs", "40,000"),
    ],
)
def test_demo_refuses_sizes_beyond_its_limits(tmp_path: Path, args, name, most) -> None:
    db = tmp_path / "d.db"
    r = run_cli(db, "demo", *args)
    assert r.returncode == 1 and r.stdout == ""
    first, *params = r.stderr.splitlines()
    assert first.startswith(f"vmctl: INVALID_VALUE: The demo builds at most {most} {name} ("), r.stderr
    assert f"  maximum: {most.replace(',', '')}" in params
    assert not db.exists()  # refused before the inventory is opened
