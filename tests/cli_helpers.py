"""The one way tests run the vmctl command line against an inventory:

- `run_cli(db, *args)`: the real executable (`python -m vmctl`) in a subprocess, for contract
  checks (exit codes, stdout/stderr, a fresh process);
- `cli(db, *args)`: the same entry point (`run_argv`) in-process, fast, for setup and sequences;
- `Inventory`: run_cli with assertions (`ok`, `fail`, `snapshot`) on one inventory file;
- `with_txn(db, fn)`: one transaction of the Python store, for state reads and direct inserts;
- `MANAGERS`: whether run_cli goes through the inventory's manager (vmctl/daemon). Off unless a
  test asks for it (fixture `through_managers`): then each inventory gets a manager before its
  first command, stopped by pid when the test ends.

(A module of its own, since two conftest.py files exist and `import conftest` is ambiguous.)"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

VMCTL = [sys.executable, "-m", "vmctl"]
CLASSES = (
    "pool",
    "host",
    "vm",
    "vm-group",
    "sr",
    "pbd",
    "vdi",
    "vbd",
    "network",
    "pif",
    "vif",
    "vlan",
    "bond",
    "tunnel",
)


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


class Inventory:
    """Runs vmctl in a subprocess against one inventory file."""

    def __init__(self, db: Path):
        self.db = db

    def env(self, extra: dict | None = None) -> dict:
        return cli_env(self.db, extra)

    def run(
        self, *args: str, input: str | None = None, env: dict | None = None, timeout: float = 120
    ) -> Result:
        p = run_cli(self.db, *args, input=input, env=env, timeout=timeout)
        assert "Traceback" not in p.stderr, p.stderr
        return Result(p.returncode, p.stdout, p.stderr)

    def ok(self, *args: str, **kw) -> str:
        r = self.run(*args, **kw)
        assert r.rc == 0, f"vmctl {' '.join(args)} failed ({r.rc}): {r.err}"
        return r.out

    def fail(self, *args: str, code: str | None = None, rc: int = 1, **kw) -> Result:
        r = self.run(*args, **kw)
        assert r.rc == rc, f"expected exit {rc}, got {r.rc}: {r.out}{r.err}"
        assert r.out == "", f"a failure printed on stdout: {r.out!r}"
        if code is not None:
            assert r.err.startswith(f"vmctl: {code}:"), r.err
        return r

    def snapshot(self) -> dict:
        """Every class's full listing plus the journal, read in one chained invocation: what
        'unchanged' means in tests."""
        words: list[str] = ["-f", "json"]
        for cls in CLASSES:
            words += [f"{cls}-list", "params=all"] + (["--all"] if cls in ("vm", "vdi") else []) + ["--"]
        words += ["journal-list", "params=all"]
        r = self.run(*words)
        assert r.rc == 0, r.err
        return dict(zip([*CLASSES, "journal"], json.loads(r.out)))


def with_txn(db: Path, fn, write: bool = True):
    """Run fn(txn) in one transaction on the inventory at db; return its result."""
    from vmctl.store.txn import Store

    st = Store(str(db))
    try:
        return st.run(fn, write)[0]
    finally:
        st.dispose()


def cli_env(db, extra: dict | None = None) -> dict:
    """The environment for vmctl on inventory db: no inherited VMCTL_* settings, VMCTL_DB=db, and
    the manager off unless the test runs the command line through managers (MANAGERS)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMCTL_")}
    env["VMCTL_DB"] = str(db)
    env["VMCTL_DAEMON"] = "on" if MANAGERS.on else "off"
    if MANAGERS.on:
        env.pop("XDG_RUNTIME_DIR", None)  # each inventory's socket beside it, in the test's own directory
    env.update(extra or {})
    return env


class Managers:
    """The command line through managers: while `on`, run_cli first makes sure the inventory a
    command names has its manager (`vmctl daemon run`, this process's child), so that the command
    runs in it rather than start one; stop_all() ends them by pid."""

    def __init__(self) -> None:
        self.on = False
        self.procs: dict[str, tuple[subprocess.Popen, str]] = {}  # inventory -> (process, socket)

    def ensure(self, db, args, extra: dict | None) -> None:
        from vmctl.daemon import client

        env = cli_env(db, extra)
        inventory = client.inventory_of(list(args), env)
        if inventory in self.procs:
            return
        path = client.socket_path(inventory, env)
        if path is None or not os.path.isdir(os.path.dirname(path)):
            return  # no place for its socket: the command runs in its own process
        env["VMCTL_DB"] = client.db_argument(list(args)) or env["VMCTL_DB"]
        p = subprocess.Popen(
            [*VMCTL, "daemon", "run", "--idle", "600"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs[inventory] = (p, path)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise RuntimeError(f"vmctl daemon run exited {p.returncode} for {inventory}")
            sock = client._connect(path)
            if sock is not None:
                sock.close()
                return
            time.sleep(0.05)
        raise RuntimeError(f"no manager listens at {path}")

    def served(self) -> int:
        """How many commands the managers started here have run."""
        from vmctl.daemon import control, wire

        total = 0
        for _, path in self.procs.values():
            info = control._ask(path, wire.STATUS) or {}
            total += int(info.get("commands", "0"))
        return total

    def stop_all(self) -> None:
        for p, _ in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p, _ in self.procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()


MANAGERS = Managers()


def run_cli(
    db, *args: str, input: str | None = None, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """The real executable against db, in a subprocess (through its manager while MANAGERS.on)."""
    if MANAGERS.on:
        MANAGERS.ensure(db, args, env)
        if input is None:
            input = ""  # a client hands its streams over: none may be closed (as a runner may leave it)
    return subprocess.run(
        [*VMCTL, *args], input=input, capture_output=True, text=True, env=cli_env(db, env), timeout=timeout
    )


def cli(db, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """The same CLI entry point in-process (fast); run_cli keeps the real executable for contract checks."""
    from vmctl.cli.app import run_argv

    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(input or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = run_argv([f"--db={db}", *args])
    finally:
        sys.stdin = old
    return subprocess.CompletedProcess(list(args), rc, out.getvalue(), err.getvalue())
