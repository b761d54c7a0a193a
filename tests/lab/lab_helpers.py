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
