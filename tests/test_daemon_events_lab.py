"""Lifecycle events in the manager, on a real libvirt host (root lab tier, a private libvirtd): a
guest started, paused, resumed or stopped behind vmctl's back is recorded at once by the
inventory's manager, in a journal entry marked as an event, without host-sync; what changed while
no manager ran is recorded when the next one starts watching the host.

Run: python -m pytest -q -n 0 -m lab tests/test_daemon_events_lab.py
"""

from __future__ import annotations

import json
import time

import pytest
from libvirtd import libvirt_uri  # noqa: F401
from test_daemon import managers
from test_daemon_tasks_lab import Host

pytestmark = pytest.mark.lab


def _until(h: Host, vm: str, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while h.ok("vm-param-get", f"uuid={vm}", "param-name=power-state") != state:
        assert time.monotonic() < deadline, f"the manager did not record {vm} {state}"
        time.sleep(0.1)


def test_a_guest_started_paused_or_stopped_behind_vmctl_s_back_is_recorded(tmp_path, libvirt_uri):  # noqa: F811
    import libvirt

    with managers() as pids:
        h = Host(tmp_path, libvirt_uri)
        pids.append(int(h.status()["pid"]))
        vm = h.ok("vm-create", "name-label=v", "memory=64MiB", "vcpus=1", "pool=lp")
        host = h.ok("host-list", "params=uuid", "--minimal")
        conn = libvirt.open(h.uri)
        dom = None
        for kind in ("kvm", "qemu"):
            try:
                dom = conn.createXML(
                    f"<domain type='{kind}'><name>{vm}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
                    "<os><type arch='x86_64'>hvm</type></os>"
                    "<seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel></domain>",
                    0,
                )
                break
            except libvirt.libvirtError:
                continue
        assert dom is not None, "no guest could start on the private libvirtd"
        try:
            _until(h, vm, "running")  # started behind vmctl's back: the manager watches the host
            assert h.ok("vm-param-get", f"uuid={vm}", "param-name=resident-on") == host
            h.ok("daemon", "stop")
            dom.suspend()  # while no manager watches: the next one looks at the host first
            h.ok("host-list")
            pids.append(int(h.status()["pid"]))
            _until(h, vm, "paused")
            dom.resume()
            _until(h, vm, "running")
            dom.destroy()  # the guest stops (powers itself off, as far as vmctl can tell)
            _until(h, vm, "halted")
            assert h.ok("vm-param-get", f"uuid={vm}", "param-name=resident-on") == ""
            journal = json.loads(h.ok("journal-list", "params=command", "-f", "json"))
            events = [e["command"] for e in journal if e["command"].startswith("event: ")]
            assert events == [
                f"event: VM v ({vm}) is running on h1 (was halted): marked it running on h1",
                f"event: VM v ({vm}) is paused on h1 (was running): marked it paused on h1",
                f"event: VM v ({vm}) is running on h1 (was paused): marked it running on h1",
                f"event: VM v ({vm}) is halted on h1 (was running): marked it halted",
            ]
            assert h.ok("db-check") == "db-check: all 16 invariants hold"
        finally:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
            conn.close()
