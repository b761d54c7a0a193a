"""One private libvirtd for the tests of the libvirt driver against a real hypervisor (the
root-lab tier, marker `lab`): VMCTL_TEST_LIBVIRT_URI if set, else a daemon of our own in a
private mount namespace, its state under a temporary directory and its socket outside, so it
never meets the machine's own libvirt (drivers.md §5 builds whole hosts the same way).

Skips with a visible reason without root, the packages or libvirt-python. Stops what it
started by pid; the namespace and its mounts go with the daemon.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

PACKAGES = "apt-get install qemu-utils qemu-system-x86 libvirt-daemon-system libvirt-clients"
PRIVATE = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt")


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "a private libvirtd needs root"
    for tool in ("libvirtd", "virtlogd", "unshare", "qemu-img"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed ({PACKAGES})"
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return "libvirt-python is not installed (pip install 'vmctl[libvirt]')"
    return None


def start(root: Path) -> tuple[subprocess.Popen, str]:
    """Start libvirtd with its state under `root`; returns the process and its URI."""
    for d in ("etc", "run", "lib", "cache", "log", "sock"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copytree("/etc/libvirt", root / "etc", dirs_exist_ok=True)
    with open(root / "etc" / "qemu.conf", "a") as f:
        f.write("cgroup_controllers = [ ]\n")  # no machine cgroups left in the machine's own tree
    (root / "etc" / "libvirtd.conf").write_text(
        f'unix_sock_dir = "{root}/sock"\n'
        'unix_sock_rw_perms = "0700"\n'
        'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
        f'host_uuid = "{uuid.uuid4()}"\n'
    )
    # every private directory is mounted over, never written through: a mount point missing on
    # this machine is made for the run and removed by stop() (listed in made-mount-points)
    made = [d for d in PRIVATE if not os.path.isdir(d)]
    for d in made:
        os.makedirs(d)
    (root / "made-mount-points").write_text("".join(d + "\n" for d in made))
    mounts = " && ".join(
        f"mount --bind {root}/{src} {dst}"
        for src, dst in zip(("etc", "run", "lib", "cache", "log"), PRIVATE, strict=True)
    )
    script = f"{mounts} && virtlogd -d -p /run/libvirt/virtlogd.pid && exec libvirtd -f /etc/libvirt/libvirtd.conf -p /run/libvirt/libvirtd.pid"
    log = open(root / "libvirtd.log", "w")  # noqa: SIM115 (kept open for the daemon's lifetime)
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"qemu:///system?socket={root}/sock/libvirt-sock"
    deadline = time.monotonic() + 20
    while not (root / "sock" / "libvirt-sock").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc, root)
            raise RuntimeError(f"libvirtd did not start: {(root / 'libvirtd.log').read_text()[-2000:]}")
        time.sleep(0.05)
    return proc, uri


def stop(proc: subprocess.Popen, root: Path) -> None:
    """Destroy the domains it still runs, then end libvirtd and virtlogd by pid."""
    try:
        import libvirt

        conn = libvirt.open(f"qemu:///system?socket={root}/sock/libvirt-sock")
        for dom in conn.listAllDomains():
            if dom.isActive():
                dom.destroy()
        conn.close()
    except Exception:
        pass
    pids = [proc.pid]
    pidfile = root / "run" / "virtlogd.pid"
    if pidfile.exists():
        pids.append(int(pidfile.read_text().split()[0]))
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    made = root / "made-mount-points"
    for d in reversed(made.read_text().split() if made.exists() else []):
        try:
            os.rmdir(d)
        except OSError:
            pass


@pytest.fixture(scope="session")
def libvirt_uri():
    """The URI of a real libvirt host for this test session."""
    uri = os.environ.get("VMCTL_TEST_LIBVIRT_URI")
    if uri:
        yield uri
        return
    why = _why_not()
    if why:
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="vmctl-libvirtd-"))
    try:
        proc, uri = start(root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield uri
    finally:
        stop(proc, root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def scratch_dir(tmp_path):
    """A directory for storage pools that libvirtd (running as root) can use."""
    d = tmp_path / "sr"
    d.mkdir()
    return d
