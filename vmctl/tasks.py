"""Cancelling a task (model.md §1.9, task-cancel): whoever carries it out is interrupted as Ctrl-C
would interrupt it, so the task ends the way Ctrl-C ends it: the actions done are undone, the
records restored, the task cancelled (vmctl/drivers/__init__.py finish_long).

Who carries a task out is in its other-config: a manager (its socket: vmctl/daemon) is asked to
interrupt the thread running it; a vmctl process of this machine (its pid) gets SIGINT. A task
of another machine, or whose process is gone (host-sync closes those), cannot be cancelled here.
"""

from __future__ import annotations

import os
import signal
import socket
import time

from vmctl.errors import VmctlError

POLL_SECONDS = 0.1


def cancel(task: dict) -> None:
    """Interrupt whoever carries out the pending task `task`."""
    oc = task["other-config"]
    if oc.get("manager"):
        if _ask_manager(oc["manager"], task["uuid"]):
            return
    elif oc.get("node") == socket.gethostname() and _is_vmctl(oc.get("pid", "")):
        os.kill(int(oc["pid"]), signal.SIGINT)
        return
    raise VmctlError(
        "OPERATION_NOT_ALLOWED",
        "No vmctl process of this machine carries the task out: it runs on another machine, or its "
        "process is gone (host-sync closes such a task)",
        [("task", task["uuid"]), ("node", oc.get("node", "")), ("pid", oc.get("pid", ""))],
    )


def wait_until_ended(read_status, timeout: float) -> str:
    """Poll read_status() until the task is no longer pending (or timeout seconds): its status."""
    deadline = time.monotonic() + timeout
    status = read_status()
    while status == "pending" and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        status = read_status()
    return status


def _ask_manager(path: str, task: str) -> bool:
    """Whether the manager listening at path was carrying the task out (and is interrupting it)."""
    from vmctl.daemon import client, wire

    try:
        sock = client._connect(path)
    except OSError:
        return False
    if sock is None:
        return False
    try:
        sock.settimeout(client.HANDSHAKE_SECONDS)
        sock.sendall(wire.frame(wire.CANCEL, task.encode()))
        got = client._receive(sock, bytearray())
    except OSError:
        return False
    finally:
        sock.close()
    return got == (wire.INFO, b"cancelled: yes\n")


def _is_vmctl(pid: str) -> bool:
    """A live process of this machine running vmctl (not another that took a dead one's pid)."""
    if not pid.isdigit():
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return False
    return any(b"vmctl" in w for w in words)
