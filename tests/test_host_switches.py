"""The switches of real hosts without Open vSwitch installed: the ovs-vsctl words a change
becomes (vmctl/drivers/libvirt/network.py), what the service layer hands the driver and when
(vmctl/host_switches.py), and the guest NIC in the domain XML. The same paths against a real
ovsdb-server: tests/ovs/test_real_hosts.py (marker ovs)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from test_domains_wiring import FakeDriver, ok, vmctl

from vmctl import drivers
from vmctl.drivers.base import DomainSpec, NicSpec
from vmctl.drivers.libvirt.domain_xml import domain_xml
from vmctl.drivers.libvirt.network import COLUMNS, change_commands, rows_from_json
from vmctl.host_switches import guest_ports, without_guest_ports

B, P, IF, P2, IF2 = (f"{c * 8}-0000-4000-8000-000000000000" for c in "bcdef")


def bridge(**kw) -> dict:
    row = {"uuid": B, "name": "br0", "ports": [P], "controller": [], "fail_mode": None, "datapath_type": ""}
    return {**row, "external_ids": {}, "other_config": {}, **kw}


def port(uuid=P, name="br0", ifaces=(IF,), **kw) -> dict:
    row = {
        "uuid": uuid,
        "name": name,
        "interfaces": list(ifaces),
        "tag": None,
        "trunks": [],
        "vlan_mode": None,
    }
    row |= {"fake_bridge": False, "bond_fake_iface": False, "bond_mode": None, "lacp": None}
    return {**row, "external_ids": {}, "other_config": {}, **kw}


def iface(uuid=IF, name="br0", **kw) -> dict:
    return {
        "uuid": uuid,
        "name": name,
        "type": "internal",
        "options": {},
        "external_ids": {},
        "other_config": {},
        **kw,
    }


def rows(b=None, ports=(), ifaces=()) -> dict:
    return {"bridge": [b] if b else [], "port": list(ports), "interface": list(ifaces), "controller": []}


def test_the_driver_knows_every_stored_column():
    from vmctl.store.schema import OVS_TABLES

    for t, table in OVS_TABLES.items():
        assert set(COLUMNS[t]) == {c.name for c in table.columns} - {"uuid", "host"}


def test_a_new_bridge_is_created_with_the_inventorys_uuids():
    after = rows(bridge(), [port()], [iface()])
    assert change_commands(rows(), after) == [
        [f"--id={IF}", "create", "Interface", 'name="br0"', 'type="internal"'],
        [
            f"--id={P}",
            "create",
            "Port",
            'name="br0"',
            f"interfaces=[{IF}]",
            "fake_bridge=false",
            "bond_fake_iface=false",
        ],
        [f"--id={B}", "create", "Bridge", 'name="br0"', f"ports=[{P}]", 'datapath_type=""'],
        ["add", "Open_vSwitch", ".", "bridges", B],
    ]
    assert change_commands(after, after) == []
    assert change_commands(after, rows()) == [["remove", "Open_vSwitch", ".", "bridges", B]]


def test_columns_change_by_element_and_by_key_never_whole():
    before = rows(
        bridge(external_ids={"a": "1", "gone": "x"}),
        [port(), port(P2, "p1", (IF2,), tag=5, trunks=[1, 2])],
        [iface(), iface(IF2, "p1", type="")],
    )
    before["bridge"][0]["ports"].append(P2)
    after = json.loads(json.dumps(before))
    after["bridge"][0]["external_ids"] = {"a": "2", "new": 'q"t'}
    after["bridge"][0]["fail_mode"] = "secure"
    after["port"][1] |= {"tag": None, "trunks": [2, 3]}
    after["bridge"][0]["ports"].remove(P2)  # the port leaves: garbage-collected with its interface
    assert change_commands(before, after) == [
        ["clear", "Port", P2, "tag"],
        ["remove", "Port", P2, "trunks", "1"],
        ["add", "Port", P2, "trunks", "3"],
        ["remove", "Bridge", B, "ports", P2],
        ["set", "Bridge", B, 'fail_mode="secure"'],
        ["remove", "Bridge", B, "external_ids", '"gone"'],
        ["set", "Bridge", B, 'external_ids:"a"="2"', 'external_ids:"new"="q\\"t"'],
    ]


def test_rows_are_read_from_ovs_vsctls_json():
    bridges = {
        "headings": [
            "_uuid",
            "name",
            "ports",
            "controller",
            "fail_mode",
            "datapath_type",
            "external_ids",
            "other_config",
        ],
        "data": [
            [
                ["uuid", B],
                "br0",
                ["uuid", P],
                ["set", []],
                "secure",
                "netdev",
                ["map", [["k", "v"]]],
                ["map", []],
            ]
        ],
    }
    ports = {
        "headings": [
            "_uuid",
            "name",
            "interfaces",
            "tag",
            "trunks",
            "vlan_mode",
            "fake_bridge",
            "bond_fake_iface",
            "bond_mode",
            "lacp",
            "external_ids",
            "other_config",
        ],
        "data": [
            [
                ["uuid", P],
                "br0",
                ["uuid", IF],
                ["set", []],
                ["set", [1, 2]],
                ["set", []],
                False,
                False,
                ["set", []],
                ["set", []],
                ["map", []],
                ["map", []],
            ]
        ],
    }
    empty = {"headings": [], "data": []}
    got = rows_from_json([json.dumps(empty), json.dumps(ports), json.dumps(empty), json.dumps(bridges)])
    assert got["bridge"] == [bridge(fail_mode="secure", datapath_type="netdev", external_ids={"k": "v"})]
    assert got["port"] == [port(trunks=[1, 2])]
    assert got["interface"] == [] and got["controller"] == []


def test_guest_ports_are_left_out_of_what_is_exchanged():
    guest = iface(
        IF2, "vnet0", type="", external_ids={"iface-id": "vif-1", "attached-mac": "02:00:00:00:00:01"}
    )
    r = rows(bridge(ports=[P, P2]), [port(), port(P2, "vnet0", (IF2,))], [iface(), guest])
    assert guest_ports(r) == {P2: [IF2]}
    assert without_guest_ports(r) == rows(bridge(), [port()], [iface()])


def test_a_guest_nic_carries_its_vif_and_its_vlan_in_the_domain_xml():
    nic = NicSpec("02:00:00:00:00:07", "xenbr1", 0, True, interface_id="vif-uuid", vlan=5)
    root = ET.fromstring(domain_xml(DomainSpec("vm", "t", 2**27, 2**27, 1, nics=(nic,)), {}))
    i = root.find("devices/interface")
    assert i.find("source").get("bridge") == "xenbr1"
    assert i.find("virtualport").get("type") == "openvswitch"
    assert i.find("virtualport/parameters").get("interfaceid") == "vif-uuid"
    assert i.find("vlan/tag").get("id") == "5"
    plain = ET.fromstring(
        domain_xml(DomainSpec("vm", "t", 2**27, 2**27, 1, nics=(NicSpec("02:00:00:00:00:08", "br", 0),)), {})
    )
    assert plain.find("devices/interface/vlan") is None
    assert plain.find("devices/interface/virtualport/parameters") is None


# --- the service layer, with a fake driver that records the changes it is handed -------------------------
class RecordingDriver(FakeDriver):
    def switch_change(self, host, before, after):
        self.calls.append(("switch_change", host.name))
        self.switched.append((host.name, before, after))


@pytest.fixture
def fake(monkeypatch):
    f = RecordingDriver()
    f.switched = []
    monkeypatch.setitem(drivers._drivers, "libvirt", f)
    return f


@pytest.fixture
def pool(tmp_path, fake):
    db = tmp_path / "inv.db"
    ok(db, "pool-create", "name-label=lp", "driver=libvirt")
    for i in (1, 2):
        ok(db, "host-add", f"name-label=h{i}", f"address=10.0.0.{i}", "pool=lp", f"driver-uri=test:///h{i}")
    fake.calls.clear()
    return db


def names(rows_: dict, table: str) -> list[str]:
    return sorted(r["name"] for r in rows_[table])


def test_a_network_reaches_every_host_and_a_dry_run_none(pool, fake):
    ok(pool, "network-create", "name-label=n1", "bridge=br-n1", "--dry-run")
    assert fake.switched == []
    ok(pool, "network-create", "name-label=n1", "bridge=br-n1")
    assert [h for h, _, _ in fake.switched] == ["h1", "h2"]
    for _, before, after in fake.switched:
        assert names(before, "bridge") == [] and names(after, "bridge") == ["br-n1"]
        assert after["bridge"][0]["external_ids"]["xs-network-uuids"]


def test_a_real_host_gets_no_pif_unless_named(pool, fake):
    assert ok(pool, "pif-list", "--minimal") == ""
    ok(pool, "host-add", "name-label=h3", "address=10.0.0.3", "pool=lp", "driver-uri=test:///h3", "pifs=eth1")
    # the new pool-wide network of eth1 has its bridge on every host, and h3 its port too
    assert {h: names(after, "port") for h, _, after in fake.switched} == {
        "h1": ["xenbr1"],
        "h2": ["xenbr1"],
        "h3": ["eth1", "xenbr1"],
    }


def test_bridges_change_before_the_guests_start_and_guest_ports_are_libvirts(pool, fake):
    """A network made in the same invocation as the start: the bridges come first; the guest's
    own port (vif<domid>.<device> in the inventory) is libvirt's and never handed over."""
    vm = ok(pool, "vm-create", "name-label=v2", "memory=256MiB")
    chain = ["network-create", "name-label=n1", "bridge=br-n1", "--id=@n", "--"]
    chain += ["vif-create", f"vm-uuid={vm}", "network-uuid=@n", "device=0", "--id=@f", "--"]
    chain += ["vm-start", "vm=v2", "on=h1", "--", "vif-param-get", "uuid=@f", "param-name=uuid"]
    vif = ok(pool, *chain).split()[-1]
    assert [c[0] for c in fake.changes()] == ["switch_change", "switch_change", "domain_start"]
    for _, _, after in fake.switched:
        assert names(after, "bridge") == ["br-n1"] and names(after, "port") == ["br-n1"]
    (nic,) = fake.specs[vm].nics
    assert (nic.bridge, nic.interface_id, nic.vlan) == ("br-n1", vif, None)
    assert ok(pool, "--host=h1", "list-ports", "br-n1").startswith("vif")  # the inventory's name
    fake.switched.clear()
    ok(pool, "vm-shutdown", "vm=v2", "--force")
    assert fake.switched == []


def test_host_sync_fix_hands_nothing_back_to_the_hosts(pool, fake):
    ok(pool, "--host=h1", "add-br", "br0")
    fake.switched.clear()
    rc, out, _ = vmctl(pool, "host-sync", "host=h1", "--fix")  # the fake host has no bridges
    assert rc == 0 and "inventory has bridge br0 on h1, the host does not: removed it" in out
    assert fake.switched == [] and ok(pool, "--host=h1", "list-br") == ""


def test_a_sim_pool_hands_nothing_to_a_driver(tmp_path, fake):
    db = tmp_path / "sim.db"
    ok(db, "host-add", "name-label=s1", "address=10.1.0.1", "cpu-count=4", "memory-total=8GiB")
    ok(db, "--host=s1", "add-br", "br0", "--", "add-port", "br0", "p1")
    assert fake.switched == [] and ok(db, "--host=s1", "list-ports", "xenbr0") == "eth0"
