"""The thin client: run a command line in the inventory's manager (vmctl/daemon/server.py).

The standard library only, and little of it: this runs before every command that is not a
completion or --version, so what it imports is start-up time. It finds the manager's socket
from the inventory the command line names, hands over the command line, the environment, the
working directory, the umask and the standard streams (their descriptors), and waits for the
exit status; Ctrl-C is passed on as an interrupt. Whenever no manager can serve the command (none
runs yet, a stale socket, another version, a manager that declines) it returns None and the
command runs in this process as it always did: the manager is never a reason to fail. When none
answers, it starts one in the background for the next commands.
"""

from __future__ import annotations

import _socket
import os
import sys

from vmctl.daemon import wire

OFF_VALUES = ("off", "0", "no", "false")
# Commands that always run in the client's process: the manager's own control, and the lab,
# which starts daemons and namespaces of its own. A word equal to one of these anywhere in the
# command line is enough (a value equal to it only costs the manager's speed).
LOCAL_COMMANDS = frozenset(("daemon", "lab", "bench"))
# Global options that take the next word as their value (vmctl/cli/grammar.py LONG_OPTIONS, REQ)
_VALUE_OPTIONS = frozenset(
    ("--host", "--format", "--timeout", "--inactivity-probe", "--columns", "--id", "-f", "-t")
)
ASYNC = "--async"  # a task that goes on after the command returns: only a manager can carry it
HANDSHAKE_SECONDS = 10.0  # how long the client waits for the manager to accept before running itself
STARTING_SECONDS = 30.0  # a manager announced as starting for longer than this did not start
LOST = (
    "vmctl: MANAGER_ENDED: The manager ended while running the command (killed or crashed); "
    "what it had not committed was not committed: journal-list shows what was\n"
)
INTERRUPTED = "vmctl: interrupted; nothing was changed\n"

# The manager's process: the same interpreter, this same vmctl package (argv[1] is its root).
BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from vmctl.daemon.server import spawned; spawned(sys.argv[2:])"


def enabled(env=os.environ) -> bool:
    return env.get("VMCTL_DAEMON", "").strip().lower() not in OFF_VALUES


def run(argv: list[str]) -> int | None:
    """The command's exit status as the manager ran it, or None: run it in this process."""
    if not enabled() or LOCAL_COMMANDS.intersection(argv):
        return None
    if not _standard_streams():
        return None
    try:
        inventory = inventory_of(argv, os.environ)
        path = socket_path(inventory, os.environ)
        if path is None:
            return None
        sock = _connect(path)
        if sock is None:
            _start_quietly(inventory, path)
            if ASYNC in argv:  # a task that goes on after the command needs a manager: wait for it
                sock = _wait_for_manager(path)
    except KeyboardInterrupt:
        sys.stderr.write(INTERRUPTED)
        return 130
    except Exception:  # no manager can serve it: this process runs the command
        return None
    if sock is None:
        return None
    try:
        return _converse(sock, argv, inventory, path)
    finally:
        sock.close()


def _wait_for_manager(path: str):
    import time

    deadline = time.monotonic() + STARTING_SECONDS
    while time.monotonic() < deadline:
        try:
            sock = _connect(path)
        except OSError:
            return None
        if sock is not None:
            return sock
        time.sleep(0.05)
    return None


def _standard_streams() -> bool:
    """Whether sys.stdin, stdout and stderr are this process's descriptors 0, 1 and 2 (not closed
    at start, not replaced by a caller in Python): what is handed to the manager."""
    try:
        return sys.stdin.fileno() == 0 and sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, ValueError, OSError):
        return False


def _converse(sock, argv: list[str], inventory: str, path: str) -> int | None:
    buf = bytearray()
    try:
        sock.settimeout(HANDSHAKE_SECONDS)
        _send_request(sock, argv, inventory)
        kind, payload = _receive(sock, buf) or (b"", b"")
        if kind != wire.ACCEPT:
            if kind in (wire.REPLACE, b""):  # another version retiring, or a manager that died
                _start_quietly(inventory, path)
            return None
        sock.sendall(wire.frame(wire.GO))
        sock.settimeout(None)
    except KeyboardInterrupt:  # before GO the manager never runs it
        sys.stderr.write(INTERRUPTED)
        return 130
    except Exception:
        return None
    # From here on the command runs in the manager, whatever happens to this process.
    while True:
        try:
            got = _receive(sock, buf)
            if got is None:
                sys.stderr.write(LOST)
                return 1
            kind, payload = got
            if kind == wire.EXIT:
                return int(payload)
        except KeyboardInterrupt:
            try:
                sock.sendall(wire.frame(wire.INTERRUPT))
            except (OSError, KeyboardInterrupt):
                pass
        except (OSError, ValueError):
            sys.stderr.write(LOST)
            return 1


def _send_request(sock, argv: list[str], inventory: str) -> None:
    import vmctl

    def stream(s, out: bool) -> str:
        words = [s.encoding, s.errors]
        if out:
            words += [str(int(s.line_buffering)), str(int(getattr(s, "write_through", False)))]
        return " ".join(words)

    mask = os.umask(0o22)
    os.umask(mask)
    fields = {
        "version": vmctl.__version__,
        "package": os.path.dirname(os.path.abspath(vmctl.__file__)),
        "python": f"{sys.executable} {sys.hexversion}",
        "inventory": inventory,
        "cwd": os.getcwd(),
        "umask": f"{mask:o}",
        "stdin": stream(sys.stdin, False),
        "stdout": stream(sys.stdout, True),
        "stderr": stream(sys.stderr, True),
    }
    data = wire.frame(wire.RUN, wire.encode_request(fields, argv, dict(os.environ)))
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))
    sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
    if sent < len(data):
        sock.sendall(data[sent:])


def _receive(sock, buf: bytearray) -> tuple[bytes, bytes] | None:
    """The next frame, or None when the manager closed the connection."""
    while True:
        got = wire.split_frame(buf)
        if got is not None:
            return got
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk


# --- where the manager of an inventory listens ---------------------------------------------------
def db_argument(argv: list[str]) -> str | None:
    """The --db global option, read the way getopt reads global options (up to the command)."""
    i = 0
    while i < len(argv):
        w = argv[i]
        if w == "--" or w == "-" or not w.startswith("-"):
            return None
        if w.startswith("--db="):
            return w[5:]
        if w == "--db":
            return argv[i + 1] if i + 1 < len(argv) else None
        if w in _VALUE_OPTIONS:
            i += 1
        i += 1
    return None


def inventory_of(argv: list[str], env) -> str:
    """The inventory a command line names (identity_of)."""
    from vmctl.store.txn_paths import default_db

    return identity_of(db_argument(argv) or env.get("VMCTL_DB") or default_db(env))


def identity_of(db: str) -> str:
    """An inventory as its manager is known by: a database URL as given, an SQLite file (or a
    plain sqlite:/// URL) by its real absolute path. The manager compares it with what its own
    reading of the command line (cli/grammar.py) names, and declines when they differ."""
    if db.startswith("sqlite:///") and "?" not in db:
        return "sqlite:///" + os.path.realpath(db[len("sqlite:///") :])
    if "://" in db:
        return db
    return os.path.realpath(db)


def sqlite_file(inventory: str) -> str | None:
    if inventory.startswith("sqlite:///"):
        return inventory[len("sqlite:///") :]
    return None if "://" in inventory else inventory


def socket_path(inventory: str, env) -> str | None:
    """$XDG_RUNTIME_DIR/vmctl/manager-HASH.sock; else beside the SQLite file (.NAME.vmctl-UID.sock);
    else, for a database server, /tmp/vmctl-UID/manager-HASH.sock. None when there is no such place
    this user owns (the command then runs in its own process)."""
    uid = os.getuid()
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime) and os.path.isdir(runtime):
        return os.path.join(runtime, "vmctl", f"manager-{_digest(inventory)}.sock")
    file = sqlite_file(inventory)
    if file is not None:
        head, tail = os.path.split(file)
        return os.path.join(head, f".{tail}.vmctl-{uid}.sock")
    return os.path.join(f"/tmp/vmctl-{uid}", f"manager-{_digest(inventory)}.sock")


def _digest(text: str) -> str:
    try:
        from _sha256 import sha256
    except ImportError:  # pragma: no cover - other builds
        from hashlib import sha256
    return sha256(os.fsencode(text)).hexdigest()[:24]


def address(path: str) -> tuple[str, int | None]:
    """What to bind or connect to for a socket path: a Unix socket's address holds at most 107
    bytes, so a longer path is reached through its directory's descriptor (/proc/self/fd/N/NAME);
    the descriptor (to close afterwards), or None."""
    if len(os.fsencode(path)) < 100:
        return path, None
    head, tail = os.path.split(path)
    fd = os.open(head, os.O_PATH | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{tail}", fd


def peer_uid(sock) -> int:
    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # struct ucred: pid, uid, gid
    return int.from_bytes(creds[4:8], sys.byteorder)


def _connect(path: str):
    """A connection to the manager listening at path, or None when none does."""
    try:
        where, fd = address(path)
    except FileNotFoundError:  # not even its directory yet
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(where)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except BaseException:
        sock.close()
        raise
    finally:
        if fd is not None:
            os.close(fd)
    if peer_uid(sock) != os.getuid():  # only a manager of this user's sees its streams
        sock.close()
        raise PermissionError("the manager's socket belongs to another user")
    return sock


# --- starting a manager ---------------------------------------------------------------------------
def _start_quietly(inventory: str, path: str) -> None:
    try:
        start(inventory, path)
    except Exception:  # the command runs in this process all the same
        pass


def start(inventory: str, path: str) -> bool:
    """Start the inventory's manager in the background, detached from this process and its
    terminal, unless one is being started already; whether one was started."""
    import time

    if not usable_folder(path):
        return False
    marker = path[: -len(".sock")] + ".starting"
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        try:
            if time.time() - os.stat(marker).st_mtime < STARTING_SECONDS:
                return False
            os.unlink(marker)
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except OSError:
            return False
    os.close(fd)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = [sys.executable, "-c", BOOT, root, inventory, path, marker]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only execs
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            null = os.open(os.devnull, os.O_RDWR)
            for std in (0, 1, 2):
                os.dup2(null, std)
            os.chdir("/")
            os.execv(sys.executable, args)
        finally:
            os._exit(127)
    os.waitpid(pid, 0)
    return True


def usable_folder(path: str) -> bool:
    """The socket's directory exists (or is vmctl's own, created here), is writable, and when it
    is vmctl's own, it is this user's and only this user's."""
    folder = os.path.dirname(path)
    parent = os.path.dirname(folder)
    own = os.path.basename(path).startswith("manager-")  # a folder of vmctl's own, not the inventory's
    if own and not os.path.isdir(folder):
        if not os.path.isdir(parent):
            return False
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        return False
    if own:
        st = os.stat(folder)
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            return False
    return True
