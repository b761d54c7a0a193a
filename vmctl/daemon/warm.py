"""What the manager keeps warm from one command to the next, and what it does at start-up to get
there.

Kept elsewhere, because they serve any long-running process: the engine of each inventory (its
compiled statements, its connections while commands keep coming: store/txn.py keep_engines), the
placement snapshots (engine_adapter.py, carried over while the inventory's journal head is
unchanged) and the libvirt connections (drivers/, one per host per process).

Kept here: the output of the plain-sqlite3 reads (store/fastpath.py: `<class>-list`,
`*-param-get`, read-only ovs-style chains), per command line and what it depends on, reused while
the inventory's file, schema version and journal head are the ones it was read at. Listing 40,000
VMs again is then the cost of writing them out.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections import OrderedDict

from vmctl.daemon import session

ENTRY_LIMIT = 16 * 1024 * 1024  # characters: larger outputs are not kept
TOTAL_LIMIT = 64 * 1024 * 1024
# what a fast read's output depends on besides its command line (the environment's names)
ENV_KEYS = ("VMCTL_DB", "VMCTL_FORMAT", "VMCTL_HOST", "XDG_DATA_HOME", "HOME")


def warm_up() -> None:
    """Import what commands use, so that the first command does not pay for it and no command
    imports a module while another thread runs: the whole command table, the store, the
    engine with NumPy, the renderers."""
    import numpy  # noqa: F401
    import rich.console  # noqa: F401
    import rich.table  # noqa: F401
    import yaml  # noqa: F401

    import vmctl.admission  # noqa: F401
    import vmctl.cli.app  # noqa: F401
    import vmctl.cli.output  # noqa: F401
    import vmctl.cli.views  # noqa: F401
    import vmctl.engine.placement.scheduler  # noqa: F401
    import vmctl.engine_adapter  # noqa: F401
    import vmctl.hooks  # noqa: F401
    import vmctl.invariants  # noqa: F401
    import vmctl.store.fastpath  # noqa: F401
    import vmctl.store.loads  # noqa: F401
    import vmctl.store.migrate  # noqa: F401
    import vmctl.store.txn  # noqa: F401
    from vmctl.commands import load

    load()


class _Captured(io.StringIO):
    """Output held back from the client's stream, answering isatty() as that stream does (the
    fast path prints a terminal table only through the normal path)."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class ReadCache:
    """The fast reads' outputs of one SQLite inventory (the manager's), least recently used
    dropped first."""

    def __init__(self, db_file: str) -> None:
        self.db_file = db_file
        self._entries: OrderedDict[tuple, tuple[tuple, str]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def run(self, argv: list[str]) -> int | None:
        """Serve a fast read as store/fastpath.py would, printing what it prints; None when the
        fast path does not serve this command line (the normal path runs)."""
        from vmctl.store import fastpath

        tty = sys.stdout.isatty()
        env = os.environ
        key = (tuple(argv), os.getcwd(), tty, *(env.get(k) for k in ENV_KEYS))
        stamp = fastpath.inventory_stamp(self.db_file)
        if stamp is None:
            return fastpath.try_run(argv)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == stamp:
                self._entries.move_to_end(key)
        if hit is not None and hit[0] == stamp:
            return self._print(hit[1], "")
        out, err = _Captured(tty), _Captured(sys.stderr.isatty())
        cur = session.current
        saved = cur.stdout, cur.stderr
        cur.stdout, cur.stderr = out, err
        try:
            rc = fastpath.try_run(argv)
        finally:
            cur.stdout, cur.stderr = saved
        if rc is None:
            return None
        text, warnings = out.getvalue(), err.getvalue()
        if (
            rc == 0
            and not warnings
            and len(text) <= ENTRY_LIMIT
            and fastpath.inventory_stamp(self.db_file) == stamp
        ):
            self._keep(key, stamp, text)
        return self._print(text, warnings, rc)

    def _print(self, text: str, warnings: str, rc: int = 0) -> int:
        try:
            sys.stderr.write(warnings)
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # as the normal path ends on a closed pipe (cli/app.py)
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            except OSError:
                pass
            return 1
        return rc

    def _keep(self, key: tuple, stamp: tuple, text: str) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= len(old[1])
            self._entries[key] = (stamp, text)
            self._size += len(text)
            while self._size > TOTAL_LIMIT and self._entries:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._size -= len(dropped)
