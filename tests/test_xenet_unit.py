"""Direct tests of vmctl.xenet: VIF ports following VM power changes (through the compute
commands and through the lifecycle hooks), MAC generation, bridge sync, availability."""

from __future__ import annotations

import hashlib

import pytest

import vmctl
from vmctl import hooks, xenet
from vmctl.commands import load
from vmctl.store.txn import Store

load()


def mac_for(seed: str, k: int = 0) -> str:
    d = bytearray(hashlib.sha256(f"{seed}:{k}".encode()).digest()[:6])
    d[0] = (d[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in d)


@pytest.fixture
def inv(tmp_path):
    db = str(tmp_path / "u.db")
    i = vmctl.open(db)
    i.db = db
    i.run("pool-create", **{"name-label": "p1"})
    for n, a, pifs in (("h1", "10.0.0.1", "eth0,eth1"), ("h2", "10.0.0.2", "eth0,eth1")):
        i.run(
            "host-add",
            **{
                "name-label": n,
                "address": a,
                "cpu-count": 8,
                "memory-total": "64GiB",
                "pool": "p1",
                "pifs": pifs,
            },
        )
    i.run("network-create", **{"name-label": "n1"})
    return i


def ports(inv, host: str) -> dict[str, list[str]]:
    h = vmctl.open(inv.db, host=host)
    return {b: h.run("list-ports", b).split() for b in h.run("list-br").split()}


def in_txn(inv, fn, write: bool = False):
    return Store(inv.db).run(fn, write=write)[0]


def break_switch(inv, host: str, name: str, *args) -> None:
    """An ovs-style command below the command line (as the xe layer runs them): what a user's
    command would be refused, to make the state the xe layer must cope with."""

    def fn(txn):
        txn.switch(txn.resolve_one("host", host)["uuid"]).run(name, {}, list(args))

    in_txn(inv, fn, write=True)


def uuid_of(inv, cls: str, name: str) -> str:
    return inv.run(f"{cls}-list", **{"name-label": name, "params": "uuid"})[0]["uuid"]


def test_vm_start_shutdown_ports(inv):
    vm = inv.run("vm-create", **{"name-label": "web", "memory": "1GiB"})
    n1 = uuid_of(inv, "network", "n1")
    xenbr1 = inv.run("network-list", bridge="xenbr1", params="uuid")[0]["uuid"]
    inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": n1, "device": 0})
    inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": xenbr1, "device": 3})
    inv.run("vm-start", vm="web", on="h2")
    domid = inv.run("vm-param-get", uuid=vm, **{"param-name": "domid"})
    assert ports(inv, "h2") == {
        "xapi0": [f"vif{domid}.0"],
        "xenbr0": ["eth0"],
        "xenbr1": ["eth1", f"vif{domid}.3"],
    }
    assert ports(inv, "h1") == {"xapi0": [], "xenbr0": ["eth0"], "xenbr1": ["eth1"]}
    rows = inv.run("vm-vif-list", vm="web", params="device,plugged,currently-attached")
    assert rows == [
        {"device": 0, "plugged": True, "currently-attached": True},
        {"device": 3, "plugged": True, "currently-attached": True},
    ]
    sr = inv.run("sr-create", **{"name-label": "nfs", "type": "nfs", "physical-size": "1TiB"})
    inv.run("pool-param-set", uuid=uuid_of(inv, "pool", "p1"), **{"default-sr": sr})
    inv.run("vm-suspend", vm="web")
    assert ports(inv, "h2")["xapi0"] == [] and ports(inv, "h2")["xenbr1"] == ["eth1"]
    assert [r["plugged"] for r in inv.run("vm-vif-list", vm="web", params="plugged")] == [False, False]
    inv.run("vm-resume", vm="web", on="h1")
    domid = inv.run("vm-param-get", uuid=vm, **{"param-name": "domid"})
    assert ports(inv, "h1")["xapi0"] == [f"vif{domid}.0"]
    inv.run("vm-shutdown", vm="web", **{"--force": True})
    assert ports(inv, "h1") == {"xapi0": [], "xenbr0": ["eth0"], "xenbr1": ["eth1"]}
    assert in_txn(inv, __import__("vmctl.invariants", fromlist=["check"]).check) == []


def _start(txn, vm_uuid: str, host: str, domid: int) -> None:
    txn.update("vm", vm_uuid, {"power-state": "running", "resident-on": host, "domid": domid})
    hooks.became_resident(txn, txn.get("vm", vm_uuid), host)


def test_hooks_migration_keeps_unplugged_vifs_unplugged(inv):
    vm = inv.run("vm-create", **{"name-label": "v", "memory": "1GiB"})
    n1 = uuid_of(inv, "network", "n1")
    v0 = inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": n1, "device": 0})
    v1 = inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": n1, "device": 1})
    h1, h2 = uuid_of(inv, "host", "h1"), uuid_of(inv, "host", "h2")
    in_txn(inv, lambda t: _start(t, vm, h1, 2), write=True)
    assert ports(inv, "h1")["xapi0"] == ["vif2.0", "vif2.1"]
    inv.run("vif-unplug", uuid=v1)

    def migrate(txn):
        hooks.leaving_host(txn, txn.get("vm", vm), h1)
        txn.update("vm", vm, {"resident-on": h2, "domid": 9})
        hooks.became_resident(txn, txn.get("vm", vm), h2)

    in_txn(inv, migrate, write=True)
    assert ports(inv, "h1")["xapi0"] == []
    assert ports(inv, "h2")["xapi0"] == ["vif9.0"]
    assert inv.run("vif-param-get", uuid=v0, **{"param-name": "plugged"}) is True
    assert inv.run("vif-param-get", uuid=v1, **{"param-name": "plugged"}) is False

    def stop(txn):
        hooks.leaving_host(txn, txn.get("vm", vm), h2)
        txn.update("vm", vm, {"power-state": "halted", "resident-on": "", "domid": -1})

    in_txn(inv, stop, write=True)
    assert ports(inv, "h2")["xapi0"] == []
    # a start plugs every VIF again
    in_txn(inv, lambda t: _start(t, vm, h1, 4), write=True)
    assert ports(inv, "h1")["xapi0"] == ["vif4.0", "vif4.1"]


def test_leave_finds_port_without_domid(inv):
    """The port goes even when the VM row no longer carries the domid it was made with."""
    vm = inv.run("vm-create", **{"name-label": "v", "memory": "1GiB"})
    inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": uuid_of(inv, "network", "n1"), "device": 0})
    h1 = uuid_of(inv, "host", "h1")
    in_txn(inv, lambda t: _start(t, vm, h1, 3), write=True)

    def stop(txn):
        txn.update("vm", vm, {"power-state": "halted", "resident-on": "", "domid": -1})
        hooks.leaving_host(txn, txn.get("vm", vm), h1)

    in_txn(inv, stop, write=True)
    assert ports(inv, "h1")["xapi0"] == []


@pytest.mark.slow  # one of the longest: the fast tier stays under 3 minutes
def test_generated_macs_deterministic_and_unique(inv):
    n1 = uuid_of(inv, "network", "n1")
    macs, vms = [], []
    for i in range(6):
        vm = inv.run("vm-create", **{"name-label": f"v{i}", "memory": "1GiB"})
        vms.append(vm)
        for d in range(16):
            u = inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": n1, "device": d})
            macs.append(inv.run("vif-param-get", uuid=u, **{"param-name": "mac"}))
            assert macs[-1] == mac_for(f"{vm}:{d}")
    pif_macs = [r["mac"] for r in inv.run("pif-list", params="mac")]
    assert len(set(macs + pif_macs)) == len(macs) + len(pif_macs)
    for m in macs:
        first = int(m[:2], 16)
        assert not first & 1 and first & 2


def test_generated_mac_skips_used(inv):
    n1 = uuid_of(inv, "network", "n1")
    a = inv.run("vm-create", **{"name-label": "a", "memory": "1GiB"})
    b = inv.run("vm-create", **{"name-label": "b", "memory": "1GiB"})
    taken = mac_for(f"{b}:0")
    inv.run("vif-create", **{"vm-uuid": a, "network-uuid": n1, "device": 0, "mac": taken})
    u = inv.run("vif-create", **{"vm-uuid": b, "network-uuid": n1, "device": 0})
    assert inv.run("vif-param-get", uuid=u, **{"param-name": "mac"}) == mac_for(f"{b}:0", 1)


def test_generated_mac_avoids_the_pool_s_pifs_and_vifs_only(inv):
    """model.md §3.7: the smallest k whose MAC no PIF or VIF of the VM's pool has, counting the
    VIFs created earlier in the same transaction; a MAC used in another pool does not count."""
    from vmctl.runner import invoke

    n1 = uuid_of(inv, "network", "n1")
    a, b, c = (inv.run("vm-create", **{"name-label": x, "memory": "1GiB"}) for x in "abc")
    h1 = uuid_of(inv, "host", "h1")
    other = inv.run("pool-create", **{"name-label": "p2"})
    o = {"yes": True, "quiet": True}

    def body(txn):
        pool = txn.get("vm", a)["pool"]
        # a PIF of the pool already has c's first MAC; a VIF of another pool has a's
        txn.insert(
            "pif", {"host": h1, "network": n1, "device": "ethx", "mac": mac_for(f"{c}:0"), "pool": pool}
        )
        txn.insert("vif", {"vm": "", "network": "", "device": 0, "mac": mac_for(f"{a}:0"), "pool": other})
        # a VIF created in this transaction holds b's first MAC
        invoke(
            txn,
            "vif-create",
            [f"vm-uuid={a}", f"network-uuid={n1}", "device=1", f"mac={mac_for(f'{b}:0')}"],
            o,
        )
        return [
            invoke(txn, "vif-create", [f"vm-uuid={vm}", f"network-uuid={n1}", "device=0"], o).value
            for vm in (a, b, c)
        ]

    vifs = in_txn(inv, body, write=True)
    macs = [inv.run("vif-param-get", uuid=u, **{"param-name": "mac"}) for u in vifs]
    assert macs == [mac_for(f"{a}:0"), mac_for(f"{b}:0", 1), mac_for(f"{c}:0", 1)]


def test_sync_host_bridges_and_availability(inv):
    h1, h2 = uuid_of(inv, "host", "h1"), uuid_of(inv, "host", "h2")
    break_switch(inv, "h2", "del-br", "xapi0")
    break_switch(inv, "h2", "del-br", "xenbr1")
    in_txn(inv, lambda t: xenet.sync_host_bridges(t, h2), write=True)
    assert ports(inv, "h2") == {"xapi0": [], "xenbr0": ["eth0"], "xenbr1": ["eth1"]}
    inv.run("network-create", **{"name-label": "u", "bridge": "bru", "managed": False})
    vmctl.open(inv.db, host="h1").run("add-br", "bru")
    n2 = inv.run("network-create", **{"name-label": "n2"})
    inv.run(
        "vlan-create",
        **{
            "pif-uuid": inv.run("pif-list", host=h1, device="eth1", params="uuid")[0]["uuid"],
            "vlan": 4,
            "network-uuid": n2,
        },
    )

    def avail(txn):
        nets = {n["name-label"]: n for n in txn.all("network")}
        return {
            (name, h): xenet.network_available(txn, nets[name], h)
            for name in ("n1", "u", "n2")
            for h in (h1, h2)
        }

    got = in_txn(inv, avail)
    assert got == {
        ("n1", h1): True,
        ("n1", h2): True,
        ("u", h1): True,
        ("u", h2): False,
        ("n2", h1): True,
        ("n2", h2): False,
    }
    break_switch(inv, "h1", "del-br", "xapi1")
    assert in_txn(inv, avail)[("n2", h1)] is False


def test_vif_networks(inv):
    vm = inv.run("vm-create", **{"name-label": "v", "memory": "1GiB"})
    n1 = uuid_of(inv, "network", "n1")
    x0 = inv.run("network-list", bridge="xenbr0", params="uuid")[0]["uuid"]
    for d, n in ((0, n1), (1, x0), (2, n1)):
        inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": n, "device": d})
    assert in_txn(inv, lambda t: xenet.vif_networks(t, t.get("vm", vm))) == {n1, x0}


def test_bond_member_attachment_reads_the_rows(inv):
    h1 = uuid_of(inv, "host", "h1")
    pifs = {r["device"]: r["uuid"] for r in inv.run("pif-list", host=h1, params="uuid,device")}
    bn = inv.run("network-create", **{"name-label": "bn"})
    inv.run("bond-create", **{"network-uuid": bn, "pif-uuids": f"{pifs['eth0']},{pifs['eth1']}"})
    break_switch(inv, "h1", "del-bond-iface", "bond0", "eth1")
    assert inv.run("pif-param-get", uuid=pifs["eth1"], **{"param-name": "currently-attached"}) is False
    assert inv.run("pif-param-get", uuid=pifs["eth0"], **{"param-name": "currently-attached"}) is True


def test_db_check_reports_bad_macs_bonds_and_vlans(inv):
    from vmctl.invariants import check

    vm = inv.run("vm-create", **{"name-label": "v", "memory": "1GiB"})
    w = inv.run("vm-create", **{"name-label": "w", "memory": "1GiB"})
    n1 = uuid_of(inv, "network", "n1")
    a = inv.run("vif-create", **{"vm-uuid": vm, "network-uuid": n1, "device": 0})
    b = inv.run("vif-create", **{"vm-uuid": w, "network-uuid": n1, "device": 0})
    h1 = uuid_of(inv, "host", "h1")
    pifs = {r["device"]: r["uuid"] for r in inv.run("pif-list", host=h1, params="uuid,device")}
    bn = inv.run("network-create", **{"name-label": "bn"})
    bond = inv.run("bond-create", **{"network-uuid": bn, "pif-uuids": f"{pifs['eth0']},{pifs['eth1']}"})

    def corrupt(txn):
        txn.update("vif", a, {"mac": "zz:00:00:00:00:01"})
        txn.update("vif", b, {"mac": "03:00:00:00:00"})
        txn.update("bond", bond, {"slaves": []})  # a bond needs a member (xapi_bond.create)
        txn.insert(
            "vlan",
            {
                "tagged-pif": pifs["eth1"],
                "untagged-pif": "",
                "tag": 5000,
                "pool": txn.get("pif", pifs["eth1"])["pool"],
            },
        )

    in_txn(inv, corrupt, write=True)
    found = {(i, c, u) for i, c, u, _t in in_txn(inv, check)}
    assert ("I6", "vif", a) in found and ("I6", "vif", b) in found
    assert ("I14", "bond", bond) in found
    assert any(i == "I14" and c == "vlan" for i, c, _u in found)
