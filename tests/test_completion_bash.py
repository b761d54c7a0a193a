"""Bash completion as a person gets it: an interactive bash on a pseudo-terminal, the generated
script sourced, TAB pressed after `key=`. Right after `=` bash's COMP_WORDS holds the `=` itself
as the current word while readline replaces only what follows it, so the candidates must keep
the `=` on the line (`vm=web1`, never `vm==web1`)."""

from __future__ import annotations

import os
import pty
import select
import shutil
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import Inventory

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")


def _read_until(fd: int, marker: bytes, timeout: float = 30.0) -> bytes:
    out = b""
    end = time.monotonic() + timeout
    while marker not in out and time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    return out


def _complete(fd: int, typed: str) -> str:
    """Type a command line, press TAB, then print the line as bash holds it (echo in front of it)."""
    os.write(fd, typed.encode() + b"\t")
    time.sleep(1.5)  # the completion runs the real executable
    os.write(fd, b"\x01echo '<<'\x05'>>'\r")  # Ctrl-A, echo, Ctrl-E
    out = _read_until(fd, b">>\r\n").decode(errors="replace")
    line = [x for x in out.replace("\r", "").split("\n") if x.startswith("<<") and x.endswith(">>")]
    assert line, out
    return line[-1][2:-2]


@pytest.mark.slow  # many runs of the real executable; the fast tier keeps the quick cases
def test_tab_after_key_equals_in_a_real_bash(tmp_path):
    inv = Inventory(tmp_path / "inv.db")
    inv.ok(
        "pool-create",
        "name-label=p1",
        "--",
        "host-add",
        "name-label=h1",
        "address=10.0.0.1",
        "cpu-count=8",
        "memory-total=64GiB",
        "pool=p1",
        "--",
        "vm-create",
        "name-label=web1",
    )
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "vmctl"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m vmctl "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMCTL_")}
    env.update(
        PATH=f"{bindir}:{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        VMCTL_DB=str(inv.db),
        PS1="$ ",
        TERM="dumb",
        INPUTRC="/dev/null",
    )
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(tmp_path)
        os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)
    try:
        os.write(fd, f"source {ROOT / 'completions' / 'vmctl.bash'}; echo ready\r".encode())
        _read_until(fd, b"ready\r\n")
        assert _complete(fd, "vmctl vm-start vm=") == "vmctl vm-start vm=web1 "
        assert _complete(fd, "vmctl vm-list power-state=ha") == "vmctl vm-list power-state=halted "
        assert _complete(fd, "vmctl --host=") == "vmctl --host=h1 "
        assert _complete(fd, "vmctl vm-start v") == "vmctl vm-start v"  # several keys: no guess
    finally:
        os.write(fd, b"exit\r")
        time.sleep(0.2)
        os.close(fd)
        os.waitpid(pid, 0)
