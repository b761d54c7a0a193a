"""Running the programs the lab uses, and waiting for things, with one kind of failure:
LAB_FAILED naming the step, the command and the program's own last words."""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable

from vmctl.errors import VmctlError


def failed(step: str, detail: str) -> VmctlError:
    return VmctlError("LAB_FAILED", f"{step}: {detail}")


def run(cmd: list[str], input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a short command to completion, its output captured (never the caller's terminal)."""
    r = subprocess.run(
        cmd, input=input, capture_output=True, text=True, stdin=None if input else subprocess.DEVNULL
    )
    if check and r.returncode != 0:
        words = (r.stderr or r.stdout).strip().splitlines()
        raise failed(shlex.join(cmd[:4]), words[-1] if words else f"exit status {r.returncode}")
    return r


def wait_for(
    what: str, ready: Callable[[], bool], timeout: float, gone: Callable[[], str | None] = lambda: None
) -> None:
    """Poll `ready` until true; fail when `gone` reports why it never will, or after `timeout` s."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not ready():
        why = gone()
        if why is not None:
            raise failed(what, why)
        if time.monotonic() > deadline:
            raise failed(what, f"not ready after {timeout:g} s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)
