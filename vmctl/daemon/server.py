"""The manager: one resident process per user and inventory, serving the command line's clients
(client.py) over a Unix socket of mode 0600.

Each accepted connection gets a thread. The client's credentials are checked first (SO_PEERCRED:
only the manager's own user is served). A run request is declined, and the client runs the
command in its own process, when the manager cannot run it as that process would (another
inventory than the manager's, a process environment that libraries read at C level and that
differs, a command that must run in the client: `lab`, `daemon`, rich help on a terminal); a
client of another version (or with this manager's code changed on disk since it started) makes
the manager retire: it stops listening, lets its running commands finish and exits, and the client
starts a new one. Otherwise the thread takes the client's streams, environment, directory and
umask (session.py) and runs the command exactly as vmctl/__main__.py does after its client step,
while a second thread watches the connection: an interrupt from the client (Ctrl-C), or the
client going away, raises KeyboardInterrupt in the command's thread, where every command already
handles it (nothing is committed, a long operation is undone and its task cancelled).

Writers still serialize on the inventory's lock, in the manager's threads as between processes:
several managers (several machines on one PostgreSQL inventory) are as safe as several vmctl
processes. The manager exits after an idle time (default 10 minutes, VMCTL_DAEMON_IDLE seconds),
when told (`vmctl daemon stop`, SIGTERM), or when its socket is removed or replaced.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import traceback

from vmctl.daemon import client, session, wire

IDLE_SECONDS = 600.0
RELEASE_SECONDS = 2.0  # close the inventory's connections after this long without a command
TICK_SECONDS = 0.5
# What libraries read from the process environment at C level (libpq, libvirt and its client
# configuration, ssh for qemu+ssh, the language of their messages) or what child processes
# inherit: a client whose values differ runs in its own process.
PROCESS_ENV = (
    "PATH",
    "HOME",
    "XDG_CONFIG_HOME",
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
    "SSH_AUTH_SOCK",
    "KRB5CCNAME",
    "LANG",
    "LANGUAGE",
)
PROCESS_ENV_PREFIXES = ("PG", "LIBVIRT_", "LC_")


def spawned(args: list[str]) -> None:
    """The manager started by a client (client.start): INVENTORY SOCKET MARKER."""
    inventory, path, marker = args
    log = os.environ.get("VMCTL_DAEMON_LOG")
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(fd, 2)
        os.close(fd)
    try:
        idle = float(os.environ.get("VMCTL_DAEMON_IDLE", IDLE_SECONDS))
    except ValueError:
        idle = IDLE_SECONDS
    try:
        Manager(inventory, path, idle, marker).serve()
    finally:
        _remove(marker)
    sys.exit(0)


def _remove(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def _fingerprint(package: str) -> list[tuple[str, int, int]]:
    """Every source file of the package with its modification time and size: the code this
    manager runs, to notice when it changes on disk."""
    out = []
    todo = [package]
    while todo:
        with os.scandir(todo.pop()) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    if e.name != "__pycache__":
                        todo.append(e.path)
                elif e.name.endswith(".py"):
                    st = e.stat()
                    out.append((e.path, st.st_mtime_ns, st.st_size))
    return sorted(out)


class _Session:
    """One command being run for a client: the thread running it and how to interrupt it."""

    def __init__(self, argv: list[str], fds: list[int]) -> None:
        self.argv = argv
        self.fds = list(fds)  # the client's stdin, stdout and stderr, as this process numbers them
        self.thread_id = threading.get_ident()
        self.started = time.time()
        self.lock = threading.Lock()
        self.running = False  # KeyboardInterrupt may be raised in the thread only while set
        self.pending = False  # interrupted before it ran: it starts with KeyboardInterrupt
        self.done = False

    def interrupt(self, client_gone: bool = False) -> None:
        with self.lock:
            if client_gone and not self.done:
                # as for a killed process, nothing more the command prints is seen
                _silence(self.fds[1:])
            if self.running:
                _raise_in(self.thread_id, KeyboardInterrupt)
            elif not self.done:
                self.pending = True

    def stop_interrupts(self) -> None:
        """After the command: no interrupt is raised any more, and none is left pending (one raised
        while getting here is taken and dropped)."""
        while True:
            try:
                self.running = False
                with self.lock:
                    pass
                _raise_in(self.thread_id, None)
                return
            except KeyboardInterrupt:
                continue


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise exc in another thread at its next Python step (None: cancel a pending one)."""
    import ctypes

    f = ctypes.pythonapi.PyThreadState_SetAsyncExc
    f.argtypes = (ctypes.c_ulong, ctypes.c_void_p)
    f(thread_id, None if exc is None else id(exc))


class Manager:
    def __init__(self, inventory: str, path: str, idle: float, marker: str | None = None) -> None:
        import vmctl

        self.inventory = inventory
        self.path = path
        self.idle = idle
        self.marker = marker
        self.version = vmctl.__version__
        self.package = os.path.dirname(os.path.abspath(vmctl.__file__))
        self.python = f"{sys.executable} {sys.hexversion}"
        self.code = _fingerprint(self.package)
        self.own_env = dict(os.environ)
        self.started = time.time()
        self.served = 0
        self.sessions: set[_Session] = set()
        self.lock = threading.Lock()
        self.last_activity = time.monotonic()
        self.released = True
        self.stopping = False
        self.listener: socket.socket | None = None
        self.identity: tuple[int, int] | None = None
        self.reads = None
        self.events = None
        db_file = client.sqlite_file(inventory)
        if db_file is not None:
            from vmctl.daemon.warm import ReadCache

            self.reads = ReadCache(db_file)

    # --- life ------------------------------------------------------------------------------------
    def serve(self) -> int:
        if self._answered():
            return 0  # another manager serves this inventory already
        from vmctl.daemon import warm
        from vmctl.store import txn

        warm.warm_up()
        txn.keep_engines()
        session.install()
        from vmctl import drivers

        drivers.RUNNER = {"manager": self.path}  # task-cancel asks this manager (vmctl/tasks.py)
        drivers.BACKGROUND = self._background  # --async
        from vmctl.daemon.events import LifecycleEvents

        # before any libvirt connection of this process opens: events reach only later ones
        self.events = LifecycleEvents(self.inventory)
        if self.events.start():
            self.events.refresh(force=True)
        threading.stack_size(16 * 1024 * 1024)  # commands run in threads: a main thread's room
        import gc

        gc.collect()
        gc.freeze()  # what start-up loaded is never garbage: keep it out of every collection
        self._listen()
        _remove(self.marker)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
        try:
            self._loop()
        except KeyboardInterrupt:  # `vmctl daemon run` in a terminal
            pass
        finally:
            self._close()
        return 0

    def _answered(self) -> bool:
        try:
            sock = client._connect(self.path)
        except OSError:
            return False
        if sock is None:
            return False
        sock.close()
        return True

    def _listen(self) -> None:
        """Listen at the socket path: bound under a name of its own, then renamed into place, so
        that a client never finds a socket nobody listens on yet, and of two managers started at
        once the last one wins (the other notices its socket is gone and exits)."""
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        fresh = f"{self.path}.{os.getpid()}"
        _remove(fresh)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        where, fd = client.address(fresh)
        mask = os.umask(0o177)  # mode 0600 from the start
        try:
            sock.bind(where)
        finally:
            os.umask(mask)
            if fd is not None:
                os.close(fd)
        os.chmod(fresh, 0o600)
        sock.listen(128)
        os.rename(fresh, self.path)
        st = os.stat(self.path)
        self.identity = (st.st_dev, st.st_ino)
        sock.settimeout(TICK_SECONDS)
        self.listener = sock

    def _loop(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()  # type: ignore[union-attr]
            except TimeoutError:
                self._housekeeping()
                continue
            except OSError:
                if self.stopping:
                    break
                raise
            self.last_activity = time.monotonic()
            conn.settimeout(None)
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()
            self._housekeeping()

    def _housekeeping(self) -> None:
        if not self._socket_is_mine():
            self.stop()
            return
        if self.events is not None:
            self.events.refresh()  # hosts other processes added
        with self.lock:
            busy = bool(self.sessions)
        if busy:
            return
        quiet = time.monotonic() - self.last_activity
        if not self.released and quiet >= RELEASE_SECONDS:
            from vmctl.store import txn

            txn.release_kept_connections()
            self.released = True
        if self.idle > 0 and quiet >= self.idle:
            self.stop()

    def _socket_is_mine(self) -> bool:
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self.identity

    def stop(self) -> None:
        """Stop taking connections; the running commands finish, then the process exits. The
        socket goes at once: the next command starts a new manager rather than wait for this one."""
        self.stopping = True
        if self.listener is not None and self._socket_is_mine():
            _remove(self.path)

    def _close(self) -> None:
        if self.listener is not None:
            if self._socket_is_mine():
                _remove(self.path)
            self.listener.close()
            self.listener = None
        while True:
            with self.lock:
                if not self.sessions:
                    break
            time.sleep(0.05)
        from vmctl.store import txn

        txn.release_kept_connections()

    def status(self) -> str:
        with self.lock:
            running = sorted(self.sessions, key=lambda s: s.started)
        lines = [
            f"pid: {os.getpid()}",
            f"inventory: {self.inventory}",
            f"socket: {self.path}",
            f"version: {self.version}",
            f"started: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.started))}",
            f"idle-exit: {f'{self.idle:g} s' if self.idle > 0 else 'never'}",
            f"commands: {self.served}",
            f"running: {len(running)}",
        ]
        return "".join(line + "\n" for line in lines)

    # --- tasks ------------------------------------------------------------------------------------
    def _cancel(self, task: str) -> bool:
        """Interrupt the thread carrying the task out, as Ctrl-C would; whether one was."""
        from vmctl import drivers

        thread = drivers.RUNNING.get(task)
        with self.lock:
            carrying = [s for s in self.sessions if s.thread_id == thread]
        for s in carrying:
            s.interrupt()
        return bool(carrying)

    def _background(self, work) -> None:
        """Carry out a task's long part in a thread of its own (--async: its client has its
        answer), with the directory, umask and environment of the command that started it, and
        no streams: its progress goes nowhere. The manager does not exit before it ends."""
        env = session.current.env
        cwd = os.getcwd()
        mask = os.umask(0o22)
        os.umask(mask)
        ready = threading.Event()
        holder: list[_Session] = []

        def carry_out() -> None:
            s = _Session(["(task)"], [])
            with self.lock:
                self.sessions.add(s)
            holder.append(s)
            ready.set()
            try:
                session.own_directory()
                os.chdir(cwd)
                os.umask(mask)
                session.current.env = env
                with s.lock:
                    s.running = True
                try:
                    work()
                finally:
                    s.stop_interrupts()
            except BaseException:  # its outcome is in the task's record (cancelled, failure)
                pass
            finally:
                session.current.env = None
                with self.lock:
                    self.sessions.discard(s)
                    self.last_activity = time.monotonic()

        threading.Thread(target=carry_out, name="vmctl-task", daemon=True).start()
        ready.wait()

    # --- one connection --------------------------------------------------------------------------
    def _connection(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            if client.peer_uid(conn) != os.getuid():
                return  # only this user's commands see this user's inventory and credentials
            conn.settimeout(client.HANDSHAKE_SECONDS)
            kind, payload, fds = _receive_request(conn)
            if kind == wire.STATUS:
                conn.sendall(wire.frame(wire.INFO, self.status().encode()))
            elif kind == wire.STOP:
                self.stop()
                conn.sendall(wire.frame(wire.INFO, self.status().encode()))
            elif kind == wire.CANCEL:
                found = self._cancel(payload.decode())
                conn.sendall(wire.frame(wire.INFO, f"cancelled: {'yes' if found else 'no'}\n".encode()))
            elif kind == wire.RUN and len(fds) == 3:
                self._request(conn, payload, fds)  # takes the descriptors it uses out of fds
        except (OSError, ValueError):
            pass
        except Exception:
            traceback.print_exc()
        finally:
            for fd in fds:
                _close_fd(fd)
            conn.close()

    def _request(self, conn: socket.socket, payload: bytes, fds: list[int]) -> None:
        fields, argv, env = wire.decode_request(payload)
        if self._other_version(fields):
            conn.sendall(wire.frame(wire.REPLACE))
            self.stop()
            _close_fds(fds)
            return
        reason = self._declined(fields, argv, env, fds)
        if reason is not None:
            conn.sendall(wire.frame(wire.DECLINE, reason.encode()))
            _close_fds(fds)
            return
        with self.lock:
            s = None if self.stopping else _Session(argv, fds)
            if s is not None:
                self.sessions.add(s)
        if s is None:
            conn.sendall(wire.frame(wire.DECLINE, b"stopping"))
            _close_fds(fds)
            return
        ran = False
        try:
            conn.sendall(wire.frame(wire.ACCEPT))
            buf = bytearray()  # what follows GO (an interrupt) is the watcher's
            if _receive_frame(conn, buf) != (wire.GO, b""):
                _close_fds(fds)
                return
            conn.settimeout(None)
            ran = True
            self._run(conn, s, fields, argv, env, fds, buf)
        finally:
            with self.lock:
                self.sessions.discard(s)
                self.served += ran
                self.last_activity = time.monotonic()
        if self.events is not None:
            self.events.refresh(force=True)  # the command may have added or removed a real host

    def _other_version(self, fields: dict[str, str]) -> bool:
        if (fields["version"], fields["package"], fields["python"]) != (
            self.version,
            self.package,
            self.python,
        ):
            return True
        return _fingerprint(self.package) != self.code

    def _declined(self, fields: dict[str, str], argv: list[str], env: dict[str, str], fds: list[int]):
        """Why this manager does not run the command (the client then runs it), or None. Also
        gives this thread the client's working directory: a command's paths are the client's."""
        for k in set(env) | set(self.own_env):
            if k in PROCESS_ENV or k.startswith(PROCESS_ENV_PREFIXES):
                if env.get(k) != self.own_env.get(k):
                    return f"the process environment differs ({k})"
        try:
            if session.own_directory():
                os.chdir(fields["cwd"])
            elif fields["cwd"] != os.getcwd():
                return "threads cannot have a working directory of their own here"
        except OSError:
            return "the working directory is gone"
        from vmctl.cli.grammar import parse
        from vmctl.store.txn_paths import default_db

        try:
            inv = parse(argv)
        except Exception:
            return None  # the command fails on its own command line, wherever it runs
        name = inv.segments[0].name if inv.segments else None
        if name in client.LOCAL_COMMANDS:
            return f"{name} runs in the client"
        if not inv.segments and not (inv.opts.get("version") or inv.opts.get("commands")):
            if os.isatty(fds[1]):
                return "help on a terminal runs in the client"
        db = str(inv.opts.get("db") or "") or env.get("VMCTL_DB") or default_db(env)
        if client.identity_of(db) != self.inventory:
            return "another inventory"
        return None

    def _run(self, conn, s: _Session, fields, argv, env, given: list[int], buf: bytearray) -> None:
        fds = list(given)
        given.clear()  # the command's streams own them from here on
        watcher = threading.Thread(target=self._watch, args=(conn, s, buf), daemon=True)
        watcher.start()
        rc = 1
        try:
            streams = session.open_streams(fds, fields)
        except (OSError, ValueError, LookupError):
            with s.lock:
                s.done = True
            _close_fds(fds)
            streams = None
        if streams is not None:
            session.enter(streams, env, fields["cwd"], int(fields["umask"], 8))
            self.released = False
            try:
                rc = self._execute(s, argv)
            finally:
                with s.lock:
                    s.done = True  # before its descriptors are closed (and their numbers reused)
                session.leave()
        s.done = True
        try:
            conn.sendall(wire.frame(wire.EXIT, str(rc).encode()))
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        watcher.join()

    def _execute(self, s: _Session, argv: list[str]) -> int:
        """The command as vmctl/__main__.py runs it after the client step: the fast reads, then
        the command line; its exit status."""
        rc: object = 1
        try:
            with s.lock:
                s.running = True
            try:
                if s.pending:
                    raise KeyboardInterrupt
                rc = self._command(argv)
            finally:
                s.stop_interrupts()
        except SystemExit as e:  # as the interpreter turns it into an exit status
            rc = e.code
        except KeyboardInterrupt:
            _write_err("vmctl: interrupted; nothing was changed\n")
            rc = 130
        except BaseException:
            _write_err(traceback.format_exc())
            rc = 1
        if rc is None:
            return 0
        if not isinstance(rc, int):
            _write_err(f"{rc}\n")
            return 1
        return rc

    def _command(self, argv: list[str]) -> int:
        from vmctl.cli.app import run_argv

        rc = self.reads.run(argv) if self.reads is not None else _fast(argv)
        if rc is None:
            rc = run_argv(argv)
        return rc

    def _watch(self, conn: socket.socket, s: _Session, buf: bytearray) -> None:
        """Interrupts from the client, and the client going away, while its command runs."""
        while True:
            try:
                got = _receive_frame(conn, buf)
            except (OSError, ValueError):
                got = None
            if got is None:
                s.interrupt(client_gone=True)  # the client is gone: as if it had been killed
                return
            if got[0] == wire.INTERRUPT:
                s.interrupt()


def _fast(argv: list[str]) -> int | None:
    from vmctl.store import fastpath

    return fastpath.try_run(argv)


def _silence(fds: list[int]) -> None:
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for fd in fds:
        try:
            os.dup2(null, fd)
        except OSError:
            pass
    os.close(null)


def _write_err(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        _close_fd(fd)
    fds.clear()


def _receive_request(conn: socket.socket) -> tuple[bytes, bytes, list[int]]:
    """The client's first frame and the descriptors attached to it."""
    fds: list[int] = []
    buf = bytearray()
    space = socket.CMSG_SPACE(3 * 4)
    while True:
        got = wire.split_frame(buf)
        if got is not None:
            return got[0], got[1], fds
        data, ancillary, flags, _ = conn.recvmsg(65536, space)
        for level, kind, blob in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                n = len(blob) - len(blob) % 4
                fds += [int.from_bytes(blob[i : i + 4], sys.byteorder) for i in range(0, n, 4)]
        if flags & socket.MSG_CTRUNC:
            _close_fds(fds)
            raise ValueError("descriptors truncated")
        if not data:
            _close_fds(fds)
            raise ValueError("connection closed")
        buf += data


def _receive_frame(conn: socket.socket, buf: bytearray) -> tuple[bytes, bytes] | None:
    while True:
        got = wire.split_frame(buf)
        if got is not None:
            return got
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
