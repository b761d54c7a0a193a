"""The manager (vmctl/daemon): started on demand by the first command, then running the commands
of its inventory with the same output, exit status and safety as a vmctl process of their own;
its socket, its credentials check, its replacement, its stop. Every manager a test starts is
stopped by pid before it ends."""

from __future__ import annotations

import contextlib
import io
import os
import pty
import select
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time

import pytest
import yaml
from cli_helpers import VMCTL, Inventory, cli_env
from pgserver import pg_db, pg_url  # noqa: F401  (fixtures)

from vmctl.daemon import client, control, wire

ON = {"VMCTL_DAEMON": "on"}
OFF = {"VMCTL_DAEMON": "off"}


def _env(inv: Inventory, extra: dict | None = None) -> dict:
    env = cli_env(inv.db, {**ON, **(extra or {})})
    env.pop("XDG_RUNTIME_DIR", None)  # the socket beside the inventory, in the test's directory
    return env


def _socket(inv: Inventory) -> str:
    return client.socket_path(str(os.path.realpath(inv.db)), {})


def _status(path: str) -> dict | None:
    return control._ask(path, wire.STATUS)


def _wait_for_manager(path: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = _status(path)
        if info is not None:
            return info
        time.sleep(0.05)
    raise AssertionError(f"no manager answered at {path}")


def _alive(pid: int) -> bool:
    return control._alive(pid)


@contextlib.contextmanager
def managers():
    """The pids of the managers started inside, ended (SIGTERM, then SIGKILL) when it closes."""
    pids: list[int] = []
    try:
        yield pids
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for pid in pids:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _run(inv: Inventory, env: dict, *args: str, input: str = "") -> tuple[int, str, str]:
    """vmctl with its standard input given (a client hands its streams over; one closed at
    start, as a test runner may leave it, makes it run the command itself)."""
    p = subprocess.run([*VMCTL, *args], input=input, capture_output=True, text=True, env=env, timeout=120)
    return p.returncode, p.stdout, p.stderr


# the same command lines both ways: reads, failures, dry runs and standard input change nothing
SAME = [
    ("vm-list",),
    ("-f", "json", "vm-list", "params=all", "--", "host-list"),
    ("vm-list", "--minimal"),
    ("vm-list", "--minimal"),  # again: served from what the first one left warm
    ("-f", "json", "vm-create", "name-label=x", "vcpus=0"),
    ("--dry-run=1",),
    ("--help",),
    ("vm-create", "name-label=\udcff"),  # not UTF-8
]
# and more, in the slow tier
SAME_MORE = [
    ("-f", "yaml", "host-list"),
    ("vm-list", "power-state=halted", "-f", "csv"),
    ("vm-param-get", "uuid=web1", "param-name=memory-static-max"),
    ("frobnicate",),
    ("vm-create",),
    ("--dry-run", "vm-param-set", "uuid=web1", "vcpus=3"),
    ("vm-start", "vm=web1", "--explain"),
    ("list-br",),
    ("--host=h1", "show"),
    ("help", "vm-start"),
    ("journal-list", "params=seq,command"),
    ("db-check",),
    ("vm-uninstall", "vm=web1"),  # no terminal: needs --yes
]


def _in_process(inv: Inventory, monkeypatch, *args: str) -> tuple[int, str, str]:
    """What the command prints in a process of its own (the same entry point, in this one)."""
    from vmctl.cli.app import run_argv

    monkeypatch.setenv("VMCTL_DB", str(inv.db))
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run_argv(list(args))
    return rc, out.getvalue(), err.getvalue()


def test_first_command_starts_the_manager_which_prints_what_a_process_prints(small, monkeypatch):
    """The first command runs in its own process and starts the manager in the background; the
    next ones run in it, byte for byte as in a process of their own (reads, errors, chains, help,
    standard input); VMCTL_DAEMON=off never uses it; `daemon stop` ends it and its socket."""
    path = _socket(small)
    env = _env(small)
    with managers() as pids:
        rc, out, err = _run(small, env, "vm-list", "--minimal")
        assert rc == 0 and err == "" and out.count(",") == 1
        info = _wait_for_manager(path)
        pids.append(int(info["pid"]))
        assert os.path.dirname(path) == os.path.dirname(os.path.realpath(small.db))
        assert stat.S_ISSOCK(os.stat(path).st_mode) and stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert info["inventory"] == os.path.realpath(small.db) and int(info["commands"]) == 0

        for args in SAME:
            assert _run(small, env, *args) == _in_process(small, monkeypatch, *args), args
        batch = "- vm-create name-label=b1 memory=1GiB\n- vm-param-set uuid=b1 other-config:k=v\n"
        rc, out, err = _run(small, env, "batch", "-", input=batch)
        assert rc == 0 and err == "" and len(out.split()) == 1  # the new VM's uuid
        assert _run(small, env, "vm-param-get", "uuid=b1", "param-name=other-config") == (0, "k: v\n", "")
        served = int(_status(path)["commands"])
        assert served >= len(SAME) + 2  # every command above ran in the manager

        # VMCTL_DAEMON=off: its own process, the manager not even asked
        _run(small, {**env, **OFF}, "vm-list")
        assert int(_status(path)["commands"]) == served

        rc, out, err = _run(small, env, "daemon", "stop")
        assert rc == 0 and out == f"stopped the manager of {os.path.realpath(small.db)} (pid {info['pid']})\n"
        assert not _alive(int(info["pid"])) and not os.path.exists(path)
        assert _run(small, env, "daemon", "status")[1].startswith("manager: stopped\n")


@pytest.mark.slow
def test_more_command_lines_print_the_same_through_the_manager(small, monkeypatch):
    path = _socket(small)
    env = _env(small)
    with managers() as pids:
        _run(small, env, "vm-list")
        pids.append(int(_wait_for_manager(path)["pid"]))
        for args in SAME_MORE:
            assert _run(small, env, *args) == _in_process(small, monkeypatch, *args), args
        assert int(_status(path)["commands"]) == len(SAME_MORE)

        # a newer vmctl upgraded the inventory meanwhile: the manager notices, as a process would
        from vmctl.store.schema_version import SCHEMA_VERSION

        with contextlib.closing(sqlite3.connect(small.db)) as db:
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema-version'", (str(SCHEMA_VERSION + 1),))
            db.commit()
        for args in (("vm-list", "--minimal"), ("vm-create", "name-label=x")):
            got = _run(small, env, *args)
            assert got == _in_process(small, monkeypatch, *args) and "SCHEMA_TOO_NEW" in got[2], args
        assert int(_status(path)["commands"]) == len(SAME_MORE) + 2


def test_off_and_local_commands_start_no_manager(inv):
    env = _env(inv)
    assert _run(inv, {**env, **OFF}, "pool-create", "name-label=p")[0] == 0
    folder = os.path.dirname(os.path.realpath(inv.db))
    assert [n for n in os.listdir(folder) if "vmctl" in n] == []


def _wait(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _big_batch(tmp_path, n: int = 20000) -> str:
    f = tmp_path / "big.yaml"
    f.write_text(yaml.safe_dump([f"vm-create name-label=k{i} memory=1GiB" for i in range(n)]))
    return str(f)


@pytest.mark.slow
def test_ctrl_c_and_a_killed_client_commit_nothing_and_leave_the_manager(small, tmp_path):
    """Ctrl-C in the client interrupts its command in the manager as it would in-process (exit 130,
    nothing changed); a client killed mid-command leaves the manager running and commits nothing,
    and what the command would still print goes nowhere."""
    batch = _big_batch(tmp_path)
    before = small.snapshot()
    path = _socket(small)
    env = _env(small)
    with managers() as pids:
        _run(small, env, "vm-list")
        pids.append(int(_wait_for_manager(path)["pid"]))
        for sig in (signal.SIGINT, signal.SIGKILL):
            p = subprocess.Popen(
                [*VMCTL, "batch", batch],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            _wait(lambda: _status(path)["running"] == "1")
            p.send_signal(sig)
            out, err = p.communicate(timeout=120)
            if sig == signal.SIGINT:
                assert (p.returncode, out, err) == (130, "", "vmctl: interrupted; nothing was changed\n")
            else:
                assert (p.returncode, out, err) == (-9, "", "")
            _wait(lambda: _status(path)["running"] == "0")
            assert small.snapshot() == before
        assert _status(path)["pid"] == str(pids[0])


@pytest.mark.slow
def test_manager_killed_mid_batch_commits_nothing_and_is_replaced(small, tmp_path):
    batch = _big_batch(tmp_path)
    before = small.snapshot()
    path = _socket(small)
    env = _env(small)
    with managers() as pids:
        _run(small, env, "vm-list")
        first = int(_wait_for_manager(path)["pid"])
        pids.append(first)
        p = subprocess.Popen(
            [*VMCTL, "batch", batch],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait(lambda: _status(path)["running"] == "1")
        os.kill(first, signal.SIGKILL)
        out, err = p.communicate(timeout=120)
        assert p.returncode == 1 and out == "" and err.startswith("vmctl: MANAGER_ENDED: ")
        assert small.snapshot() == before
        assert os.path.exists(path)  # its socket, stale: the next command starts a new manager
        rc, out, err = _run(small, env, "vm-list", "--minimal")
        assert rc == 0 and err == ""
        second = int(_wait_for_manager(path)["pid"])
        pids.append(second)
        assert second != first
        assert small.ok("db-check") == "db-check: all 16 invariants hold\n"


@pytest.mark.slow
def test_stale_socket_other_version_and_other_users_are_handled(small):
    """A socket nobody listens on is replaced; a client of another version makes the manager
    retire (the client runs the command itself and starts a new one); a connection from another
    user is refused before anything is read."""
    path = _socket(small)
    env = _env(small)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    where, fd = client.address(path)
    stale.bind(where)
    stale.close()
    if fd is not None:
        os.close(fd)
    with managers() as pids:
        rc, out, err = _run(small, env, "vm-list", "--minimal")
        assert rc == 0 and err == ""
        first = int(_wait_for_manager(path)["pid"])
        pids.append(first)

        sock = client._connect(path)
        fields = {f: "" for f in wire.FIELDS}
        fields.update(version="0.0.0-other", stdin="utf-8 strict", stdout="utf-8 strict 0 0")
        fields["stderr"] = fields["stdout"]
        r, w = os.pipe()
        sock.sendmsg(
            [wire.frame(wire.RUN, wire.encode_request(fields, ["vm-list"], {}))],
            [
                (
                    socket.SOL_SOCKET,
                    socket.SCM_RIGHTS,
                    b"".join(x.to_bytes(4, sys.byteorder) for x in (r, w, w)),
                )
            ],
        )
        assert client._receive(sock, bytearray()) == (wire.REPLACE, b"")
        sock.close()
        os.close(r)
        os.close(w)
        _wait(lambda: not _alive(first))
        assert _run(small, env, "vm-list", "--minimal")[0] == 0  # in its own process; starts another
        second = int(_wait_for_manager(path)["pid"])
        pids.append(second)

        if os.getuid() == 0:
            # another user (nobody) connects: closed without an answer. Its effective user is
            # nobody (what the manager sees, SO_PEERCRED); its file system user stays root, or the
            # socket's mode (0600) would refuse it before the manager could.
            child = os.fork()
            if child == 0:
                try:
                    import ctypes

                    os.seteuid(65534)
                    ctypes.CDLL(None).setfsuid(0)
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(client.address(path)[0])
                    s.sendall(wire.frame(wire.STATUS))
                    try:
                        answer = s.recv(100)
                    except ConnectionResetError:  # closed with the request unread
                        answer = b""
                    os._exit(0 if answer == b"" else 1)
                except BaseException:
                    os._exit(2)
            assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
            assert _status(path)["pid"] == str(second)


def _on_terminal(env: dict, args: list[str], answer: bytes | None) -> tuple[int, bytes]:
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs
        os.execvpe(sys.executable, [sys.executable, "-m", "vmctl", *args], env)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if answer is not None and b"Type yes" in out:
                time.sleep(0.2)
                os.write(fd, answer)
                answer = None
    os.close(fd)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), out


@pytest.mark.slow
def test_terminal_tables_prompts_and_ctrl_c_at_a_prompt_as_in_process(small):
    path = _socket(small)
    env = _env(small)
    with managers() as pids:
        _run(small, env, "vm-list")
        pids.append(int(_wait_for_manager(path)["pid"]))
        for args, answer in (
            (["vm-list", "params=name-label,power-state"], None),
            (["vm-uninstall", "vm=web1"], b"no\n"),
            (["vm-uninstall", "vm=web1"], b"\x03"),  # Ctrl-C at the prompt
        ):
            assert _on_terminal(env, args, answer) == _on_terminal({**env, **OFF}, args, answer)
        assert int(_status(path)["commands"]) == 3


@pytest.mark.slow
def test_idle_manager_exits(inv):
    env = _env(inv, {"VMCTL_DAEMON_IDLE": "1"})
    path = _socket(inv)
    with managers() as pids:
        assert _run(inv, env, "pool-create", "name-label=p")[0] == 0
        pid = int(_wait_for_manager(path)["pid"])
        pids.append(pid)
        _wait(lambda: not _alive(pid))
        assert not os.path.exists(path)


CONCURRENT_WORKER = """
import subprocess, sys
vmctl, k, n, shared = sys.argv[1:4], sys.argv[4], int(sys.argv[5]), sys.argv[6]
failures = 0
for i in range(n):
    for args in (["vm-create", f"name-label=w{k}-{i}"], ["vm-param-set", f"uuid={shared}", f"other-config:w{k}-{i}={i}"]):
        p = subprocess.run([*vmctl, "-t", "120", *args], stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if p.returncode:
            failures += 1
            print(p.stderr, file=sys.stderr)
print(failures)
"""


def _concurrent_clients(db: str, tmp_path, workers: int = 5, each: int = 8) -> None:
    """Clients of two managers (two runtime directories: as on two machines) and of no manager
    write at once: no update is lost, the journal is whole."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("VMCTL_")}
    base["VMCTL_DB"] = db
    off = {**base, **OFF}
    run = lambda *a: subprocess.run([*VMCTL, *a], env=off, capture_output=True, text=True, check=True).stdout  # noqa: E731
    run("pool-create", "name-label=p")
    shared = run("vm-create", "name-label=shared").strip()
    envs = []
    for k in range(workers):
        if k == workers - 1:
            envs.append(off)
        else:
            runtime = tmp_path / f"run{k % 2}"
            runtime.mkdir(mode=0o700, exist_ok=True)
            envs.append({**base, **ON, "XDG_RUNTIME_DIR": str(runtime)})
    with managers() as pids:
        for k in range(2):  # both managers listen before the clients start
            subprocess.run(
                [*VMCTL, "vm-list"], env=envs[k], stdin=subprocess.DEVNULL, capture_output=True, check=True
            )
            path = client.socket_path(client.identity_of(db), envs[k])
            pids.append(int(_wait_for_manager(path)["pid"]))
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CONCURRENT_WORKER, *VMCTL, str(k), str(each), shared],
                env=envs[k],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for k in range(workers)
        ]
        for p in procs:
            out, err = p.communicate(timeout=1800)
            assert p.returncode == 0 and out.strip() == "0", err
        served = sum(
            int(_status(client.socket_path(client.identity_of(db), envs[k]))["commands"]) for k in range(2)
        )
        assert served >= 2 * each * (workers - 1)
    oc = run("vm-param-get", f"uuid={shared}", "param-name=other-config")
    keys = {kv.split(":")[0] for kv in oc.strip().split("; ")}
    assert keys == {f"w{k}-{i}" for k in range(workers) for i in range(each)}  # no lost update
    assert len(run("vm-list", "--minimal").strip().split(",")) == workers * each + 1
    seqs = [int(s) for s in run("journal-list", "params=seq", "--minimal").strip().split(",")]
    assert sorted(seqs) == list(range(1, 2 + 2 * workers * each + 1))


@pytest.mark.slow
def test_concurrent_clients_through_managers_sqlite(tmp_path):
    _concurrent_clients(str(tmp_path / "c.db"), tmp_path)


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_clients_through_managers_postgresql(pg_db, tmp_path):  # noqa: F811
    _concurrent_clients(pg_db, tmp_path)


def test_socket_placement(tmp_path):
    """$XDG_RUNTIME_DIR/vmctl when set; else beside the SQLite file; else (a database server)
    /tmp/vmctl-UID; long paths are reached through their directory."""
    uid = os.getuid()
    assert client.socket_path("/data/inv.db", {"XDG_RUNTIME_DIR": "/"}).startswith("/vmctl/manager-")
    assert client.socket_path("/data/inv.db", {}) == f"/data/.inv.db.vmctl-{uid}.sock"
    url = "postgresql://u@h/db"
    assert client.socket_path(url, {}).startswith(f"/tmp/vmctl-{uid}/manager-")
    assert client.socket_path(url, {}) != client.socket_path(url + "2", {})
    assert client.identity_of("sqlite:///x/../inv.db") == "sqlite:///" + os.path.realpath("inv.db")
    assert client.db_argument(["-f", "json", "--db", "a.db", "vm-list"]) == "a.db"
    assert client.db_argument(["--host", "--db=x", "vm-list"]) is None  # --db=x is --host's value
    assert client.db_argument(["vm-list", "--db=b.db"]) is None  # after the command: not global
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    where, fd = client.address(str(deep / "s.sock"))
    assert where == f"/proc/self/fd/{fd}/s.sock"
    os.close(fd)
    assert client.address("/run/s.sock") == ("/run/s.sock", None)
