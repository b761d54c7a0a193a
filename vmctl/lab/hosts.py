"""One lab host: a real libvirt host and Open vSwitch in namespaces of this machine
(drivers.md §5 lists what each item below is needed for).

A host is a directory under the lab's DIR (its private copies of libvirt's directories, its OVS
database, its /etc/hosts and resolv.conf, its logs) and an init script that tini runs as PID 1
of new PID, mount, UTS and network namespaces. The script waits for its eth0 (made by the root
namespace, see net.py), mounts its private directories over the machine's, puts a private
/dev/kvm node over the real one, starts ovsdb-server and ovs-vswitchd with its bridge, then
virtlogd and libvirtd listening on its own address. Every mount it makes lives and dies with its
mount namespace: the root namespace never sees them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import stat
import subprocess
import time
import uuid
from pathlib import Path

from vmctl.lab import net
from vmctl.lab.proc import wait_for
from vmctl.lab.state import HostRecord, LabState, namespace_id, proc_of, read_stat

LIBVIRTD_PORT = 16509
OVSDB_PORT = 6640
OVS_BRIDGE = "lab-net"  # the bridge of the network lab-net, in every host
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
# the machine's directories each host gets a private copy of, mounted over them in its namespace
PRIVATE_DIRS = (
    "/etc/libvirt",
    "/run/libvirt",
    "/var/lib/libvirt",
    "/var/cache/libvirt",
    "/var/log/libvirt",
    "/run/openvswitch",
)
CAPS_CACHE = "var/cache/libvirt/qemu/capabilities"
# definitions of the machine's own domains, networks, pools and secrets stay out of the copies
_NOT_COPIED = shutil.ignore_patterns("qemu", "storage", "secrets", "nodedev")
# how long a host may take to answer (the first QEMU capability probe takes 2-12 s here)
READY_TIMEOUT = 60.0
BASE_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def plan(count: int) -> list[HostRecord]:
    """The hosts' names, addresses, host uuids and endpoints."""
    hosts = []
    for i in range(1, count + 1):
        address = net.host_address(i)
        hosts.append(
            HostRecord(
                name=f"lab{i}",
                address=address,
                uuid=str(uuid.uuid4()),  # libvirt refuses to migrate to a host with its own uuid
                driver_uri=f"qemu+tcp://{address}/system",
                ovsdb=f"tcp:{address}:{OVSDB_PORT}",
                veth=net.veth_name(i),
            )
        )
    return hosts


def host_dir(lab: LabState, host: HostRecord) -> Path:
    return Path(lab.dir) / host.name


def prepare(lab: LabState, host: HostRecord, programs: dict[str, str], first: bool) -> None:
    """Write everything the host needs under DIR/<name>: no process runs yet."""
    d = host_dir(lab, host)
    for sub in ("log", "dev", "ovs", "run/libvirt", "run/openvswitch"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    shutil.copytree("/etc/libvirt", d / "etc/libvirt", symlinks=True, ignore=_NOT_COPIED)
    for var in ("/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt"):
        copy_skeleton(var, d / var.lstrip("/"))
    if first:  # a capability cache libvirt on this machine already made is as good as its own
        copy_caps(Path("/") / CAPS_CACHE, d / CAPS_CACHE)
    (d / "etc/libvirt/libvirtd.conf").write_text(libvirtd_conf(host), encoding="utf-8")
    (d / "etc/libvirt/qemu.conf").write_text(qemu_conf(host), encoding="utf-8")
    (d / "etc/hosts").write_text(hosts_file(lab), encoding="utf-8")
    # without a resolver that answers at once, libvirt's host-name lookups stall ~40 s per call
    (d / "etc/resolv.conf").write_text("nameserver 127.0.0.1\n", encoding="utf-8")
    subprocess.run(
        [programs["ovsdb-tool"], "create", str(d / "ovs/conf.db"), OVS_SCHEMA],
        check=True,
        capture_output=True,
    )
    (d / "init.sh").write_text(init_script(lab, host), encoding="utf-8")


def copy_skeleton(src: str, dst: Path) -> None:
    """The directory tree of `src` with its owners and modes, without its files: libvirt finds
    the layout its package made (e.g. qemu/ owned by libvirt-qemu), and none of the machine's
    images, saved states or logs."""
    for root, dirs, _files in os.walk(src):
        rel = os.path.relpath(root, src)
        target = dst if rel == "." else dst / rel
        target.mkdir(parents=True, exist_ok=True)
        st = os.stat(root)
        os.chown(target, st.st_uid, st.st_gid)
        os.chmod(target, stat.S_IMODE(st.st_mode))
        dirs[:] = [x for x in dirs if not os.path.islink(os.path.join(root, x))]


def copy_caps(src: Path, dst: Path) -> None:
    """QEMU capability cache files: the first probe takes seconds, a copied cache ~0.25 s."""
    if not src.is_dir():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.xml"):
        shutil.copy2(f, dst / f.name)


def libvirtd_conf(host: HostRecord) -> str:
    return (
        f"# libvirtd of lab host {host.name} (written by vmctl lab up)\n"
        "listen_tls = 0\n"
        "listen_tcp = 1\n"
        f'listen_addr = "{host.address}"\n'
        'auth_tcp = "none"\n'
        f'host_uuid = "{host.uuid}"\n'
    )


def qemu_conf(host: HostRecord) -> str:
    return (
        f"# QEMU driver of lab host {host.name} (written by vmctl lab up)\n"
        f'migration_address = "{host.address}"\n'
        f'migration_host = "{host.address}"\n'
        # no cgroups: the hosts share the machine's cgroup tree, where their domains' groups
        # would collide (the same name on both ends of a migration) and outlive a stopped lab
        "cgroup_controllers = [ ]\n"
    )


def hosts_file(lab: LabState) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    lines += [f"{h.address} {h.name}" for h in lab.hosts]
    return "\n".join(lines) + "\n"


def kvm_device() -> tuple[int, int] | None:
    """The real /dev/kvm's major and minor numbers, when the machine has one."""
    try:
        st = os.stat("/dev/kvm")
    except OSError:
        return None
    return (os.major(st.st_rdev), os.minor(st.st_rdev)) if stat.S_ISCHR(st.st_mode) else None


def init_script(lab: LabState, host: HostRecord) -> str:
    q = shlex.quote
    kvm = kvm_device()
    lines = [
        "#!/bin/sh",
        f"# Lab host {host.name}: run by tini, PID 1 of its own PID, mount, UTS and network",
        "# namespaces (vmctl lab up; vmctl/lab/hosts.py).",
        "set -eu",
        f"H={q(str(host_dir(lab, host)))}",
        "# the root namespace puts eth0 into this namespace, then says go",
        'read -r go && [ "$go" = go ] || exit 1',
        f"hostname {q(host.name)}",
        "ip link set lo up",
        f"ip addr add {host.address}/{net.PREFIX_LEN} dev eth0",
        "ip link set eth0 up",
        f"for d in {' '.join(PRIVATE_DIRS)}; do",
        '    mount --bind "$H$d" "$d"',
        "done",
        'mount --bind "$H/etc/hosts" /etc/hosts',
        'mount --bind "$H/etc/resolv.conf" /etc/resolv.conf',
    ]
    if kvm is not None:
        # a private node, so libvirt sees /dev/kvm usable by its QEMU user (group kvm) and keeps
        # its capability cache; the real node is never changed
        lines += [
            'mount -t tmpfs -o mode=0755,size=16k vmctl-lab-dev "$H/dev"',
            f'mknod -m 0660 "$H/dev/kvm" c {kvm[0]} {kvm[1]}',
            'if getent group kvm >/dev/null; then chgrp kvm "$H/dev/kvm"; fi',
            'mount --bind "$H/dev/kvm" /dev/kvm',
        ]
    lines += [
        # Open vSwitch: a private database socket, and the host's address for vmctl's OVSDB remote
        'ovsdb-server "$H/ovs/conf.db" --remote=punix:/run/openvswitch/db.sock \\',
        f"    --remote=ptcp:{OVSDB_PORT}:{host.address} --pidfile=/run/openvswitch/ovsdb-server.pid \\",
        '    --detach --no-chdir --log-file="$H/log/ovsdb-server.log"',
        "ovs-vsctl --no-wait init -- set Open_vSwitch . \\",
        f"    external-ids:hostname={q(host.name)} external-ids:system-id={host.uuid}",
        "ovs-vswitchd unix:/run/openvswitch/db.sock --pidfile=/run/openvswitch/ovs-vswitchd.pid \\",
        '    --detach --no-chdir --log-file="$H/log/ovs-vswitchd.log"',
        # the userspace datapath: the kernel one cannot load here
        # in the background, orphaned at once so that tini reaps it (libvirtd would not)
        f"((ovs-vsctl --timeout=60 add-br {OVS_BRIDGE} -- set bridge {OVS_BRIDGE} datapath_type=netdev \\",
        '    && : > "$H/ovs.ready") &)',
        # pid files in the private /run/libvirt: the machine's /run is shared by every host
        "virtlogd -d -p /run/libvirt/virtlogd.pid",
        "# libvirtd once its QEMU capability cache is in place (see start_all)",
        'read -r go && [ "$go" = libvirtd ] || exit 1',
        'exec libvirtd -l -p /run/libvirt/libvirtd.pid >>"$H/log/libvirtd.log" 2>&1',
    ]
    return "\n".join(lines) + "\n"


class Starting:
    """A host whose namespaces exist and whose init script runs."""

    def __init__(self, lab: LabState, host: HostRecord, programs: dict[str, str]):
        self.lab, self.host = lab, host
        d = host_dir(lab, host)
        self.log_path = d / "log/init.log"
        paths = dict.fromkeys([*(os.path.dirname(p) for p in programs.values()), *BASE_PATH])
        env = {"PATH": ":".join(paths), "HOME": "/root", "LANG": "C.UTF-8"}
        with open(self.log_path, "ab") as log:
            # its own session and no descriptor of ours: the host outlives this command, and a
            # caller reading our output never waits for the host's
            self.proc = subprocess.Popen(
                [
                    programs["unshare"],
                    "--net",
                    "--mount",
                    "--uts",
                    "--pid",
                    "--fork",
                    "--propagation",
                    "private",
                    "--mount-proc",
                    programs["tini"],
                    "--",
                    "/bin/sh",
                    str(d / "init.sh"),
                ],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                cwd="/",
            )
        lab.add_proc(self.proc.pid, f"{host.name}: unshare")
        ours = namespace_id(os.getpid(), "net")
        wait_for(
            f"{host.name}: namespaces",
            lambda: namespace_id(self.proc.pid, "net") not in (None, ours) and self._init_pid() is not None,
            10,
            self._gone,
        )
        init = self._init_pid()
        assert init is not None
        host.pid = init
        lab.add_proc(init, f"{host.name}: init (tini)")
        host.namespaces = {k: namespace_id(init, k) for k in ("net", "mnt", "uts", "pid")}
        lab.save()

    def _init_pid(self) -> int | None:
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children", encoding="ascii") as f:
                kids = f.read().split()
        except OSError:
            return None
        return int(kids[0]) if kids else None

    def _gone(self) -> str | None:
        """Why the host will never be ready: its init ended (the last words of its latest log)."""
        if self.proc.poll() is None and (self.host.pid == 0 or read_stat(self.host.pid) is not None):
            return None
        logs = [p for p in (self.log_path, self.log_path.with_name("libvirtd.log")) if p.exists()]
        latest = max(logs, key=lambda p: p.stat().st_mtime_ns, default=self.log_path)
        try:
            words = latest.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            words = []
        return f"the host's init ended: {words[-1] if words else 'no output'}"

    def go(self) -> None:
        """eth0 is in the namespace: the init script goes on up to libvirtd."""
        self._say(b"go\n")

    def start_libvirtd(self) -> None:
        self._say(b"libvirtd\n")
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def _say(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the script ended: _gone() says why

    def ready(self) -> bool:
        return (host_dir(self.lab, self.host) / "ovs.ready").exists() and listening(
            self.host.address, LIBVIRTD_PORT
        )

    def wait(self, timeout: float = READY_TIMEOUT) -> None:
        wait_for(self.host.name, self.ready, timeout, self._gone)
        wait_for(f"{self.host.name}: libvirtd", self.answers, timeout, self._gone)

    def answers(self) -> bool:
        """libvirtd answers through its TCP listener, its QEMU capabilities probed (and cached)."""
        import libvirt

        try:
            conn = libvirt.open(self.host.driver_uri)
        except libvirt.libvirtError:
            return False
        try:
            conn.getCapabilities()
        finally:
            conn.close()
        return True

    def record_daemons(self) -> None:
        """Every process now in the host's PID namespace (its daemons), by root-namespace pid."""
        pidns = self.host.namespaces.get("pid")
        known = {p.pid for p in self.lab.procs}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in known and namespace_id(int(entry), "pid") == pidns:
                p = proc_of(int(entry), f"{self.host.name}: {comm(int(entry))}")
                if p is not None:
                    self.lab.procs.append(p)
        self.lab.save()


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return "?"


def listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.2):
            return True
    except OSError:
        return False


def start_all(lab: LabState, programs: dict[str, str]) -> None:
    """Every host's namespaces, network and Open vSwitch at once; libvirtd on host 1 first: its
    QEMU capability probe is the slow part (seconds), and its cache, copied to the others before
    their libvirtd starts, spares them theirs (~0.25 s instead)."""
    t0 = time.monotonic()
    started = [launch(lab, i, h, programs) for i, h in enumerate(lab.hosts, 1)]
    first, rest = started[0], started[1:]
    first.start_libvirtd()
    first.wait()
    for s in rest:
        copy_caps(host_dir(lab, first.host) / CAPS_CACHE, host_dir(lab, s.host) / CAPS_CACHE)
        s.start_libvirtd()
    for s in rest:
        s.wait(max(READY_TIMEOUT - (time.monotonic() - t0), 10))
    for s in started:
        s.record_daemons()


def launch(lab: LabState, index: int, host: HostRecord, programs: dict[str, str]) -> Starting:
    s = Starting(lab, host, programs)
    net.plug(lab, programs["ip"], index, s.proc.pid)
    s.go()
    return s
