"""Open vSwitch on real hosts (vmctl/host_switches.py, vmctl/drivers/libvirt/network.py,
drivers.md §1, §3 last row, §4): each host of a libvirt pool is a private ovsdb-server here, and
what vmctl does is checked with the real `ovs-vsctl --db=` against it.

libvirt itself is a fake where guests are concerned (FakeLibvirt): its domains plug their NICs
into the host's database as libvirt does (a port vnetN carrying iface-id, attached-mac and vm-id,
on the NIC's bridge with its tag). The one test that needs a real vmctl process (Ctrl-C) uses the
real driver on libvirt's built-in test:///default hypervisor.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ovs.oracle import OvsOracle, missing_tools, sort_tree
from vmctl import drivers
from vmctl.drivers.base import HostFacts
from vmctl.drivers.libvirt.network import NetworkMixin

pytestmark = pytest.mark.ovs

GiB = 1024**3
REPO = Path(__file__).resolve().parents[2]


class FakeLibvirt(NetworkMixin):
    """The libvirt driver with real Open vSwitch (NetworkMixin) and fake domains that plug their
    NICs into the host's database as libvirt does."""

    name = "libvirt"

    def __init__(self) -> None:
        self.running: dict[tuple[str, str], list[str]] = {}  # (uri, domain) -> its ports
        self.taps = 0

    def close(self) -> None:
        pass

    def probe(self, host):
        return HostFacts("GenuineIntel", "Skylake", 6, ("sse2", "vmx"), 8, 32 * GiB, "9.0.0")

    def cpu_compatible(self, host, cpu_xml):
        return True

    def domains(self, host):
        return {dom: "running" for (uri, dom) in self.running if uri == host.uri}

    def volumes(self, host, sr):
        return {}

    def domain_start(self, host, dom, paused=False):
        ports = []
        for nic in dom.nics:
            tap = f"vnet{self.taps}"
            self.taps += 1
            words = ["--no-wait", "--", "--if-exists", "del-port", tap, "--", "add-port", nic.bridge, tap]
            words += [f"tag={nic.vlan}"] if nic.vlan is not None else []
            words += ["--", "set", "Interface", tap, f"external_ids:iface-id={nic.interface_id}"]
            words += [f'external_ids:attached-mac="{nic.mac}"', f"external_ids:vm-id={dom.uuid}"]
            self._vsctl(host, words)
            ports.append(tap)
        self.running[(host.uri, dom.uuid)] = ports

    def domain_destroy(self, host, uuid):
        for tap in self.running.pop((host.uri, uuid), []):
            self._vsctl(host, ["--no-wait", "--", "--if-exists", "del-port", tap])

    def domain_shutdown(self, host, uuid, timeout):
        self.domain_destroy(host, uuid)

    def domain_undefine(self, host, uuid):
        pass


@pytest.fixture
def servers():
    """Private ovsdb-servers, one per host asked for; stopped and removed afterwards."""
    why = missing_tools()
    if why:
        pytest.skip(f"needs the real Open vSwitch tools: {why}")
    made: list[OvsOracle] = []

    def new() -> OvsOracle:
        o = OvsOracle()
        made.append(o)
        o.start()
        return o

    yield new
    for o in made:
        o.close()


@pytest.fixture
def fake(monkeypatch):
    f = FakeLibvirt()
    monkeypatch.setitem(drivers._drivers, "libvirt", f)
    return f


def vmctl(db, *args: str) -> tuple[int, str, str]:
    from cli_helpers import cli

    p = cli(db, *args)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stdout, p.stderr


def ok(db, *args: str) -> str:
    rc, out, err = vmctl(db, *args)
    assert rc == 0, f"vmctl {' '.join(args)}: {err}"
    return out


def vsctl(server: OvsOracle, *args: str) -> str:
    rc, out, err = server.run(list(args))
    assert rc == 0, f"ovs-vsctl {' '.join(args)}: {err}"
    return out


def pool(db, *hosts: tuple[str, OvsOracle], pifs: str = "") -> None:
    ok(db, "pool-create", "name-label=real", "driver=libvirt")
    for i, (name, server) in enumerate(hosts, 1):
        args = [f"name-label={name}", f"address=10.0.0.{i}", "pool=real", f"driver-uri=test:///{name}"]
        args += [f"ovsdb=unix:{server.sock}"] + ([f"pifs={pifs}"] if pifs else [])
        ok(db, "host-add", *args)


def records(text: str) -> set[str]:
    """The records of a `list` output (ovs-vsctl prints them in uuid order, vmctl by name)."""
    return {r.strip("\n") for r in text.split("\n\n") if r.strip()}


def assert_same_reads(db, host: str, server: OvsOracle) -> None:
    """vmctl's reads of the host's switch print what ovs-vsctl prints from the host's database:
    byte for byte, the uuids included (show: below its first line, in name order)."""
    bridges = ok(db, f"--host={host}", "list-br")
    assert bridges == vsctl(server, "list-br")
    for b in bridges.split():
        assert ok(db, f"--host={host}", "list-ports", b) == vsctl(server, "list-ports", b)
    for b in ok(db, f"--host={host}", "--real", "list-br").split():
        args = ("get", "bridge", b, "_uuid", "datapath_type", "external_ids", "fail_mode")
        assert ok(db, f"--host={host}", *args) == vsctl(server, *args)
    # show's first line is the host's uuid in vmctl, the root row's on the host
    show = "root\n" + ok(db, f"--host={host}", "show").split("\n", 1)[1]
    assert sort_tree(show) == sort_tree("root\n" + vsctl(server, "show").split("\n", 1)[1])
    for table in ("Bridge", "Port", "Interface"):
        assert records(ok(db, f"--host={host}", "list", table)) == records(vsctl(server, "list", table))


def test_ovs_style_commands_change_the_host_and_read_back_alike(tmp_path, servers, fake):
    s = servers()
    # the host already has a bridge of its own (as the lab's hosts have lab-net): host-add takes it
    vsctl(s, "add-br", "pre", "--", "set", "bridge", "pre", "datapath_type=netdev")
    db = tmp_path / "inv.db"
    pool(db, ("h1", s))
    assert_same_reads(db, "h1", s)
    steps = [
        [
            "add-br",
            "br0",
            "--",
            "add-port",
            "br0",
            "p1",
            "tag=5",
            "--",
            "set",
            "port",
            "p1",
            "external_ids:k=v",
        ],
        [
            "--may-exist",
            "add-br",
            "br0",
            "--",
            "add-bond",
            "br0",
            "bond0",
            "eth1",
            "eth2",
            "bond_mode=balance-slb",
        ],
        ["add-br", "vlan7", "br0", "7", "--", "add-port", "vlan7", "p7"],
        [
            "set",
            "bridge",
            "br0",
            "fail_mode=secure",
            "other_config:a=1",
            "--",
            "set",
            "port",
            "p1",
            "trunks=1,2",
        ],
        ["set", "interface", "p1", "type=internal", "--", "set", "interface", "eth1", "options:x=y"],
        ["clear", "port", "p1", "tag"],
        ["set-controller", "br0", "tcp:192.0.2.9:6653", "--", "br-set-external-id", "br0", "owner", "me"],
        ["del-port", "br0", "p1", "--", "--if-exists", "del-port", "nothing"],
        ["del-controller", "br0", "--", "set", "port", "bond0", "external_ids:k=w", "other_config={}"],
        ["del-br", "vlan7"],
        ["add-port", "pre", "q1", "--", "del-br", "br0"],
    ]
    for words in steps:
        ok(db, "--host=h1", *words)
        assert_same_reads(db, "h1", s)
    assert vsctl(s, "list-br") == "pre\n" and vsctl(s, "list-ports", "pre") == "q1\n"


def test_a_dry_run_never_acts(tmp_path, servers, fake):
    s = servers()
    db = tmp_path / "inv.db"
    pool(db, ("h1", s))
    out = ok(db, "--host=h1", "--dry-run", "add-br", "br0", "--", "list-br")
    assert out == "br0\n" and vsctl(s, "list-br") == ""
    assert ok(db, "--host=h1", "list-br") == ""


def test_a_port_the_host_has_but_the_inventory_does_not(tmp_path, servers, fake):
    """The host refuses the change (its own message), and neither side changes."""
    s = servers()
    db = tmp_path / "inv.db"
    pool(db, ("h1", s))
    ok(db, "--host=h1", "add-br", "br0")
    vsctl(s, "add-port", "br0", "stray")  # behind vmctl's back
    before = vsctl(s, "show")
    rc, out, err = vmctl(db, "--host=h1", "add-br", "br1", "--", "add-port", "br0", "stray")
    assert rc == 1 and out == ""
    first = err.splitlines()[0]
    assert first.startswith(
        "vmctl: DRIVER_ERROR: change Open vSwitch failed on h1: ovs-vsctl: transaction error"
    )
    assert "constraint violation" in first and "(stray)" in first
    assert vsctl(s, "show") == before
    assert ok(db, "--host=h1", "list-br") == "br0\n" and ok(db, "--host=h1", "list-ports", "br0") == ""
    # host-sync names it; --fix makes the inventory follow the host
    rc, out, _ = vmctl(db, "host-sync", "host=h1")
    assert rc == 1 and "port stray on bridge br0 of h1, unknown to the inventory" in out
    ok(db, "host-sync", "host=h1", "--fix")
    assert ok(db, "--host=h1", "list-ports", "br0") == "stray\n"
    assert_same_reads(db, "h1", s)


def test_an_unreachable_ovsdb(tmp_path, servers, fake):
    """host-add warns and records no bridges; a change then fails naming the host and
    ovs-vsctl's reason, and changes nothing; host-sync says the database cannot be read."""
    db = tmp_path / "inv.db"
    ok(db, "pool-create", "name-label=real", "driver=libvirt")
    gone = f"unix:{tmp_path}/no-such.sock"
    rc, _, err = vmctl(
        db,
        "host-add",
        "name-label=h1",
        "address=10.0.0.1",
        "pool=real",
        "driver-uri=test:///h1",
        f"ovsdb={gone}",
    )
    assert rc == 0
    assert f"warning: the Open vSwitch database of host h1 at {gone} cannot be read" in err
    journal = ok(db, "-f", "json", "journal-list")
    rc, out, err = vmctl(db, "--host=h1", "add-br", "br0")
    assert rc == 1 and out == ""
    assert err.splitlines()[0] == (
        f"vmctl: DRIVER_ERROR: change Open vSwitch failed on h1: ovs-vsctl: {gone}: "
        "database connection failed (No such file or directory)"
    )
    assert ok(db, "--host=h1", "list-br") == "" and ok(db, "-f", "json", "journal-list") == journal
    rc, out, _ = vmctl(db, "host-sync", "host=h1")
    assert rc == 1 and f"its Open vSwitch database at {gone} cannot be read" in out


def test_a_failing_host_undoes_the_change_on_the_others(tmp_path, servers, fake):
    """network-create gives every host its bridge, one OVSDB transaction each; when the second
    host fails, the first host's bridge is taken back and the inventory keeps nothing."""
    s1, s2 = servers(), servers()
    db = tmp_path / "inv.db"
    pool(db, ("h1", s1), ("h2", s2))
    net = ok(db, "network-create", "name-label=n1").strip()
    bridge = ok(db, "network-param-get", f"uuid={net}", "param-name=bridge").strip()
    for s in (s1, s2):
        assert vsctl(s, "br-get-external-id", bridge, "xs-network-uuids") == net + "\n"
    s2.stop()
    rc, _, err = vmctl(db, "network-create", "name-label=n2")
    assert rc == 1 and err.startswith("vmctl: DRIVER_ERROR: change Open vSwitch failed on h2: ")
    assert vsctl(s1, "list-br") == f"{bridge}\n"
    assert ok(db, "network-list", "--minimal").strip() == net


def test_xe_networks_vlans_and_guest_ports(tmp_path, servers, fake):
    """A PIF's bridge and port, a VLAN's fake bridge, and a guest on the VLAN network: libvirt's
    port (vnetN) sits on the parent bridge with the VLAN's tag and the VIF's iface-id; host-sync
    matches it with the inventory's VIF port and finds nothing to say; it goes with the guest."""
    s = servers()
    db = tmp_path / "inv.db"
    pool(db, ("h1", s), pifs="eth1")
    assert vsctl(s, "list-ports", "xenbr1") == "eth1\n"
    pif = ok(db, "pif-list", "device=eth1", "--minimal").strip()
    net = ok(db, "network-create", "name-label=v5").strip()
    vbridge = ok(db, "network-param-get", f"uuid={net}", "param-name=bridge").strip()
    ok(db, "vlan-create", f"pif-uuid={pif}", "vlan=5", f"network-uuid={net}")
    assert vsctl(s, "br-to-parent", vbridge) == "xenbr1\n" and vsctl(s, "br-to-vlan", vbridge) == "5\n"
    vm = ok(db, "vm-create", "name-label=g1", "memory=256MiB", "pool=real").strip()
    vif = ok(db, "vif-create", f"vm-uuid={vm}", f"network-uuid={net}", "device=0").strip()
    ok(db, "vm-start", f"vm={vm}", "on=h1")
    port = vsctl(s, "--bare", "--columns=name", "find", "Interface", f"external_ids:iface-id={vif}").strip()
    assert port.startswith("vnet")
    assert vsctl(s, "get", "port", port, "tag") == "5\n" and vsctl(s, "port-to-br", port) == f"{vbridge}\n"
    assert ok(db, "vif-param-get", f"uuid={vif}", "param-name=currently-attached").strip() == "true"
    assert vmctl(db, "host-sync", "host=h1")[1] == "host-sync: host h1 agrees with the inventory\n"
    ok(db, "vm-shutdown", f"vm={vm}", "--force")
    assert vsctl(s, "list-ports", vbridge) == ""
    assert vmctl(db, "host-sync", "host=h1")[1] == "host-sync: host h1 agrees with the inventory\n"
    assert_same_reads(db, "h1", s)


def test_host_sync_follows_the_host(tmp_path, servers, fake):
    s = servers()
    db = tmp_path / "inv.db"
    pool(db, ("h1", s))
    ok(
        db,
        "--host=h1",
        "add-br",
        "br0",
        "--",
        "add-port",
        "br0",
        "p1",
        "--",
        "add-port",
        "br0",
        "p2",
        "tag=3",
    )
    br0 = ok(db, "--host=h1", "get", "bridge", "br0", "_uuid").strip()
    p1 = ok(db, "--host=h1", "get", "port", "p1", "_uuid").strip()
    # behind vmctl's back: a bridge and a port appear, a port goes, a tag changes
    vsctl(
        s,
        "add-br",
        "new",
        "--",
        "del-port",
        "p1",
        "--",
        "add-port",
        "br0",
        "p3",
        "--",
        "set",
        "port",
        "p2",
        "tag=4",
    )
    new = vsctl(s, "get", "bridge", "new", "_uuid").strip()
    p3 = vsctl(s, "get", "port", "p3", "_uuid").strip()
    rc, out, _ = vmctl(db, "host-sync", "host=h1")
    assert rc == 1
    assert out.splitlines() == [
        f"bridge {new}: bridge new on h1, unknown to the inventory",
        f"port {p1}: inventory has port p1 on bridge br0 of h1, the host does not",
        f"port {ok(db, '--host=h1', 'get', 'port', 'p2', '_uuid').strip()}: port p2 on h1: "
        "tag 3 in the inventory, 4 on the host",
        f"port {p3}: port p3 on bridge br0 of h1, unknown to the inventory",
    ]
    rc, out, _ = vmctl(db, "host-sync", "host=h1", "--fix")
    assert rc == 0 and out.splitlines()[-1] == "host-sync: host h1 agrees with the inventory now"
    assert f"fixed port {p1}: inventory has port p1 on bridge br0 of h1, the host does not: removed it" in out
    assert_same_reads(db, "h1", s)
    assert ok(db, "--host=h1", "get", "bridge", "br0", "_uuid").strip() == br0
    # the repair acted on nothing: the host is as it was
    assert vsctl(s, "list-ports", "br0") == "p2\np3\n"


@pytest.mark.skipif(sys.platform != "linux", reason="signals to a child process")
def test_ctrl_c_during_a_change_leaves_both_sides_as_they_were(tmp_path, servers):
    """The real vmctl and driver (libvirt's test:///default hypervisor), an ovs-vsctl that takes
    its time: SIGINT while it changes the host. The OVSDB transaction still completes, is then
    reversed, and the inventory keeps nothing."""
    pytest.importorskip("libvirt", reason="libvirt-python is not installed")
    s = servers()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    started, made = tmp_path / "started", tmp_path / "made"
    real = subprocess.run(["sh", "-c", "command -v ovs-vsctl"], capture_output=True, text=True).stdout.strip()
    wrapper = bin_dir / "ovs-vsctl"
    # the change that creates a Bridge row waits, and leaves a mark once the host took it
    wrapper.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" --no-wait "*" create Bridge "*) ;; *) exec ' + real + ' "$@";; esac\n'
        f": > {started}; sleep 1.5\n"
        f'{real} "$@" && : > {made}\n'
    )
    wrapper.chmod(0o755)
    db = tmp_path / "inv.db"
    env = {
        **os.environ,
        "VMCTL_DB": str(db),
        "PYTHONPATH": str(REPO),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    env.pop("VMCTL_HOST", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "vmctl", *args], env=env, capture_output=True, text=True, timeout=60
        )

    assert run("pool-create", "name-label=real", "driver=libvirt").returncode == 0
    r = run(
        "host-add",
        "name-label=h1",
        "address=10.0.0.1",
        "pool=real",
        "driver-uri=test:///default",
        f"ovsdb=unix:{s.sock}",
    )
    assert r.returncode == 0, r.stderr
    journal = run("-f", "json", "journal-list").stdout
    p = subprocess.Popen(
        [sys.executable, "-m", "vmctl", "--host=h1", "add-br", "br0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert started.exists(), p.communicate()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert made.exists() and vsctl(s, "list-br") == ""  # made by the change, then taken back
    assert run("--host=h1", "list-br").stdout == ""
    assert run("-f", "json", "journal-list").stdout == journal


def test_a_bond_takes_its_member_s_vlan_and_gives_it_back_on_the_host(tmp_path, servers, fake):
    """xapi_bond.create and xapi_bond.destroy (move_vlan): a member's VLAN moves onto the bond
    and back to the primary member; on the host its fake bridge follows, the parent bridge
    changing with it, and host-sync finds nothing to say either way."""
    s = servers()
    db = tmp_path / "inv.db"
    pool(db, ("h1", s), pifs="eth1,eth2")
    e1, e2 = (ok(db, "pif-list", f"device={d}", "--minimal").strip() for d in ("eth1", "eth2"))
    net = ok(db, "network-create", "name-label=v5").strip()
    vbridge = ok(db, "network-param-get", f"uuid={net}", "param-name=bridge").strip()
    ok(db, "vlan-create", f"pif-uuid={e1}", "vlan=5", f"network-uuid={net}")
    bn = ok(db, "network-create", "name-label=bn").strip()
    bond_bridge = ok(db, "network-param-get", f"uuid={bn}", "param-name=bridge").strip()
    bond = ok(db, "bond-create", f"network-uuid={bn}", f"pif-uuids={e1},{e2}").strip()
    assert (
        vsctl(s, "br-to-parent", vbridge) == f"{bond_bridge}\n" and vsctl(s, "br-to-vlan", vbridge) == "5\n"
    )
    assert vmctl(db, "host-sync", "host=h1")[1] == "host-sync: host h1 agrees with the inventory\n"
    ok(db, "bond-destroy", f"uuid={bond}")
    assert vsctl(s, "br-to-parent", vbridge) == "xenbr1\n" and vsctl(s, "br-to-vlan", vbridge) == "5\n"
    assert vmctl(db, "host-sync", "host=h1")[1] == "host-sync: host h1 agrees with the inventory\n"
