"""Tasks in the manager, on a real libvirt host (root lab tier, a private libvirtd): a disk copy
runs as a task in the inventory's manager; its progress line reaches the terminal of the client
that started it; Ctrl-C in that client cancels it; `--async` prints the task's uuid and returns
while the copy goes on; `task-cancel` interrupts a task another client started.

Run: python -m pytest -q -n 0 -m lab tests/test_daemon_tasks_lab.py
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from cli_helpers import VMCTL, cli_env
from libvirtd import libvirt_uri  # noqa: F401
from test_daemon import _on_terminal, _wait_for_manager, managers
from test_libvirt_storage_lab import files, volumes, write

from vmctl.daemon import client

pytestmark = pytest.mark.lab


class Host:
    """One inventory on the private libvirtd, its commands run through its manager."""

    def __init__(self, tmp, uri: str) -> None:
        self.db, self.uri, self.tmp = tmp / "inv.db", uri, tmp
        self.env = cli_env(self.db, {"VMCTL_DAEMON": "on"})
        self.env.pop("XDG_RUNTIME_DIR", None)
        self.path = client.socket_path(os.path.realpath(self.db), {})
        self.ok("pool-create", "name-label=lp", "driver=libvirt")
        self.ok("host-add", "name-label=h1", "address=192.0.2.1", f"driver-uri={uri}", "pool=lp")

    def run(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run(
            [*VMCTL, *args], input="", capture_output=True, text=True, env=env or self.env, timeout=300
        )
        assert "Traceback" not in p.stderr, p.stderr
        return p

    def ok(self, *args: str) -> str:
        p = self.run(*args)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    def virsh(self, *args: str) -> str:
        return subprocess.run(
            ["virsh", "-c", self.uri, *args], capture_output=True, text=True, check=True
        ).stdout

    def status(self) -> dict:
        return _wait_for_manager(self.path)

    def disk(self, name: str, size: str = "768MiB") -> tuple[str, str, object]:
        path = self.tmp / "sr"
        path.mkdir(exist_ok=True)
        sr = self.ok(
            "sr-create",
            "name-label=sr",
            "type=ext",
            "host=h1",
            "physical-size=100GiB",
            f"device-config:path={path}",
        )
        d = self.ok("vdi-create", f"sr-uuid={sr}", f"name-label={name}", f"virtual-size={size}")
        write(path / f"{d}.qcow2", 0x44, "0", size.replace("MiB", "M"))
        return sr, d, path


@pytest.fixture
def h(tmp_path, libvirt_uri):  # noqa: F811
    with managers() as pids:
        host = Host(tmp_path, libvirt_uri)
        pids.append(int(host.status()["pid"]))
        yield host


def _copy_started(path, before, p=None) -> None:
    deadline = time.monotonic() + 120
    while len(files(path)) == len(before) and time.monotonic() < deadline:
        assert p is None or p.poll() is None, "the copy ended before it could be interrupted"
        time.sleep(0.02)  # the copy's file appears once the host starts writing it


def test_ctrl_c_in_the_client_cancels_its_copy_in_the_manager(h):
    sr, d, path = h.disk("d")
    before = files(path)
    served = int(h.status()["commands"])
    p = subprocess.Popen(
        [*VMCTL, "vdi-copy", f"uuid={d}", f"sr-uuid={sr}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=h.env,
    )
    _copy_started(path, before, p)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 130 and out == "" and err == "vmctl: interrupted; nothing was changed\n"
    assert int(h.status()["commands"]) == served + 1  # the copy ran in the manager
    assert files(path) == before and volumes(h, sr) == before
    assert h.ok("task-list", "params=status", "--minimal") == "cancelled"


def test_async_returns_the_task_at_once_and_task_cancel_ends_it(h):
    sr, d, path = h.disk("d")
    before = files(path)
    task = h.ok("--async", "vdi-copy", f"uuid={d}", f"sr-uuid={sr}")
    assert h.ok("task-list", "params=uuid", "--minimal") == task
    assert h.ok("task-param-get", f"uuid={task}", "param-name=other-config", "param-key=manager") == h.path
    _copy_started(path, before)
    assert h.ok("task-param-get", f"uuid={task}", "param-name=status") == "pending"
    assert h.run("task-cancel", f"uuid={task}").returncode == 0
    assert h.ok("task-param-get", f"uuid={task}", "param-name=status") == "cancelled"
    assert files(path) == before and volumes(h, sr) == before
    p = h.run("task-cancel", f"uuid={task}")
    assert p.returncode == 1 and p.stderr.startswith("vmctl: OPERATION_NOT_ALLOWED: The task is not pending")

    task = h.ok("--async", "vdi-copy", f"uuid={d}", f"sr-uuid={sr}")
    deadline = time.monotonic() + 300
    while h.ok("task-param-get", f"uuid={task}", "param-name=status") == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert h.ok("task-param-get", f"uuid={task}", "param-name=status") == "success"
    assert len(h.ok("vdi-list", "--minimal").split(",")) == 2

    off = {**h.env, "VMCTL_DAEMON": "off"}  # in a process of its own nothing would carry it on
    p = h.run("--async", "vdi-copy", f"uuid={d}", f"sr-uuid={sr}", env=off)
    assert p.returncode == 1 and p.stderr.startswith("vmctl: OPERATION_NOT_ALLOWED: --async needs")


def test_task_cancel_interrupts_a_copy_run_by_a_process_of_its_own(h):
    sr, d, path = h.disk("d")
    before = files(path)
    p = subprocess.Popen(
        [*VMCTL, "vdi-copy", f"uuid={d}", f"sr-uuid={sr}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**h.env, "VMCTL_DAEMON": "off"},
    )
    _copy_started(path, before, p)
    task = h.ok("task-list", "params=uuid", "--minimal")
    assert h.ok("task-param-get", f"uuid={task}", "param-name=other-config", "param-key=pid") == str(p.pid)
    assert h.run("task-cancel", f"uuid={task}").returncode == 0  # through the manager: SIGINT to it
    out, err = p.communicate(timeout=300)
    assert p.returncode == 130 and err == "vmctl: interrupted; nothing was changed\n"
    assert h.ok("task-param-get", f"uuid={task}", "param-name=status") == "cancelled"
    assert files(path) == before


def test_the_progress_line_reaches_the_terminal_of_the_client(h):
    sr, d, path = h.disk("d", "512MiB")
    code, out = _on_terminal(h.env, ["vdi-copy", f"uuid={d}", f"sr-uuid={sr}"], None)
    assert code == 0 and b"\r\x1b[Kvmctl: copying d to sr: " in out
