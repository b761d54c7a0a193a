"""The lab of real hosts (drivers.md §5), checked from outside with the hosts' own tools: virsh
and ovs-vsctl over each host's address, nsenter into each host's namespaces, the inventory."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import stat
import subprocess
import textwrap
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cli_helpers import VMCTL
from lab_helpers import leftovers

from vmctl.lab import prereq
from vmctl.lab.state import LabState, load

pytestmark = pytest.mark.lab


def test_status_shows_one_row_per_host(lab):
    rows = lab.hosts
    assert [r["name"] for r in rows] == ["lab1", "lab2"]
    addresses = [ipaddress.ip_address(r["address"]) for r in rows]
    assert len(set(addresses)) == 2 and all(a in ipaddress.ip_network("10.201.0.0/24") for a in addresses)
    for r in rows:
        assert r["driver-uri"] == f"qemu+tcp://{r['address']}/system"
        assert r["ovsdb"] == f"tcp:{r['address']}:6640"
        with open(f"/proc/{r['pid']}/comm") as f:  # the host's init: tini, PID 1 of its namespace
            assert f.read().strip() == "tini"
    table = lab.inv.ok("lab", "status").splitlines()
    assert table[0].split() == ["name", "address", "driver-uri", "ovsdb", "pid"]
    assert [line.split() for line in table[1:]] == [[str(v) for v in r.values()] for r in rows]


def test_each_host_is_a_libvirt_host_of_its_own(lab):
    uuids = []
    for h in lab.state.hosts:
        assert lab.virsh(h.name, "list", "--all").returncode == 0
        assert lab.virsh(h.name, "hostname").stdout.strip() == h.name
        caps = ET.fromstring(lab.virsh(h.name, "capabilities").stdout)
        uuids.append(caps.findtext("host/uuid"))
        assert uuids[-1] == h.uuid
    assert len(set(uuids)) == len(uuids)  # libvirt refuses to migrate to a host with its own uuid


def test_each_host_has_its_own_open_vswitch(lab):
    ids = []
    for h in lab.state.hosts:
        vsctl = [prereq.find("ovs-vsctl") or "ovs-vsctl", f"--db={h.ovsdb}"]
        out = subprocess.run([*vsctl, "show"], capture_output=True, text=True, check=True).stdout
        assert "Bridge lab-net" in out and "datapath_type: netdev" in out
        get = [*vsctl, "get", "Open_vSwitch", ".", "external-ids:system-id"]
        ids.append(subprocess.run(get, capture_output=True, text=True, check=True).stdout.strip())
    assert len(set(ids)) == len(ids)


def test_hosts_are_namespaces_of_their_own(lab):
    names = [h.name for h in lab.state.hosts]
    kvm = os.stat("/dev/kvm") if os.path.exists("/dev/kvm") else None
    for h in lab.state.hosts:
        assert lab.in_host(h.name, "hostname").stdout.strip() == h.name
        hosts_file = lab.in_host(h.name, "cat", "/etc/hosts").stdout
        assert all(f"{other.address} {other.name}" in hosts_file for other in lab.state.hosts)
        assert lab.in_host(h.name, "cat", "/etc/resolv.conf").stdout == "nameserver 127.0.0.1\n"
        assert lab.in_host(h.name, "cat", "/proc/1/comm").stdout.strip() == "tini"
        assert f"inet {h.address}/24" in lab.in_host(h.name, "ip", "-4", "addr", "show", "eth0").stdout
        assert names  # every host sees the others by name
        if kvm is not None:
            # a private node over the real one, same device, group kvm, 0660; the real one untouched
            mounts = lab.in_host(h.name, "cat", "/proc/self/mountinfo").stdout
            assert any(line.split()[4] == "/dev/kvm" for line in mounts.splitlines())
            ls = lab.in_host(h.name, "stat", "-c", "%t:%T %G %a", "/dev/kvm").stdout.split()
            assert ls == [f"{os.major(kvm.st_rdev):x}:{os.minor(kvm.st_rdev):x}", "kvm", "660"]
    with open("/proc/self/mountinfo") as f:
        assert not any(line.split()[4] == "/dev/kvm" for line in f)
    if kvm is not None:
        after = os.stat("/dev/kvm")
        assert (after.st_mode, after.st_gid, after.st_ctime_ns) == (kvm.st_mode, kvm.st_gid, kvm.st_ctime_ns)


def test_the_shared_sr_is_one_directory_every_host_sees(lab):
    shared = f"{lab.state.dir}/shared"
    token = uuid.uuid4().hex
    lab.in_host("lab1", "sh", "-c", f"echo {token} > {shared}/from-lab1")
    try:
        assert lab.in_host("lab2", "cat", f"{shared}/from-lab1").stdout.strip() == token
        # a FUSE mount with the subtype libvirt takes for a cluster filesystem
        mounts = lab.in_host("lab2", "cat", "/proc/self/mountinfo").stdout.splitlines()
        types = [line.split(" - ")[1].split()[0] for line in mounts if line.split()[4] == shared]
        assert types == ["fuse.glusterfs"]
    finally:
        os.unlink(f"{shared}/from-lab1")
    # the local SR directory is each host's own
    local = "/var/lib/libvirt/images"
    lab.in_host("lab1", "sh", "-c", f"echo {token} > {local}/only-lab1")
    assert lab.in_host("lab2", "test", "-e", f"{local}/only-lab1", check=False).returncode == 1
    lab.in_host("lab1", "rm", f"{local}/only-lab1")


def test_the_lab_is_registered_in_the_inventory(lab):
    classes = ("pool", "host", "sr", "pbd", "network", "vm", "vdi", "vif")
    words = ["-f", "json"]
    for cls in classes:  # one chained invocation: one read of the whole inventory
        words += [f"{cls}-list", "params=all", *(["--all"] if cls in ("vm", "vdi") else []), "--"]
    inv = dict(zip(classes, json.loads(lab.inv.ok(*words[:-1]))))
    (pool,) = [p for p in inv["pool"] if p["name-label"] == "lab"]
    assert pool["driver"] == "libvirt"
    hosts = sorted((h for h in inv["host"] if h["pool"] == pool["uuid"]), key=lambda h: h["name-label"])
    assert [h["name-label"] for h in hosts] == ["lab1", "lab2"]
    for h, rec in zip(hosts, lab.state.hosts):
        assert (h["address"], h["driver-uri"], h["ovsdb"]) == (rec.address, rec.driver_uri, rec.ovsdb)
        assert h["cpu-count"] == os.cpu_count() and h["memory-total"] > 0  # read from the host itself
    srs = {s["name-label"]: s for s in inv["sr"] if s["pool"] == pool["uuid"]}
    assert pool["default-sr"] == srs["lab-shared"]["uuid"] and srs["lab-shared"]["shared"] is True
    assert srs["lab-shared"]["type"] == "file"
    assert {n for n, s in srs.items() if not s["shared"]} == {"lab1-local", "lab2-local"}
    pbds = [p for p in inv["pbd"] if p["sr"] == srs["lab-shared"]["uuid"]]
    assert {p["device-config"]["path"] for p in pbds} == {f"{lab.state.dir}/shared"} and len(pbds) == 2
    (net,) = [n for n in inv["network"] if n["name-label"] == "lab-net"]
    assert net["bridge"] == "lab-net"
    (tiny,) = [v for v in inv["vm"] if v["name-label"] == "tiny"]
    assert tiny["is-a-template"] is True and tiny["vcpus"] == 1 and tiny["memory-static-max"] == 128 * 1024**2
    (disk,) = [d for d in inv["vdi"] if d["sr"] == srs["lab-shared"]["uuid"]]
    assert disk["virtual-size"] == 1024**3 and disk["provisioning"] == "thin"
    (vif,) = [v for v in inv["vif"] if v["vm"] == tiny["uuid"]]
    assert vif["network"] == net["uuid"]


def test_a_second_lab_up_is_refused_and_changes_nothing(lab):
    state = Path(lab.state.dir, "lab.json").read_text()
    before = lab.inv.snapshot()
    r = lab.inv.fail("lab", "up", "--dir", f"{lab.state.dir}-other", code="LAB_ALREADY_UP")
    assert lab.state.dir in r.err
    assert Path(lab.state.dir, "lab.json").read_text() == state
    assert not os.path.exists(f"{lab.state.dir}-other")
    assert lab.inv.snapshot() == before


def test_a_guest_migrates_live_between_lab_hosts(lab):
    """What the lab is for: a firmware-only guest with its disk on the shared SR and a NIC on
    lab-net moves, running, from lab1 to lab2 (virsh's own peer-to-peer migration)."""
    name = f"lab-test-{uuid.uuid4().hex[:8]}"
    disk = f"{lab.state.dir}/shared/{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "64M"], check=True)
    xml = Path(lab.state.dir, f"{name}.xml")
    xml.write_text(
        textwrap.dedent(f"""\
        <domain type='{"kvm" if os.path.exists("/dev/kvm") else "qemu"}'>
          <name>{name}</name>
          <memory unit='MiB'>128</memory>
          <vcpu>1</vcpu>
          <os><type arch='x86_64' machine='pc'>hvm</type></os>
          <features><acpi/></features>
          <devices>
            <disk type='file' device='disk'>
              <driver name='qemu' type='qcow2' cache='none'/>
              <source file='{disk}'/>
              <target dev='vda' bus='virtio'/>
            </disk>
            <interface type='bridge'>
              <source bridge='lab-net'/>
              <virtualport type='openvswitch'/>
            </interface>
          </devices>
        </domain>
        """)
    )
    try:
        lab.virsh("lab1", "create", str(xml))
        dest = lab.state.host("lab2").driver_uri
        lab.virsh("lab1", "migrate", "--live", "--p2p", name, dest)
        assert lab.virsh("lab1", "list", "--name").stdout.split() == []
        assert lab.virsh("lab2", "domstate", name).stdout.strip() == "running"
        ports = subprocess.run(
            [prereq.find("ovs-vsctl"), f"--db={lab.state.host('lab2').ovsdb}", "list-ports", "lab-net"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert len(ports) == 1  # the guest's port moved with it
    finally:
        for h in ("lab1", "lab2"):
            lab.virsh(h, "destroy", name, check=False)
        os.unlink(disk)
        xml.unlink()


def test_down_leaves_nothing_and_a_failed_up_undoes_itself(lab, tmp_path):
    """down stops and removes everything up made; an up that fails half-way (here: a libvirtd
    that cannot start) or is interrupted undoes what it made. The lab comes up again at the end."""
    try:
        _down_then_failed_ups(lab, tmp_path)
    finally:
        if load(str(lab.dir)) is None:  # whatever failed above, the later tests get their lab back
            r = lab.up()
            assert r.rc == 0, r.err
    assert [h["name"] for h in lab.hosts] == ["lab1", "lab2"]


def _down_then_failed_ups(lab, tmp_path) -> None:
    state = lab.state
    r = lab.down()
    assert r.rc == 0 and r.out.startswith("lab: down in "), r.err
    assert leftovers(state, lab.before) == []
    assert json.loads(lab.inv.ok("-f", "json", "pool-list", "name-label=lab")) == []
    assert json.loads(lab.inv.ok("-f", "json", "host-list")) == []
    assert lab.inv.fail("lab", "status", code="LAB_NOT_UP")

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in prereq.PROGRAMS:
        if name != "libvirtd":
            os.symlink(prereq.find(name), bin_dir / name)
    fake = bin_dir / "libvirtd"
    fake.write_text(
        "#!/bin/sh\necho 'libvirtd: this test stands in for a libvirtd that cannot start'\nexit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    r = lab.up(env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert r.rc == 1 and r.out == ""
    assert r.err.startswith("vmctl: LAB_FAILED: lab1") and "a libvirtd that cannot start" in r.err, r.err
    assert not lab.dir.exists()
    assert leftovers(state, lab.before) == []
    assert processes_mentioning(str(lab.dir)) == []
    assert json.loads(lab.inv.ok("-f", "json", "pool-list")) == []

    # Ctrl-C (or a termination) once the hosts run: what was made is undone
    for sig in (signal.SIGINT, signal.SIGTERM):
        p = subprocess.Popen(
            [*VMCTL, "lab", "up", "--dir", str(lab.dir)],
            env=lab.inv.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not any(h.pid for h in (load(str(lab.dir)) or LabState(dir="")).hosts):
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.02)
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
        assert (p.returncode, out, err) == (130, "", "vmctl: interrupted; nothing was changed\n")
        assert not lab.dir.exists() and processes_mentioning(str(lab.dir)) == []
        # the last process of a host's namespaces may still be being reaped by the kernel
        deadline = time.monotonic() + 10
        while leftovers(state, lab.before) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert leftovers(state, lab.before) == []
    assert json.loads(lab.inv.ok("-f", "json", "pool-list")) == []


def processes_mentioning(text: str) -> list[str]:
    """Processes whose command line names `text` (to check that none is left, never to stop one)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                words = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(text in w for w in words):
            found.append(f"{entry}: {' '.join(words)}")
    return found
