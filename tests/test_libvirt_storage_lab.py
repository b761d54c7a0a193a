"""Storage on a real libvirt host (root lab tier): the storage commands through the real
executable against a private libvirtd (tests/libvirtd.py), every outcome checked independently of
vmctl with qemu-img, virsh and the SR's directory; the faults a host can throw (a full
filesystem, a volume deleted behind vmctl's back, Ctrl-C during a copy) end with one clear error
line and nothing half-made.

Run: python -m pytest -q -n 0 -m lab tests/test_libvirt_storage_lab.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from cli_helpers import VMCTL, cli_env
from libvirtd import libvirt_uri  # noqa: F401

pytestmark = pytest.mark.lab

MiB = 1024**2


class Host:
    """One inventory on one libvirt host: `vmctl` in a subprocess, and the host's own view."""

    def __init__(self, tmp: Path, uri: str) -> None:
        self.db, self.uri, self.tmp = tmp / "inv.db", uri, tmp
        self.ok("pool-create", "name-label=lp", "driver=libvirt")
        self.ok("host-add", "name-label=h1", "address=192.0.2.1", f"driver-uri={uri}", "pool=lp")

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        p = subprocess.run(
            [*VMCTL, *args], capture_output=True, text=True, env=cli_env(self.db), timeout=timeout
        )
        assert "Traceback" not in p.stderr, p.stderr
        return p

    def ok(self, *args: str) -> str:
        p = self.run(*args)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    def fail(self, code: str, *args: str) -> str:
        p = self.run(*args)
        assert p.returncode == 1 and p.stdout == "", (p.stdout, p.stderr)
        assert p.stderr.startswith(f"vmctl: {code}: "), p.stderr
        return p.stderr

    def sr(self, name: str, path: Path) -> str:
        path.mkdir(parents=True, exist_ok=True)
        return self.ok(
            "sr-create",
            f"name-label={name}",
            "type=ext",
            "host=h1",
            "physical-size=100GiB",
            f"device-config:path={path}",
        )

    def param(self, uuid: str, name: str) -> str:
        return self.ok("vdi-param-get", f"uuid={uuid}", f"param-name={name}")

    def virsh(self, *args: str) -> str:
        return subprocess.run(
            ["virsh", "-c", self.uri, *args], capture_output=True, text=True, check=True
        ).stdout


def info(path: Path, *extra: str) -> dict | list:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", *extra, str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def write(path: Path, pattern: int, offset: str, length: str) -> None:
    subprocess.run(
        ["qemu-io", "-c", f"write -P {pattern} {offset} {length}", str(path)], check=True, capture_output=True
    )


def pattern_at(path: Path, pattern: int, offset: str, length: str) -> bool:
    p = subprocess.run(
        ["qemu-io", "-r", "-U", "-c", f"read -P {pattern} {offset} {length}", str(path)],
        capture_output=True,
        text=True,
    )
    return p.returncode == 0 and "Pattern verification failed" not in p.stdout


@pytest.fixture
def h(tmp_path, libvirt_uri):  # noqa: F811
    return Host(tmp_path, libvirt_uri)


def files(path: Path) -> list[str]:
    return sorted(os.listdir(path))


def volumes(h: Host, sr: str) -> list[str]:
    return sorted(line.split()[0] for line in h.virsh("vol-list", sr).splitlines()[2:] if line.strip())


# --- volumes as made --------------------------------------------------------------------------------------
def test_thin_volumes_are_qcow2_and_thick_ones_raw_with_every_block_allocated(h, tmp_path):
    path = tmp_path / "sr"
    sr = h.sr("sr", path)
    thin = h.ok("vdi-create", f"sr-uuid={sr}", "name-label=thin", "virtual-size=256MiB")
    lazy = h.ok(
        "vdi-create", f"sr-uuid={sr}", "name-label=lazy", "virtual-size=64MiB", "provisioning=thick-lazy"
    )
    eager = h.ok(
        "vdi-create", f"sr-uuid={sr}", "name-label=eager", "virtual-size=64MiB", "provisioning=thick-eager"
    )
    assert files(path) == sorted([f"{thin}.qcow2", f"{lazy}.img", f"{eager}.img"])
    t = info(path / f"{thin}.qcow2")
    assert (t["format"], t["virtual-size"], t["format-specific"]["data"]["compat"]) == (
        "qcow2",
        256 * MiB,
        "1.1",
    )
    assert t["actual-size"] < MiB
    for u in (lazy, eager):
        i = info(path / f"{u}.img")
        assert (i["format"], i["virtual-size"]) == ("raw", 64 * MiB) and i["actual-size"] >= 64 * MiB
    # the inventory records what the host measured
    assert int(h.param(thin, "physical-utilisation")) == t["actual-size"]
    assert int(h.param(lazy, "physical-utilisation")) == 64 * MiB
    if shutil.which("filefrag"):  # eager: written, not only reserved (no unwritten extents once synced)
        os.sync()
        frag = subprocess.run(
            ["filefrag", "-v", str(path / f"{eager}.img")], capture_output=True, text=True
        ).stdout
        assert "unwritten" not in frag
    assert volumes(h, sr) == files(path)


def test_resize_grows_the_volume_as_qemu_img_sees_it(h, tmp_path):
    path = tmp_path / "sr"
    sr = h.sr("sr", path)
    thin = h.ok("vdi-create", f"sr-uuid={sr}", "name-label=thin", "virtual-size=64MiB")
    lazy = h.ok(
        "vdi-create", f"sr-uuid={sr}", "name-label=lazy", "virtual-size=64MiB", "provisioning=thick-lazy"
    )
    h.ok("vdi-resize", f"uuid={thin}", "disk-size=+64MiB")
    h.ok("vdi-resize", f"uuid={lazy}", "disk-size=192MiB")
    assert info(path / f"{thin}.qcow2")["virtual-size"] == 128 * MiB
    grown = info(path / f"{lazy}.img")
    assert grown["virtual-size"] == 192 * MiB and grown["actual-size"] >= 192 * MiB  # thick stays thick
    assert int(h.param(thin, "virtual-size")) == 128 * MiB


def test_a_copy_is_identical_and_stands_alone(h, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    sra, srb = h.sr("a", a), h.sr("b", b)
    d = h.ok("vdi-create", f"sr-uuid={sra}", "name-label=d", "virtual-size=128MiB")
    write(a / f"{d}.qcow2", 0x5A, "1M", "20M")
    h.ok("sr-scan", f"uuid={sra}")  # what the guest wrote, read back
    assert int(h.param(d, "physical-utilisation")) == info(a / f"{d}.qcow2")["actual-size"]
    h.ok("vdi-snapshot", f"uuid={d}")  # the copy reads through the chain
    src = a / h.param(d, "location")
    write(src, 0x6B, "10M", "4M")
    thin = h.ok("vdi-copy", f"uuid={d}", f"sr-uuid={srb}")
    thick = h.ok("vdi-copy", f"uuid={d}", f"sr-uuid={srb}", "provisioning=thick-lazy")
    for copy in (b / f"{thin}.qcow2", b / f"{thick}.img"):
        assert (
            subprocess.run(["qemu-img", "compare", "-U", str(src), str(copy)], capture_output=True).returncode
            == 0
        )
        assert "backing-filename" not in info(copy)
    assert 20 * MiB <= int(h.param(thin, "physical-utilisation")) < 24 * MiB
    assert h.ok("task-list", "params=status", "--minimal") == "success,success"


def test_clones_and_snapshots_are_overlays_on_the_disk_s_old_file(h, tmp_path):
    path = tmp_path / "sr"
    sr = h.sr("sr", path)
    d = h.ok("vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=64MiB")
    write(path / f"{d}.qcow2", 0x11, "0", "8M")
    s = h.ok("vdi-snapshot", f"uuid={d}")
    c = h.ok("vdi-clone", f"uuid={d}", "new-name-label=c")
    leaf = path / h.param(d, "location")
    chain = [Path(i["filename"]).name for i in info(leaf, "--backing-chain")]
    # d's file now: overlay -> (clone's base) -> (snapshot's base = d's first file)
    assert chain[-1] == f"{d}.qcow2" and len(chain) == 3
    for other in (s, c):
        below = info(path / h.param(other, "location"), "--backing-chain")
        assert Path(below[-1]["filename"]).name == f"{d}.qcow2"
    assert pattern_at(path / f"{c}.qcow2", 0x11, "0", "8M") and pattern_at(
        path / f"{s}.qcow2", 0x11, "0", "8M"
    )
    # what d writes next is its own
    write(leaf, 0x22, "0", "1M")
    assert pattern_at(path / f"{c}.qcow2", 0x11, "0", "1M")
    bases = h.ok("vdi-list", "--all", "managed=false", "params=location", "--minimal").split(",")
    assert f"{d}.qcow2" in bases


def test_destroying_every_disk_leaves_an_empty_directory(h, tmp_path):
    path = tmp_path / "sr"
    sr = h.sr("sr", path)
    d = h.ok("vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=64MiB")
    h.ok("vdi-snapshot", f"uuid={d}")
    c = h.ok("vdi-clone", f"uuid={d}")
    h.ok("vdi-destroy", f"uuid={d}")
    assert files(path)  # the clone and the snapshot still read the first file
    for u in h.ok("vdi-list", "params=uuid", "--minimal").split(","):
        h.ok("vdi-destroy", f"uuid={u}")
    assert files(path) == [] and volumes(h, sr) == []
    assert h.ok("vdi-list", "--all", "--minimal") == "" and c


def test_sr_destroy_and_sr_forget_and_pbd_unplug_on_the_host(h, tmp_path):
    path = tmp_path / "sr"
    sr = h.sr("sr", path)
    assert sr in h.virsh("pool-list", "--all", "--name")
    pbd = h.ok("pbd-list", f"sr={sr}", "--minimal")
    h.ok("pbd-unplug", f"uuid={pbd}")
    assert sr not in h.virsh("pool-list", "--all", "--name")
    h.ok("pbd-plug", f"uuid={pbd}")
    assert sr in h.virsh("pool-list", "--name")  # active again
    h.ok("vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=8MiB")
    # xapi_sr.assert_all_pbds_unplugged: an SR is forgotten or destroyed once detached (SR_HAS_PBD)
    h.fail("SR_HAS_PBD", "sr-forget", f"uuid={sr}")
    h.ok("pbd-unplug", f"uuid={pbd}", "--", "sr-forget", f"uuid={sr}")
    assert sr not in h.virsh("pool-list", "--all", "--name") and len(files(path)) == 1  # data kept
    for f in files(path):
        (path / f).unlink()
    sr = h.sr("sr2", path)
    d = h.ok("vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=8MiB")
    pbd = h.ok("pbd-list", f"sr={sr}", "--minimal")
    # Xapi_sr_operations.valid_operations: never the VDIs as a side effect (SR_NOT_EMPTY)
    h.fail("SR_NOT_EMPTY", "pbd-unplug", f"uuid={pbd}", "--", "sr-destroy", f"uuid={sr}", "--force")
    h.ok("vdi-destroy", f"uuid={d}")
    h.ok("pbd-unplug", f"uuid={pbd}", "--", "sr-destroy", f"uuid={sr}", "--force")
    assert sr not in h.virsh("pool-list", "--all", "--name") and files(path) == []


# --- a running guest ------------------------------------------------------------------------------------
@pytest.fixture
def running(h, tmp_path):
    """A VM with two disks whose domain (named by the VM's uuid) runs on the host: a firmware-only
    guest defined here, as the compute side would, and the VM recorded running on h1."""
    import libvirt
    from cli_helpers import with_txn

    path = tmp_path / "sr"
    sr = h.sr("sr", path)
    vm = h.ok("vm-create", "name-label=v", "memory=64MiB", "vcpus=1", "pool=lp")
    disks = [h.ok("vm-disk-add", "vm=v", "disk-size=64MiB", f"sr-uuid={sr}", f"device={n}") for n in (0, 1)]
    devices = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{path / h.param(d, 'location')}'/><target dev='vd{'ab'[n]}' bus='virtio'/></disk>"
        for n, d in enumerate(disks)
    )
    conn = libvirt.open(h.uri)
    dom = conn.createXML(
        f"<domain type='kvm'><name>{vm}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        f"<os><type arch='x86_64'>hvm</type></os><devices>{devices}</devices>"
        # QEMU as root: the test's temporary directories are private to root
        "<seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel></domain>",
        0,
    )
    host = h.ok("host-list", "params=uuid", "--minimal")
    with_txn(h.db, lambda t: t.update("vm", vm, {"power-state": "running", "resident-on": host, "domid": 1}))
    try:
        yield vm, disks, path, dom
    finally:
        dom.destroy()
        conn.close()


def domain_files(dom) -> list[str]:
    import xml.etree.ElementTree as ET

    return [Path(s.get("file")).name for s in ET.fromstring(dom.XMLDesc(0)).iterfind("devices/disk/source")]


def test_a_running_vm_s_snapshot_moves_its_domain_to_the_new_overlays_at_once(h, running):
    vm, disks, path, dom = running
    first = [h.param(d, "location") for d in disks]
    snap = h.ok("vm-snapshot", f"vm={vm}", "new-name-label=s")
    now = [h.param(d, "location") for d in disks]
    assert domain_files(dom) == now and now != first  # the guest writes its new files
    for old, new in zip(first, now, strict=True):
        chain = [Path(i["filename"]).name for i in info(path / new, "--backing-chain")]
        assert chain == [new, old]  # on the file it wrote until now, read only from now on
    snaps = h.ok("vbd-list", f"vm={snap}", "params=vdi", "--minimal").split(",")
    below = sorted(
        Path(info(path / h.param(s, "location"), "--backing-chain")[-1]["filename"]).name for s in snaps
    )
    assert below == sorted(first)


def test_a_running_vm_s_disk_grows_live(h, running):
    """On a libvirt pool QEMU grows a running guest's disk (block resize), which the guest sees;
    a simulated pool refuses it, as XAPI's storage backends do (test_xapi_rules)."""
    vm, disks, path, dom = running
    h.ok("vdi-resize", f"uuid={disks[1]}", "disk-size=96MiB", "online=true")
    assert dom.blockInfo(str(path / h.param(disks[1], "location")))[0] == 96 * MiB  # the guest sees it
    assert info(path / h.param(disks[1], "location"))["virtual-size"] == 96 * MiB


# --- faults ---------------------------------------------------------------------------------------------------
def test_a_volume_deleted_behind_vmctl_s_back_fails_a_resize_clearly_and_is_still_destroyed(h, tmp_path):
    """As XAPI's file SR: an operation on the missing volume fails SR_BACKEND_FAILURE_46 (the VDI
    is not available) and changes nothing; vdi-destroy removes the record all the same."""
    path = tmp_path / "sr"
    sr = h.sr("sr", path)
    d = h.ok("vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=64MiB")
    (path / f"{d}.qcow2").unlink()
    err = h.fail("SR_BACKEND_FAILURE_46", "vdi-resize", f"uuid={d}", "disk-size=128MiB")
    assert f"no volume {d}.qcow2 in SR sr on h1" in err
    assert int(h.param(d, "virtual-size")) == 64 * MiB
    h.fail("SR_BACKEND_FAILURE_46", "vdi-snapshot", f"uuid={d}")
    assert h.ok("vdi-list", "--all", "--minimal") == d
    h.ok("vdi-destroy", f"uuid={d}")
    assert h.ok("vdi-list", "--all", "--minimal") == "" and volumes(h, sr) == []


def _daemon_pid(uri: str) -> int | None:
    """The private libvirtd's pid (its state directory is the parent of its socket's)."""
    socket = parse_qs(urlparse(uri).query).get("socket", [""])[0]
    root = str(Path(socket).parent.parent) if socket else ""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if (
                (p / "comm").read_text().strip() == "libvirtd"
                and root
                and root in (p / "mountinfo").read_text()
            ):
                return int(p.name)
        except OSError:
            continue
    return None


@pytest.fixture
def full_fs(h, tmp_path):
    """A 32 MiB tmpfs mounted in the daemon's own mount namespace (where its files live), and
    its content as the daemon sees it; unmounted afterwards."""
    pid = _daemon_pid(h.uri)
    if pid is None or shutil.which("nsenter") is None:
        pytest.skip("needs the private libvirtd of tests/libvirtd.py and nsenter")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)],
        check=True,
    )
    try:
        yield mount, Path(f"/proc/{pid}/root{mount}")
    finally:
        subprocess.run(["nsenter", "-t", str(pid), "-m", "umount", str(mount)], check=True)


def test_no_space_for_a_thick_eager_disk_fails_with_the_host_s_reason_and_leaves_nothing(h, full_fs):
    mount, seen = full_fs
    sr = h.sr("small", mount)
    before = h.ok("vdi-list", "--all", "--minimal")
    err = h.fail(
        "DRIVER_ERROR",
        "vdi-create",
        f"sr-uuid={sr}",
        "name-label=big",
        "virtual-size=64MiB",
        "provisioning=thick-eager",
    )
    assert "failed on h1:" in err and "No space left on device" in err.splitlines()[0]
    assert files(seen) == [] and volumes(h, sr) == []
    assert h.ok("vdi-list", "--all", "--minimal") == before


def test_no_space_during_a_copy_removes_the_partial_copy(h, tmp_path, full_fs):
    mount, seen = full_fs
    src_path = tmp_path / "big"
    big, small = h.sr("big", src_path), h.sr("small", mount)
    d = h.ok("vdi-create", f"sr-uuid={big}", "name-label=d", "virtual-size=128MiB")
    write(src_path / f"{d}.qcow2", 0x33, "0", "60M")
    err = h.fail("DRIVER_ERROR", "vdi-copy", f"uuid={d}", f"sr-uuid={small}")
    assert err.splitlines()[0].endswith("No space left on device")
    assert files(seen) == [] and volumes(h, small) == []
    assert h.ok("vdi-list", "--all", "--minimal") == d
    assert h.ok("task-list", "params=status", "--minimal") == "failure"
    assert h.ok("task-list", "params=error-code", "--minimal") == "DRIVER_ERROR"


def test_ctrl_c_during_a_copy_removes_it_and_cancels_the_task(h, tmp_path):
    path = tmp_path / "sr"
    sr = h.sr("sr", path)
    d = h.ok("vdi-create", f"sr-uuid={sr}", "name-label=d", "virtual-size=768MiB")
    write(path / f"{d}.qcow2", 0x44, "0", "768M")
    before = files(path)
    p = subprocess.Popen(
        [*VMCTL, "vdi-copy", f"uuid={d}", f"sr-uuid={sr}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(h.db),
    )
    deadline = time.monotonic() + 120
    while len(files(path)) == len(before) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.02)  # the copy's file appears once the host starts writing it
    assert p.poll() is None, "the copy ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 130 and out == "" and err == "vmctl: interrupted; nothing was changed\n"
    assert files(path) == before and volumes(h, sr) == before
    assert h.ok("vdi-list", "--all", "--minimal") == d
    assert h.ok("vdi-param-get", f"uuid={d}", "param-name=current-operations") == ""
    assert h.ok("task-list", "params=status", "--minimal") == "cancelled"
