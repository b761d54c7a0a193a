"""`vmctl daemon status|stop|run`: the inventory's manager seen from the command line (these
always run in the client's process, client.LOCAL_COMMANDS)."""

from __future__ import annotations

import os
import sys
import time

from vmctl.daemon import client, wire
from vmctl.errors import VmctlError

STOP_WAIT_SECONDS = 0.05


def _where(opts) -> tuple[str, str | None]:
    from vmctl.store.txn_paths import default_db

    inventory = client.identity_of(opts.db or default_db())
    return inventory, client.socket_path(inventory, os.environ)


def _shown(inventory: str) -> str:
    from vmctl.redact import redact_word

    return redact_word(inventory)


def _ask(path: str | None, kind: bytes) -> dict[str, str] | None:
    """The manager's answer (key: value lines) to STATUS or STOP; None when none listens."""
    if path is None:
        return None
    try:
        sock = client._connect(path)
    except OSError:
        return None
    if sock is None:
        return None
    try:
        sock.settimeout(client.HANDSHAKE_SECONDS)
        sock.sendall(wire.frame(kind))
        buf = bytearray()
        got = client._receive(sock, buf)
    except OSError:
        return None
    finally:
        sock.close()
    if got is None or got[0] != wire.INFO:
        return None
    info = {}
    for line in got[1].decode().splitlines():
        k, _, v = line.partition(": ")
        info[k] = v
    return info


def status(opts) -> int:
    inventory, path = _where(opts)
    info = _ask(path, wire.STATUS)
    if info is None:
        lines = {"manager": "stopped", "inventory": _shown(inventory), "socket": path or "-"}
    else:
        lines = {"manager": "running", **info, "inventory": _shown(inventory)}
    sys.stdout.write("".join(f"{k}: {v}\n" for k, v in lines.items()))
    return 0


def stop(opts) -> int:
    """Ask the manager to stop, and wait until it has: its running commands finish first."""
    inventory, path = _where(opts)
    info = _ask(path, wire.STOP)
    if info is None:
        sys.stdout.write(f"no manager runs for {_shown(inventory)}\n")
        return 0
    pid = int(info.get("pid", "0") or 0)
    while pid and _alive(pid):
        time.sleep(STOP_WAIT_SECONDS)
    sys.stdout.write(f"stopped the manager of {_shown(inventory)} (pid {pid})\n")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a child of this process that exited (a test's) is a zombie until reaped: gone all the same
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def run(opts, idle: int) -> int:
    """The manager in this process, in the foreground (for service managers): until stopped
    (`vmctl daemon stop`, SIGTERM, Ctrl-C) or, with --idle, after that many idle seconds."""
    from vmctl.daemon.server import Manager

    inventory, path = _where(opts)
    if path is None:
        raise VmctlError(
            "OPERATION_NOT_ALLOWED",
            "There is no directory for the manager's socket: set XDG_RUNTIME_DIR",
            [("inventory", _shown(inventory))],
        )
    info = _ask(path, wire.STATUS)
    if info is not None:
        raise VmctlError(
            "OPERATION_NOT_ALLOWED",
            "A manager runs for this inventory already",
            [("inventory", _shown(inventory)), ("pid", info.get("pid", ""))],
        )
    if not client.usable_folder(path):
        raise VmctlError(
            "OPERATION_NOT_ALLOWED",
            "The manager's socket cannot be made there",
            [("socket", path)],
        )
    return Manager(inventory, path, float(idle)).serve()
