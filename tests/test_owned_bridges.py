"""The ovs-style commands a user issues leave alone what the xe layer owns on a host (network
bridges, VLAN bridges, the ports of PIFs, bonds, tunnels and running VMs' VIFs, PIF device names),
the runner refuses to commit a switch change that breaks I13, and db-check says what it found,
what --fix did, and one line when all is well."""

from __future__ import annotations

import shutil
import sqlite3

import pytest
from cli_helpers import Inventory, cli

from vmctl.errors import OvsError

ALL_HOLD = "db-check: all 16 invariants hold\n"


def ok(db, *args) -> str:
    p = cli(db, *args)
    assert p.returncode == 0, (args, p.stderr)
    return p.stdout.strip()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Pool lab: h1 (eth0-eth3) and h2 (eth0, eth1); network n1 (xapi0); VM web1 running on h1
    with VIF 0 on n1; a bond of eth2+eth3 on h1 (network bn); VLAN 10 on h1's eth1 (network vn);
    a vxlan tunnel between h1 and h2 (network tn)."""
    db = tmp_path_factory.mktemp("owned") / "base.db"
    ok(db, "pool-create", "name-label=lab")
    for name, addr, pifs in (("h1", "10.0.0.1", "eth0,eth1,eth2,eth3"), ("h2", "10.0.0.2", "eth0,eth1")):
        ok(
            db,
            "host-add",
            f"name-label={name}",
            f"address={addr}",
            "cpu-count=8",
            "memory-total=64GiB",
            "pool=lab",
            f"pifs={pifs}",
        )
    ids = {"n1": ok(db, "network-create", "name-label=n1")}
    ids["web1"] = ok(db, "vm-create", "name-label=web1", "memory=1GiB", "vcpus=1")
    ids["vif"] = ok(db, "vif-create", "vm-uuid=web1", "network-uuid=n1", "device=0")
    ok(db, "vm-start", "vm=web1", "on=h1")
    ids["domid"] = ok(db, "vm-param-get", "uuid=web1", "param-name=domid")

    def pif(host, dev):
        h = ok(db, "host-list", f"name-label={host}", "--minimal")
        return ok(db, "pif-list", f"host={h}", f"device={dev}", "vlan=-1", "--minimal")

    ids.update(eth0=pif("h1", "eth0"), eth1=pif("h1", "eth1"), eth2=pif("h1", "eth2"), eth3=pif("h1", "eth3"))
    bn = ok(db, "network-create", "name-label=bn")
    ids["bond"] = ok(db, "bond-create", f"network-uuid={bn}", f"pif-uuids={ids['eth2']},{ids['eth3']}")
    ids["vn"] = ok(db, "network-create", "name-label=vn")
    ok(db, "vlan-create", f"pif-uuid={ids['eth1']}", "vlan=10", f"network-uuid={ids['vn']}")
    tn = ok(db, "network-create", "name-label=tn")
    ids["tunnel"] = ok(db, "tunnel-create", f"pif-uuid={ids['eth0']}", f"network-uuid={tn}", "protocol=vxlan")
    ok(db, "tunnel-create", f"pif-uuid={pif('h2', 'eth0')}", f"network-uuid={tn}", "protocol=vxlan")
    ids["h2"] = ok(db, "host-list", "name-label=h2", "--minimal")
    ids["bridges"] = {
        name: ok(db, "network-param-get", f"uuid={name}", "param-name=bridge") for name in ("bn", "vn", "tn")
    }
    master = ok(db, "bond-param-get", f"uuid={ids['bond']}", "param-name=master")
    ids["bond-port"] = ok(db, "pif-param-get", f"uuid={master}", "param-name=device")
    ids["h2-eth1"] = pif("h2", "eth1")
    assert cli(db, "db-check").returncode == 0
    return db, ids


@pytest.fixture
def inv(world, tmp_path):
    db = tmp_path / "inv.db"
    shutil.copy(world[0], db)
    return Inventory(db), world[1]


def dump(db) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def refused(inv: Inventory, *args: str) -> str:
    """The command (the real executable, on h1) fails with one plain `vmctl: ` line and changes
    nothing."""
    before = dump(inv.db)
    r = inv.fail("--host=h1", *args)
    assert r.err.startswith("vmctl: cannot ") and r.err.count("\n") == 1, r.err
    assert dump(inv.db) == before
    return r.err


# --- 1. the commands refuse -------------------------------------------------------------------------------
def test_del_br_of_management_network_refused(inv):
    inv, ids = inv
    net = inv.ok(
        "network-list", "bridge=xenbr0", "params=uuid,name-label", "-f", "csv", "--no-headings"
    ).strip()
    uuid, label = net.split(",", 1)
    err = refused(inv, "del-br", "xenbr0")
    assert err == (
        f"vmctl: cannot delete bridge xenbr0: it is the bridge of network {label.strip(chr(34))} ({uuid}), "
        "which XAPI owns; use network-destroy\n"
    )
    assert refused(inv, "--if-exists", "del-br", "xenbr0") == err
    assert inv.ok("db-check") == ALL_HOLD


@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
def test_del_port_of_running_vm_refused(inv):
    inv, ids = inv
    port = f"vif{ids['domid']}.0"
    err = refused(inv, "del-port", "xapi0", port)
    assert f"cannot delete port {port}: it is the port of VIF {ids['vif']} of VM web1 ({ids['web1']})" in err
    assert "use vif-unplug or vm-shutdown" in err
    refused(inv, "--if-exists", "del-port", port)
    refused(inv, "--with-iface", "del-port", port)
    refused(inv, "set", "port", port, "tag=5")  # moving it onto a VLAN
    refused(inv, "clear", "interface", port, "external_ids")
    assert inv.ok("db-check") == ALL_HOLD


@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
def test_add_port_named_like_a_pif_device_refused(inv):
    inv, ids = inv
    err = refused(inv, "add-port", "xenbr1", "eth0")
    assert err.startswith(
        f"vmctl: cannot create a port named eth0: it is the device of PIF {ids['eth0']} on host h1"
    )
    assert "use pif-plug or pif-unplug" in err
    refused(inv, "add-bond", "xapi0", "b9", "eth1", "x9")
    refused(inv, "add-br", "eth3")
    refused(inv, "add-bond-iface", "eth1", "x9")
    assert inv.ok("db-check") == ALL_HOLD


@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
def test_pif_bond_vlan_tunnel_rows_refused(inv):
    inv, ids = inv
    vlan_bridge, tunnel_bridge = ids["bridges"]["vn"], ids["bridges"]["tn"]
    assert "use pif-plug or pif-unplug" in refused(inv, "del-port", "eth0")
    assert f"bond {ids['bond']}" in refused(inv, "del-port", ids["bond-port"])
    refused(inv, "del-bond-iface", "eth2")
    refused(inv, "set", "port", ids["bond-port"], "bond_mode=active-backup")
    assert "use vlan-destroy" in refused(inv, "del-br", vlan_bridge)
    assert "bridge of network" in refused(inv, "del-br", "xenbr1")
    refused(inv, "set", "port", vlan_bridge, "tag=11")
    tport = inv.ok("--host=h1", "list-ports", tunnel_bridge).strip()
    err = refused(inv, "del-port", tport)
    assert f"the port of tunnel {ids['tunnel']} to host h2 ({ids['h2']})" in err
    refused(inv, "set", "interface", tport, "options:remote_ip=10.9.9.9")
    assert inv.ok("db-check") == ALL_HOLD


@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
def test_what_the_xe_layer_does_not_own_still_works(inv):
    inv, ids = inv
    inv.ok("--host=h1", "add-port", "xenbr1", "p1", "--", "set", "port", "p1", "tag=3")
    inv.ok(
        "--host=h1",
        "add-br",
        "br9",
        "--",
        "add-port",
        "br9",
        "p2",
        "--",
        "del-port",
        "p1",
        "--",
        "del-br",
        "br9",
    )
    # the xe layer itself still removes and re-creates what it owns
    inv.ok("vm-shutdown", "vm=web1", "--force")
    assert f"vif{ids['domid']}.0" not in inv.ok("--host=h1", "list-ports", "xapi0")
    inv.ok("pif-unplug", f"uuid={ids['h2-eth1']}")
    assert inv.ok("db-check") == ALL_HOLD


# --- 2. the net before commit -----------------------------------------------------------------------------
def test_commit_refused_when_a_switch_change_breaks_i13(world, tmp_path, monkeypatch):
    """With the command checks out of the way, the pre-commit check still refuses."""
    from vmctl.ovs import owned

    db = tmp_path / "inv.db"
    shutil.copy(world[0], db)
    monkeypatch.setattr(owned, "check_delete_bridge", lambda *a: None)
    monkeypatch.setattr(owned, "check_change_port", lambda *a: None)
    before = Inventory(db).snapshot()
    p = cli(db, "--host=h1", "del-br", "xenbr0")
    assert p.returncode == 1 and p.stdout == ""
    assert (
        p.stderr.startswith("vmctl: transaction refused: it would leave host h1 (")
        and p.stderr.count("\n") == 1
    )
    assert "I13 network" in p.stderr and "bridge xenbr0 missing on host" in p.stderr
    p = cli(db, "--host=h1", "del-port", f"vif{world[1]['domid']}.0")
    assert p.returncode == 1 and f"I13 vif {world[1]['vif']}: port vif" in p.stderr
    assert Inventory(db).snapshot() == before
    assert cli(db, "db-check").stdout == ALL_HOLD


def test_commit_check_only_refuses_what_the_transaction_adds(world, tmp_path):
    """A violation already there (made by a raw edit below the commands) does not block unrelated
    ovs-style commands on that host; only the hosts whose switch changed are checked."""
    from vmctl.store.txn import Store

    db = tmp_path / "inv.db"
    shutil.copy(world[0], db)

    def break_it(txn):
        h1 = txn.resolve_one("host", "h1")["uuid"]
        txn.switch(h1).run("del-br", {}, ["xenbr0"])  # the xe layer's own path: no checks

    Store(str(db)).run(break_it, True)
    assert cli(db, "db-check").returncode == 1
    assert cli(db, "--host=h1", "add-br", "br7").returncode == 0
    assert cli(db, "--host=h2", "add-br", "br7").returncode == 0


def test_internal_session_runs_are_not_checked(world, tmp_path):
    """The xe layer's Session.run (no transaction in its Ctx) may still delete what it owns."""
    from vmctl.store.txn import Store

    db = tmp_path / "inv.db"
    shutil.copy(world[0], db)

    def fn(txn):
        s = txn.switch(txn.resolve_one("host", "h1")["uuid"])
        s.run("del-port", {}, [f"vif{world[1]['domid']}.0"])
        s.run("del-br", {}, ["xenbr0"])
        return s.has_bridge("xenbr0")

    assert Store(str(db)).run(fn, True)[0] is False
    with pytest.raises(OvsError):
        Store(str(db)).run(lambda txn: txn.switch("nope").run("del-port", {}, ["eth0"]), False)


# --- 3. db-check's output ---------------------------------------------------------------------------------
def test_db_check_one_line_when_all_hold(inv):
    inv, _ids = inv
    assert inv.ok("db-check") == ALL_HOLD
    assert inv.ok("db-check", "--fix") == ALL_HOLD


def test_db_check_fix_says_what_it_repaired(world, tmp_path):
    from vmctl.store.txn import Store

    db = tmp_path / "inv.db"
    shutil.copy(world[0], db)
    ids = world[1]
    port = f"vif{ids['domid']}.0"

    def break_it(txn):
        h1 = txn.resolve_one("host", "h1")["uuid"]
        txn.switch(h1).run("del-br", {}, ["xapi0"])
        txn.switch(h1).run("del-port", {}, ["eth0"])
        return h1

    h1 = Store(str(db)).run(break_it, True)[0]
    inv = Inventory(db)
    r = inv.run("db-check")
    assert r.rc == 1
    assert r.out == (
        f"I13 network {ids['n1']}: bridge xapi0 missing on host {h1}\n"
        f"I13 vif {ids['vif']}: port {port} missing\n"
        f"I13 pif {ids['eth0']}: port eth0 missing\n"
    )
    fixed = inv.ok("db-check", "--fix")
    assert fixed == (
        f"fixed I13 network {ids['n1']}: created bridge xapi0 on host h1 ({h1})\n"
        f"fixed I13 vif {ids['vif']}: added port {port} on host h1 ({h1})\n"
        f"fixed I13 pif {ids['eth0']}: added port eth0 on host h1 ({h1})\n" + ALL_HOLD
    )
    assert inv.ok("db-check") == ALL_HOLD
