"""The lab tier's tools: is a lab possible here, the session's lab handle (up, down, ways into
its hosts), and what of a lab could remain after it. Shared by tests/lab/conftest.py and the
tests (a module of its own: `import conftest` is ambiguous, see tests/cli_helpers.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from cli_helpers import Inventory

from vmctl.errors import VmctlError
from vmctl.lab import net, prereq
from vmctl.lab.shared import mount_points
from vmctl.lab.state import LabState, load, namespace_id

CGROUP_ROOT = "/sys/fs/cgroup"


def why_no_lab() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        return "one lab per machine: run the lab tier in one process (pytest -n 0 -m lab)"
    try:
        prereq.programs()
    except VmctlError as e:
        return e.message
    if net.anchored_dir() or net.link_exists(net.BRIDGE):
        return f"a lab is already up on this machine ({net.anchored_dir()}): vmctl lab down removes it"
    return None


def machine_traces() -> dict:
    """What of a lab could outlive it on the machine itself: mounts at the paths it mounts over,
    named network namespaces, cgroups libvirt would have made."""
    from vmctl.lab.hosts import PRIVATE_DIRS

    watched = {"/dev/kvm", "/etc/hosts", "/etc/resolv.conf", *PRIVATE_DIRS}
    cgroups = sorted(str(p) for p in Path(CGROUP_ROOT).glob("*/machine*"))
    netns = sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else []
    return {
        "mounts": sorted(m for m in mount_points() if m in watched),
        "paths": sorted(p for p in PRIVATE_DIRS if os.path.exists(p)),
        "cgroups": cgroups,
        "netns": netns,
    }


def leftovers(state: LabState, before: dict) -> list[str]:
    """Everything of the lab described by `state` that still exists (empty: nothing remains)."""
    left = [f"process {p.pid} ({p.what})" for p in state.procs if p.alive()]
    ours = {ns for h in state.hosts for ns in h.namespaces.values() if ns}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            for kind in ("net", "mnt", "uts", "pid"):
                if namespace_id(int(entry), kind) in ours:
                    left.append(f"process {entry} in a lab namespace ({kind})")
    left += [f"link {name}" for name in state.links if net.link_exists(name)]
    left += [f"mount {m}" for m in mount_points() if m == state.dir or m.startswith(state.dir + "/")]
    if os.path.exists(state.dir):
        left.append(f"directory {state.dir}")
    now = machine_traces()
    left += [
        f"{kind}: {sorted(set(now[kind]) - set(before[kind]))}" for kind in now if now[kind] != before[kind]
    ]
    return left


class Lab:
    """The session's lab: `up`/`down` through the real command line, and ways into its hosts."""

    def __init__(self, root: Path):
        # not under pytest's own temporary directory: that one is private to root, and QEMU in
        # the hosts runs unprivileged
        self.root = Path(tempfile.mkdtemp(prefix="vmctl-lab-test-"))
        self.root.chmod(0o755)
        self.dir = self.root / "lab"
        self.inv = Inventory(root / "inv.db")  # pytest's directory: only vmctl reads it
        self.before = machine_traces()
        self.state: LabState | None = None
        self._held_netns: dict[str, int] = {}  # host name -> a descriptor keeping its network namespace

    def up(self, hosts: int = 2, env: dict | None = None):
        r = self.inv.run("lab", "up", "--hosts", str(hosts), "--dir", str(self.dir), env=env)
        if r.rc == 0:
            self.state = load(str(self.dir))
        return r

    def down(self):
        r = self.inv.run("lab", "down")
        if r.rc == 0:
            self.state = None
        return r

    def close(self) -> None:
        """Down if up, and the temporary directory gone (empty after a down)."""
        for fd in self._held_netns.values():
            os.close(fd)
        self._held_netns.clear()
        if self.state is not None:
            r = self.down()
            assert r.rc == 0, r.err
        shutil.rmtree(self.root)

    @property
    def hosts(self) -> list[dict]:
        """`vmctl lab status -f json`: name, address, driver-uri, ovsdb, pid of every host."""
        return json.loads(self.inv.ok("lab", "status", "-f", "json"))

    def in_host(self, name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run cmd inside a host's namespaces (mount, UTS, network, PID)."""
        assert self.state is not None
        pid = self.state.host(name).pid
        return subprocess.run(
            ["nsenter", "-t", str(pid), "-m", "-u", "-n", "-p", "--", *cmd],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def virsh(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """virsh from the root namespace, over the host's TCP listener (as vmctl connects)."""
        assert self.state is not None
        uri = self.state.host(name).driver_uri
        return subprocess.run(
            ["virsh", "-q", "-c", uri, *args], capture_output=True, text=True, check=check, timeout=60
        )

    def stop_libvirtd(self, name: str) -> None:
        """Stop a host's libvirtd by the pid the lab recorded. It is the only child of the host's
        init, so the host's processes end with it (QEMU, Open vSwitch); its network namespace is
        held open meanwhile, so the host keeps its address and refuses connections as a live
        machine without libvirtd does (instead of vanishing from the network). `restart_host`
        brings the host back."""
        import signal
        import time

        assert self.state is not None
        daemon = next(p for p in self.state.procs if p.what == f"{name}: libvirtd" and p.alive())
        init = next(p for p in self.state.procs if p.pid == self.state.host(name).pid)
        self._held_netns[name] = os.open(f"/proc/{init.pid}/ns/net", os.O_RDONLY)
        os.kill(daemon.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while init.alive() or daemon.alive():
            assert time.monotonic() < deadline, f"{name}'s libvirtd did not stop"
            time.sleep(0.05)

    def restart_host(self, name: str) -> None:
        """Start a host stopped by `stop_libvirtd` again as `lab up` starts it (its directory,
        configuration and capability cache are still there), its new processes recorded in the
        lab's state."""
        import time

        from vmctl.lab import hosts

        assert self.state is not None
        host = self.state.host(name)
        index = self.state.hosts.index(host) + 1
        held = self._held_netns.pop(name, None)
        if held is not None:  # the old namespace goes, and its link with it
            os.close(held)
            deadline = time.monotonic() + 10
            while net.link_exists(net.veth_name(index)):
                assert time.monotonic() < deadline, f"{name}'s old link is still there"
                time.sleep(0.02)
        started = hosts.launch(self.state, index, host, prereq.programs())
        started.start_libvirtd()
        started.wait()
        started.record_daemons()
        # the new eth0 has a new MAC: the others would send to the old one until their neighbour
        # entry expires (a migration to the host hung for minutes meanwhile)
        for other in self.state.hosts:
            if other.name != name:
                self.in_host(other.name, "ip", "neigh", "flush", "to", host.address, check=False)
        subprocess.run(["ip", "neigh", "flush", "to", host.address], capture_output=True, check=False)
