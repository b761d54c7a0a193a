"""What a command run by the manager sees of its client: the client's standard streams (the
descriptors it passed), its environment, working directory and umask, each for the thread that
runs the command only, so that commands of several clients run side by side.

The process-wide names every command reads (`sys.stdin`, `sys.stdout`, `sys.stderr`, their
`sys.__std*__` originals, `os.environ`) are replaced once, when the manager starts, by proxies
that answer for the current thread's client, and for the manager itself in any other thread. The
working directory and umask are made the thread's own (Linux's unshare(CLONE_FS) for the thread),
then set to the client's.

Reads and writes on the client's descriptors wait in short polls, never in one blocking call:
Ctrl-C reaches a command as an exception raised in its thread (server.py), and Python delivers
it only between its own steps.
"""

from __future__ import annotations

import io
import os
import select
import stat
import sys
import threading
from collections.abc import Iterator, MutableMapping

POLL_SECONDS = 0.2
PIPE_CHUNK = select.PIPE_BUF  # what a pipe reported writable takes without blocking


class _Current(threading.local):
    stdin = None
    stdout = None
    stderr = None
    env: dict[str, str] | None = None


current = _Current()


class _StreamProxy:
    """sys.stdout and the others: the current thread's client stream, else the manager's own."""

    def __init__(self, name: str, own) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_own", own)

    def _target(self):
        s = getattr(current, self._name)
        return s if s is not None else self._own

    def __getattr__(self, attr: str):
        return getattr(self._target(), attr)

    def __setattr__(self, attr: str, value) -> None:
        setattr(self._target(), attr, value)

    def __iter__(self):
        return iter(self._target())

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return self._target().isatty()

    def fileno(self) -> int:
        return self._target().fileno()

    def readline(self, size: int = -1) -> str:
        return self._target().readline(size)

    def read(self, size: int = -1) -> str:
        return self._target().read(size)


class _EnvironProxy(MutableMapping):
    """os.environ: the current thread's client's environment, else the manager's own. Child
    processes and C libraries see the manager's own (the manager declines clients whose
    process environment differs, server.PROCESS_ENV)."""

    def __init__(self, own) -> None:
        self._own = own

    def _map(self):
        env = current.env
        return env if env is not None else self._own

    def __getitem__(self, key: str) -> str:
        return self._map()[key]

    def __setitem__(self, key: str, value: str) -> None:
        self._map()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._map()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._map()))

    def __len__(self) -> int:
        return len(self._map())

    def copy(self) -> dict[str, str]:
        return dict(self._map())

    def __repr__(self) -> str:
        return f"environ({dict(self._map())!r})"


def install() -> None:
    """Put the proxies in place (once, in the manager, before any command runs)."""
    if isinstance(sys.stdout, _StreamProxy):
        return
    for name in ("stdin", "stdout", "stderr"):
        own = getattr(sys, name)
        proxy = _StreamProxy(name, own)
        setattr(sys, name, proxy)
        # shutil.get_terminal_size asks sys.__stdout__ for the terminal: the client's
        setattr(sys, f"__{name}__", proxy)
    # the proxy keeps the real environment, for the manager itself and its child processes
    os.environ = _EnvironProxy(os.environ)  # type: ignore[assignment]  # noqa: B003


# --- the client's descriptors ---------------------------------------------------------------------
def _wait(fd: int, events: int) -> None:
    poller = select.poll()
    poller.register(fd, events)
    while not poller.poll(POLL_SECONDS * 1000):
        pass


class _ClientInput(io.RawIOBase):
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.owns = False  # whether closing it closes the descriptor (once every stream is made)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        _wait(self.fd, select.POLLIN | select.POLLPRI)
        data = os.read(self.fd, len(b))
        b[: len(data)] = data
        return len(data)

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def close(self) -> None:
        if not self.closed and self.owns:
            os.close(self.fd)
        super().close()


class _ClientOutput(io.RawIOBase):
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.owns = False
        mode = os.fstat(fd).st_mode
        # a pipe or socket whose reader stalls would block a plain write past any Ctrl-C
        self.polled = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self.polled:
            _wait(self.fd, select.POLLOUT)
            return os.write(self.fd, bytes(b[:PIPE_CHUNK]))
        return os.write(self.fd, b)

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def close(self) -> None:
        if not self.closed:
            try:
                super().close()  # flushes nothing: a raw stream
            finally:
                if self.owns:
                    os.close(self.fd)


def open_streams(fds: list[int], described: dict[str, str]):
    """Text streams on the client's descriptors, with the encodings and buffering its own had;
    they own the descriptors once all three are made (on a failure the caller still does)."""
    raws = [_ClientInput(fds[0]), _ClientOutput(fds[1]), _ClientOutput(fds[2])]
    enc, errors = described["stdin"].split(" ")[:2]
    streams = [io.TextIOWrapper(io.BufferedReader(raws[0]), enc, errors, newline="\n")]
    for raw, name in zip(raws[1:], ("stdout", "stderr")):
        enc, errors, line, through = described[name].split(" ")[:4]
        streams.append(
            io.TextIOWrapper(
                io.BufferedWriter(raw),
                enc,
                errors,
                newline="\n",
                line_buffering=line == "1",
                write_through=through == "1",
            )
        )
    for raw in raws:
        raw.owns = True
    return tuple(streams)


# --- the thread's own directory and umask ---------------------------------------------------------
_CLONE_FS = 0x00000200
_unshare = None


def own_directory() -> bool:
    """Give the calling thread a working directory and umask of its own; whether it has one."""
    global _unshare
    if _unshare is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        _unshare = libc.unshare
    return _unshare(_CLONE_FS) == 0


def enter(streams, env: dict[str, str], cwd: str, umask: int) -> None:
    """Make the calling thread the client's (its directory must be its own, own_directory)."""
    os.chdir(cwd)
    os.umask(umask)
    current.stdin, current.stdout, current.stderr = streams
    current.env = env


def leave() -> None:
    """Flush and close the client's streams, and stop answering for the client."""
    streams = (current.stdout, current.stderr, current.stdin)
    current.stdin = current.stdout = current.stderr = None
    current.env = None
    for s in streams:
        if s is None:
            continue
        try:
            s.close()  # a text stream flushes before closing
        except (OSError, ValueError):
            try:
                s.buffer.raw.close()  # the client's reader is gone: let go of the descriptor
            except (OSError, ValueError, AttributeError):
                pass
