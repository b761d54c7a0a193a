"""host-evacuate, host-get-vms-which-prevent-evacuation and maintenance mode (engine.md §4.4):
a loaded host is emptied without overcommitting any other host and db-check stays clean, the
applied moves are the dry run's plan, every move is journalled, a refusal names each blocking VM
and changes nothing, and `host-disable -- host-evacuate` is all or nothing."""

from __future__ import annotations

import json

import pytest
from test_migrate_contract import build, ids

GiB = 1024**3
SIZES = (2, 3, 4, 6, 2, 5, 3, 8, 4, 2)  # GiB; 39 GiB in all on h1


@pytest.fixture
def big(inv):
    """h1 (64 GiB) runs ten VMs (39 GiB); h2–h4 have 32 GiB each, so no single host takes them all."""
    lines = [
        "pool-create name-label=p1",
        "host-add name-label=h1 address=10.0.0.1 cpu-count=32 memory-total=64GiB pool=p1",
        *(
            f"host-add name-label=h{i} address=10.0.0.{i} cpu-count=16 memory-total=32GiB pool=p1"
            for i in range(2, 5)
        ),
        "sr-create name-label=nfs type=nfs physical-size=1TiB shared=true",
        "sr-create name-label=loc1 type=lvm physical-size=100GiB host=h1",
        "-- --id=@o vm-create name-label=other memory=20GiB vcpus=2",
        "vm-start vm=@o on=h2",
    ]
    for n, size in enumerate(SIZES):
        lines += [
            f"-- --id=@v{n} vm-create name-label=v{n} memory={size}GiB vcpus={1 + n % 4} "
            f"other-config:dirty-rate={4 * (n + 1)}M",
            f"vm-disk-add vm=@v{n} disk-size=4GiB sr-uuid=nfs",
            f"vm-start vm=@v{n} on=h1",
        ]
    lines.insert(-1, "vif-create vm-uuid=@v9 network-uuid='Pool-wide network associated with eth0' device=0")
    build(inv, lines)
    return inv


def _hosts(inv) -> dict[str, dict]:
    rows = json.loads(
        inv.ok("host-list", "params=uuid,name-label,enabled,memory-free,resident-vm-count", "-f", "json")
    )
    return {r["name-label"]: r for r in rows}


@pytest.mark.slow  # a large scenario through the real executable
def test_evacuation_empties_a_loaded_host_as_planned(big):
    inv = big
    u = ids(inv)
    before = inv.snapshot()
    plan = json.loads(inv.ok("host-evacuate", "host=h1", "--dry-run", "-f", "json"))
    assert inv.snapshot() == before  # a dry run commits nothing
    assert plan["host"] == u["h1"] and plan["vms"] == len(SIZES) == len(plan["moves"])
    assert plan["waves"] >= 1 and plan["makespan"] > 0 and plan["bytes"] > 0
    assert {m["to"] for m in plan["moves"]} <= {u["h2"], u["h3"], u["h4"]}
    # moves are ordered by predicted solo time, longest first, and grouped in consecutive waves
    assert [m["wave"] for m in plan["moves"]] == sorted(m["wave"] for m in plan["moves"])
    r = inv.run("host-evacuate", "host=h1", "--dry-run")
    assert r.rc == 0 and r.err == ""  # every move converges: no warning
    head, *rows, footer = r.out.splitlines()
    assert head.split() == ["wave", "vm", "name-label", "to", "memory", "bytes", "time", "downtime"]
    assert len(rows) == len(SIZES)
    assert footer.startswith(f"{len(SIZES)} VMs, {plan['waves']} wave") and "makespan" in footer
    # --minimal: the VMs that would move, in plan order
    assert (
        inv.ok("host-evacuate", "host=h1", "--dry-run", "--minimal")
        == ",".join(m["vm"] for m in plan["moves"]) + "\n"
    )

    assert inv.ok("host-evacuate", "host=h1") == ""
    hosts = _hosts(inv)
    assert hosts["h1"]["resident-vm-count"] == 0
    assert all(h["memory-free"] >= 0 for h in hosts.values())  # nobody overcommitted
    vms = {
        r["name-label"]: r
        for r in json.loads(inv.ok("vm-list", "params=name-label,uuid,resident-on,power-state", "-f", "json"))
    }
    for m in plan["moves"]:  # the applied moves are the dry run's plan
        assert vms[m["name-label"]]["resident-on"] == m["to"]
        assert vms[m["name-label"]]["power-state"] == "running"
    assert vms["other"]["resident-on"] == u["h2"]
    inv.ok("db-check")
    # the VIF's port followed v9 to its new host
    assert "vif" not in inv.ok("--host=h1", "show")
    # one journal entry (the evacuation) per moved VM, with its prediction and wave
    entry = json.loads(inv.ok("journal-list", f"object={u['v9']}", "params=all", "-f", "json"))[-1]
    assert entry["command"].endswith("host-evacuate host=h1")
    assert f"vm:{u['v9']}" in entry["changed"]
    rec = json.loads(
        inv.ok("vm-param-get", f"uuid={u['v9']}", "param-name=other-config", "param-key=last-migration")
    )
    assert rec["from"] == u["h1"] and rec["wave"] >= 1 and rec["stop-reason"] == "converged"
    # evacuating an empty host: nothing to do, nothing printed
    assert inv.ok("host-evacuate", "host=h1", "--dry-run").startswith("0 VMs")


@pytest.mark.slow
def test_refusal_names_every_blocking_vm_and_changes_nothing(big):
    inv = big
    build(
        inv,
        [
            "-- --id=@i vm-create name-label=imm memory=1GiB platform:nomigrate=true",
            "vm-start vm=@i on=h1",
            "-- --id=@l vm-create name-label=loc memory=1GiB",
            "vm-disk-add vm=@l disk-size=2GiB sr-uuid=loc1",
            "vm-start vm=@l on=h1",
        ],
    )
    u = ids(inv)
    before = inv.snapshot()
    # xapi_host.evacuate: the error of a VM that cannot move (the first by name), counting the others
    r = inv.fail("host-evacuate", "host=h1", code="VM_IS_IMMOBILE")
    assert f"  vm: {u['imm']} (imm)\n" in r.err and "1 other VM cannot move" in r.err
    assert "v1" not in r.err  # movable VMs are not named
    r = inv.fail("host-disable", "host=h1", "--", "host-evacuate", "host=h1", code="VM_IS_IMMOBILE")
    assert inv.snapshot() == before  # nothing moved, h1 still enabled
    text = inv.ok("host-get-vms-which-prevent-evacuation", "host=h1")
    assert text.splitlines()[0].split() == ["uuid", "name-label", "reason"]
    rows = json.loads(inv.ok("host-get-vms-which-prevent-evacuation", "host=h1", "-f", "json"))
    assert rows == [
        {"uuid": u["imm"], "name-label": "imm", "reason": f"VM_IS_IMMOBILE,{u['imm']}"},
        {"uuid": u["loc"], "name-label": "loc", "reason": f"VM_REQUIRES_SR,{u['loc']},{u['loc1']}"},
    ]
    assert inv.ok("host-get-vms-which-prevent-evacuation", "host=h3") == ""
    inv.fail("host-get-vms-which-prevent-evacuation", "host=nope", code="UUID_INVALID")
    inv.fail("host-evacuate", "host=h1", "sr=loc1", code="INVALID_VALUE")  # sr= must be shared


@pytest.mark.slow
def test_maintenance_mode_is_all_or_nothing(big):
    inv = big
    build(
        inv,
        [
            "-- --id=@i vm-create name-label=imm memory=1GiB platform:nomigrate=true",
            "vm-start vm=@i on=h1",
            "-- --id=@l vm-create name-label=loc memory=1GiB",
            "vm-disk-add vm=@l disk-size=2GiB sr-uuid=loc1 name-label=loc-disk",
            "vm-start vm=@l on=h1",
        ],
    )
    u = ids(inv)
    inv.fail("host-disable", "host=h1", "--", "host-evacuate", "host=h1", "sr=nfs", code="VM_IS_IMMOBILE")
    assert _hosts(inv)["h1"]["enabled"] is True
    # without the immobile VM, sr= moves loc's local disk to the shared SR on the way
    inv.ok("vm-shutdown", "vm=imm")
    assert inv.ok("host-disable", "host=h1", "--", "host-evacuate", "host=h1", "sr=nfs") == ""
    hosts = _hosts(inv)
    assert hosts["h1"]["enabled"] is False and hosts["h1"]["resident-vm-count"] == 0
    assert all(h["memory-free"] >= 0 for h in hosts.values())
    disk = [
        d
        for d in json.loads(inv.ok("vdi-list", "params=name-label,sr", "-f", "json"))
        if d["name-label"] == "loc-disk"
    ]
    assert disk == [{"name-label": "loc-disk", "sr": u["nfs"]}]
    inv.ok("db-check")
    # the halted VM stayed where it was (nowhere); a disabled host takes no VM
    assert inv.ok("vm-param-get", f"uuid={u['imm']}", "param-name=power-state").strip() == "halted"
    inv.fail("vm-migrate", "vm=v1", "host=h1", code="HOST_DISABLED")
    # host-enable ends maintenance; pool-rebalance then refills the host
    inv.ok("host-enable", "host=h1")
    plan = json.loads(inv.ok("pool-rebalance", "--dry-run", "-f", "json"))
    assert any(m["to"] == u["h1"] for m in plan["moves"])


@pytest.mark.slow  # one of the longest contract tests: the fast tier stays under 3 minutes
def test_ha_refusal_is_reported_on_the_pool_row(inv):
    build(
        inv,
        [
            "pool-create name-label=p2",
            "host-add name-label=g1 address=10.1.0.1 cpu-count=16 memory-total=128GiB pool=p2",
            "host-add name-label=g2 address=10.1.0.2 cpu-count=16 memory-total=64GiB pool=p2",
            "host-add name-label=g3 address=10.1.0.3 cpu-count=16 memory-total=64GiB pool=p2",
            "-- --id=@a vm-create name-label=a memory=30GiB pool=p2 ha-restart-priority=restart",
            "vm-start vm=@a on=g1",
            # protected too: with HA enabled an unprotected VM would stop the evacuation first
            # (HOST_EVACUATE_VM_NOT_HA_PROTECTED, xapi_host.compute_evacuation_plan_no_wlb)
            "-- --id=@x vm-create name-label=x memory=40GiB pool=p2 ha-restart-priority=restart",
            "vm-start vm=@x on=g1",
            "sr-create name-label=statefile type=nfs physical-size=1TiB pool=p2",
            "pool-ha-enable pool=p2 ha-host-failures-to-tolerate=1",
        ],
    )
    u = ids(inv)
    before = inv.snapshot()
    r = inv.fail("host-evacuate", "host=g1", code="HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN")
    assert "  failures-to-tolerate: 1\n" in r.err
    # the witness: the protected VM the failed host's survivor has no room for (a or x, by where
    # the plan put each)
    assert f"  vm: {u['a']} (a)\n" in r.err or f"  vm: {u['x']} (x)\n" in r.err
    rows = json.loads(inv.ok("host-get-vms-which-prevent-evacuation", "host=g1", "-f", "json"))
    assert len(rows) == 1 and rows[0]["uuid"] == u["p2"] and rows[0]["name-label"] == "p2"
    assert rows[0]["reason"].startswith("HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN,1,")
    assert inv.snapshot() == before


def test_a_move_predicted_not_to_converge_is_planned_with_a_warning(inv):
    build(
        inv,
        [
            "pool-create name-label=p1",
            "host-add name-label=h1 address=10.0.0.1 cpu-count=16 memory-total=64GiB pool=p1",
            "host-add name-label=h2 address=10.0.0.2 cpu-count=16 memory-total=64GiB pool=p1",
            "-- --id=@h vm-create name-label=hot memory=16GiB other-config:dirty-rate=100M",
            "vm-start vm=@h on=h1",
        ],
    )
    r = inv.run("host-evacuate", "host=h1", "--dry-run")
    assert r.rc == 0 and r.out.splitlines()[-1].startswith("1 VM, 1 wave (width 1)")
    assert r.err == "vmctl: warning: VM hot is predicted not to converge: downtime 47.68 s (byte-cap)\n"
    assert inv.run("-q", "host-evacuate", "host=h1", "--dry-run").err == ""
