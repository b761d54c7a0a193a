"""Real VMs on a real libvirt host (root lab tier, drivers.md §3 and §6 tier 2): the command
line on a libvirt pool, each outcome checked with `virsh` independently of vmctl. The guests are
firmware only (128 MiB, 1 vCPU, no OS), so a clean shutdown has nobody to answer it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from cli_helpers import with_txn
from libvirtd import libvirt_uri  # noqa: F401 (fixture)

pytestmark = pytest.mark.lab


def virsh(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=60)


def domstate(uri: str, name: str) -> str:
    """libvirt's own word for the domain's state, or 'undefined' when the host has no such domain."""
    r = virsh(uri, "domstate", name)
    return r.stdout.strip() if r.returncode == 0 else "undefined"


def all_domains(uri: str) -> set[str]:
    return set(virsh(uri, "list", "--all", "--name").stdout.split())


@pytest.fixture
def scratch_dir():
    """The SR's directory: one QEMU (running as its own user, not root) can reach, which a
    pytest temporary directory (mode 0700 all the way down) is not."""
    d = Path(tempfile.mkdtemp(prefix="vmctl-lab-sr-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def lab(inv, libvirt_uri, scratch_dir):  # noqa: F811
    """A libvirt pool with the test host, a local SR in a scratch directory (the pool's default
    SR), and a halted VM t1; its domain is removed afterwards whatever happened."""
    inv.ok("pool-create", "name-label=lp", "driver=libvirt")
    address = f"10.250.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
    inv.ok("host-add", "name-label=h1", f"address={address}", "pool=lp", f"driver-uri={libvirt_uri}")
    sr = inv.ok(
        "sr-create",
        "name-label=local",
        "type=ext",
        "host=h1",
        "physical-size=10GiB",
        f"device-config:path={scratch_dir}",
    ).strip()
    inv.ok("pool-param-set", f"uuid={inv.ok('pool-list', '--minimal').strip()}", f"default-sr={sr}")
    vm = inv.ok("vm-create", "name-label=t1", "memory=128MiB", "vcpus=1").strip()
    yield inv, libvirt_uri, vm
    virsh(libvirt_uri, "destroy", vm)
    virsh(libvirt_uri, "undefine", vm)


def power(inv, vm: str) -> str:
    return inv.ok("vm-param-get", f"uuid={vm}", "param-name=power-state").strip()


def test_start_pause_unpause_and_forced_shutdown(lab, scratch_dir):
    inv, uri, vm = lab
    sr = inv.ok("sr-list", "name-label=local", "--minimal").strip()
    disk = inv.ok("vdi-create", f"sr-uuid={sr}", "name-label=root", "virtual-size=64MiB").strip()
    # the volume as the storage side makes it (a thin VDI is <uuid>.qcow2 in the SR's directory)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", f"{scratch_dir}/{disk}.qcow2", "64M"], check=True
    )
    inv.ok("vbd-create", f"vm-uuid={vm}", f"vdi-uuid={disk}", "device=0")

    inv.ok("vm-start", "vm=t1")
    assert domstate(uri, vm) == "running"
    xml = virsh(uri, "dumpxml", vm).stdout
    assert "<title>t1</title>" in xml and "<memory unit='KiB'>131072</memory>" in xml
    assert "<vcpu placement='static'>1</vcpu>" in xml and "<acpi/>" in xml
    assert f"{scratch_dir}/{disk}.qcow2" in xml and "host-passthrough" not in xml
    assert power(inv, vm) == "running"

    inv.ok("vm-pause", "vm=t1")
    assert (domstate(uri, vm), power(inv, vm)) == ("paused", "paused")
    inv.ok("vm-unpause", "vm=t1")
    assert (domstate(uri, vm), power(inv, vm)) == ("running", "running")

    inv.ok("vm-shutdown", "vm=t1", "--force")
    assert vm not in all_domains(uri)  # powered off and undefined
    assert power(inv, vm) == "halted"


def test_start_paused(lab):
    inv, uri, vm = lab
    inv.ok("vm-start", "vm=t1", "--paused")
    assert (domstate(uri, vm), power(inv, vm)) == ("paused", "paused")


def test_every_vm_of_a_chain_of_starts_runs(lab):
    inv, uri, vm = lab
    vm2 = inv.ok("vm-create", "name-label=t2", "memory=128MiB", "vcpus=1").strip()
    try:
        inv.ok("vm-start", "vm=t1", "--", "vm-start", "vm=t2")  # placed in one pass
        assert (domstate(uri, vm), domstate(uri, vm2)) == ("running", "running")
        inv.ok("vm-shutdown", "power-state=running", "--multiple", "--force")
        assert not {vm, vm2} & all_domains(uri)
    finally:
        virsh(uri, "destroy", vm2)
        virsh(uri, "undefine", vm2)


def test_suspend_writes_the_state_file_and_resume_restores_it(lab, scratch_dir):
    inv, uri, vm = lab
    inv.ok("vm-start", "vm=t1")
    inv.ok("vm-suspend", "vm=t1")
    image = inv.ok("vm-param-get", f"uuid={vm}", "param-name=suspend-vdi").strip()
    state_file = scratch_dir / f"{image}.img"
    assert state_file.stat().st_size > 0  # the memory image QEMU wrote
    assert vm not in all_domains(uri)
    assert power(inv, vm) == "suspended"
    inv.ok("vm-resume", "vm=t1")
    assert (domstate(uri, vm), power(inv, vm)) == ("running", "running")


@pytest.mark.slow
def test_a_clean_shutdown_without_an_os_times_out_and_the_vm_keeps_running(lab):
    inv, uri, vm = lab
    inv.ok("vm-start", "vm=t1")
    r = inv.fail("vm-shutdown", "vm=t1", "timeout=1", code="VM_SHUTDOWN_TIMEOUT")
    assert "did not shut down within 1 s" in r.err and "--force" in r.err
    assert (domstate(uri, vm), power(inv, vm)) == ("running", "running")
    assert inv.ok("vm-param-get", f"uuid={vm}", "param-name=current-operations").strip() == ""
    inv.ok("vm-shutdown", "vm=t1", "--force")
    assert vm not in all_domains(uri)


def test_uninstall_of_a_running_vm_leaves_no_domain(lab):
    inv, uri, vm = lab
    inv.ok("vm-start", "vm=t1")
    inv.ok("vm-uninstall", "vm=t1", "--force")
    assert vm not in all_domains(uri)
    assert inv.ok("vm-list", f"uuid={vm}", "--minimal").strip() == ""


def test_a_guest_destroyed_behind_vmctls_back_counts_as_halted(lab):
    """As XAPI reports a VM whose domain vanished as halted: vm-shutdown succeeds, and the
    leftover (inactive, still defined) domain is undefined."""
    inv, uri, vm = lab
    inv.ok("vm-start", "vm=t1")
    assert virsh(uri, "destroy", vm).returncode == 0
    assert domstate(uri, vm) == "shut off"
    inv.ok("vm-shutdown", "vm=t1")
    assert vm not in all_domains(uri)
    assert power(inv, vm) == "halted"


def test_an_unreachable_host_fails_in_one_line_and_changes_nothing(lab):
    inv, uri, vm = lab
    inv.ok("vm-start", "vm=t1")

    def cut(txn):
        h = txn.select("host", name_label="h1")[0]
        txn.update("host", h["uuid"], {"driver-uri": "qemu:///system?socket=/nonexistent/libvirt-sock"})

    with_txn(inv.db, cut)
    before = inv.snapshot()
    r = inv.fail("vm-pause", "vm=t1", code="HOST_OFFLINE")
    assert "/nonexistent/libvirt-sock" in r.err and "Traceback" not in r.err
    assert inv.snapshot() == before
    assert domstate(uri, vm) == "running"


def test_a_second_host_with_the_same_cpu_joins_by_libvirts_comparison(lab):
    inv, uri, _ = lab
    inv.ok("host-add", "name-label=h2", "address=10.251.0.2", "pool=lp", f"driver-uri={uri}")
    assert (
        inv.ok(
            "host-param-get",
            "uuid=" + inv.ok("host-list", "name-label=h2", "--minimal").strip(),
            "param-name=other-config",
        ).strip()
        == ""
    )


def test_cpu_comparison_tells_a_foreign_cpu_apart(libvirt_uri):  # noqa: F811
    from vmctl.drivers.base import HostTarget
    from vmctl.drivers.libvirt import LibvirtDriver

    drv = LibvirtDriver()
    host = HostTarget("", "h1", "127.0.0.1", libvirt_uri, "")
    own = drv.probe(host).cpu_xml
    assert drv.cpu_compatible(host, own) is True
    vendor = "AMD" if "<vendor>Intel</vendor>" in own else "Intel"
    model = "EPYC" if vendor == "AMD" else "Skylake-Server"
    assert drv.cpu_compatible(host, f"<cpu><model>{model}</model><vendor>{vendor}</vendor></cpu>") is False
    drv.close()
