"""Open vSwitch on the lab's real hosts (vmctl/host_switches.py, drivers.md §3 last row, §5):
vmctl's ovs-style commands on a lab host agree with `ovs-vsctl --db=<that host's ovsdb>`, and a
started guest's port, made by libvirt, appears on lab-net's bridge with the VIF's ids."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from vmctl.lab import prereq

pytestmark = pytest.mark.lab


def vsctl(lab, host: str, *args: str) -> str:
    cmd = [
        prereq.find("ovs-vsctl") or "ovs-vsctl",
        f"--db={lab.state.host(host).ovsdb}",
        "--timeout=30",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def test_ovs_style_commands_on_a_lab_host_agree_with_its_ovs_vsctl(lab):
    def both(*args: str) -> None:
        assert lab.inv.ok("--host=lab1", *args) == vsctl(lab, "lab1", *args), args

    # lab-net was taken from the host when lab up registered it: the host's own uuid
    both("get", "bridge", "lab-net", "_uuid", "datapath_type")
    br, p = f"t{uuid.uuid4().hex[:6]}", f"q{uuid.uuid4().hex[:6]}"
    lab.inv.ok(
        "--host=lab1", "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev",
        "--", "add-port", br, p, "tag=9", "--", "add-br", f"{br}.7", br, "7",
    )  # fmt: skip
    try:
        both("list-br")
        both("list-ports", br)
        both("br-to-parent", f"{br}.7")
        both("get", "bridge", br, "_uuid", "datapath_type")
        both("--columns=_uuid,name,tag,interfaces,fake_bridge", "list", "port", p, f"{br}.7")
        lab.inv.ok("--host=lab1", "set", "port", p, "tag=10", "--", "del-br", f"{br}.7")
        both("get", "port", p, "tag")
        both("list-br")
        assert lab.inv.ok("host-sync", "host=lab1").endswith("agrees with the inventory\n")
    finally:
        lab.inv.ok("--host=lab1", "--if-exists", "del-br", br)
    assert br not in vsctl(lab, "lab1", "list-br").split()
    assert br not in vsctl(lab, "lab2", "list-br").split()  # the other host was never touched
    both("list-br")


def test_a_started_guests_port_is_on_lab_nets_bridge(lab):
    net = lab.inv.ok("network-list", "name-label=lab-net", "--minimal").strip()
    name = f"o{uuid.uuid4().hex[:6]}"
    words = ["--id=@g", "vm-create", f"name-label={name}", "memory=128MiB", "pool=lab"]
    words += ["--", "--id=@f", "vif-create", "vm-uuid=@g", f"network-uuid={net}", "device=0"]
    words += ["--", "vm-start", "vm=@g", "on=lab1", "--", "vif-param-get", "uuid=@f", "param-name=mac"]
    out = lab.inv.ok(*words).split()
    vm, vif, mac = out[0], out[1], out[-1]
    try:
        port = vsctl(
            lab, "lab1", "--bare", "--columns=name", "find", "interface", f"external_ids:iface-id={vif}"
        )
        port = port.strip()
        assert port and vsctl(lab, "lab1", "port-to-br", port) == "lab-net\n"
        ids = vsctl(lab, "lab1", "get", "interface", port, "external_ids:attached-mac", "external_ids:vm-id")
        assert [x.strip('"') for x in ids.split()] == [mac, vm]
        # libvirt's port is the VIF's: no stranger, nothing to repair
        lines = lab.inv.ok("host-sync", "host=lab1").splitlines()
        assert not [x for x in lines if port in x or vif in x or "bridge" in x]
        lab.inv.ok("vm-shutdown", f"vm={vm}", "--force")
        assert port not in vsctl(lab, "lab1", "list-ports", "lab-net").split()
    finally:
        lab.inv.run("vm-uninstall", f"vm={vm}", "--force")
