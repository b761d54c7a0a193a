"""The lab's state file: everything `lab up` made, recorded before or as it is made, so that
`lab down` (or a failed `lab up`) undoes exactly that and nothing else (drivers.md §5).

A process is recorded by pid *and* start time (field 22 of /proc/PID/stat): a pid the kernel has
since given to an unrelated process is never signalled. Namespaces are recorded as the kernel
names them (`net:[4026532301]`), links and mounts by name and path.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "lab.json"
# an inventory URL with credentials: kept apart, readable by root only (lab.json is everyone's)
SECRET_DB_FILE = "inventory-url"
FORMAT = 1


@dataclass
class Proc:
    """One process the lab started (or that runs inside a lab host)."""

    pid: int
    start: int  # start time in clock ticks since boot: with the pid, the process's identity
    what: str

    def alive(self) -> bool:
        """The same process still runs (a zombie counts as gone: it only waits to be reaped)."""
        stat = read_stat(self.pid)
        return stat is not None and stat[1] == self.start and stat[0] != "Z"


def read_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time) of a process, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    rest = text[text.rindex(")") + 2 :].split()
    return rest[0], int(rest[19])


def proc_of(pid: int, what: str) -> Proc | None:
    stat = read_stat(pid)
    return None if stat is None else Proc(pid, stat[1], what)


def namespace_id(pid: int, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


@dataclass
class HostRecord:
    name: str
    address: str
    uuid: str  # libvirtd's host_uuid
    driver_uri: str
    ovsdb: str
    veth: str  # the root namespace's end of its link
    pid: int = 0  # its init process (tini), as the root namespace numbers it
    namespaces: dict = field(default_factory=dict)  # kind -> "net:[...]"

    def row(self) -> dict:
        return {
            "name": self.name,
            "address": self.address,
            "driver-uri": self.driver_uri,
            "ovsdb": self.ovsdb,
            "pid": self.pid,
        }


@dataclass
class LabState:
    dir: str
    made_dir: bool = False  # DIR did not exist before: down removes it whole
    bridge: str = ""
    gateway: str = ""  # the root namespace's address on the bridge
    links: list = field(default_factory=list)  # root-namespace links, in creation order
    made_paths: list = field(default_factory=list)  # mount points created outside DIR
    mounts: list = field(default_factory=list)  # root-namespace mounts, in creation order
    procs: list = field(default_factory=list)  # Proc, in start order
    hosts: list = field(default_factory=list)  # HostRecord
    inventory: dict = field(default_factory=dict)  # {"db": ..., "pool": uuid} once registered
    ready: bool = False  # every host answered and the lab is registered

    @property
    def path(self) -> Path:
        return Path(self.dir) / STATE_FILE

    def save(self) -> None:
        from vmctl.redact import redact_word

        data = {"format": FORMAT, **asdict(self)}
        db = self.inventory.get("db")
        if db and redact_word(db) != db:
            secret = Path(self.dir) / SECRET_DB_FILE
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(db)
            data["inventory"] = {**self.inventory, "db": redact_word(db)}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def add_proc(self, pid: int, what: str) -> Proc | None:
        p = proc_of(pid, what)
        if p is not None:
            self.procs.append(p)
            self.save()
        return p

    def add(self, kind: str, value: str) -> None:
        """Record a link, mount or made path *before* making it: a failure half-way is undone too."""
        getattr(self, kind).append(value)
        self.save()

    def host(self, name: str) -> HostRecord:
        return next(h for h in self.hosts if h.name == name)


def load(dir_: str) -> LabState | None:
    """The state of the lab in DIR, or None when DIR holds none."""
    path = Path(dir_) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    data.pop("format", None)
    lab = LabState(**{k: v for k, v in data.items() if k not in ("procs", "hosts")})
    lab.procs = [Proc(**p) for p in data.get("procs", [])]
    lab.hosts = [HostRecord(**h) for h in data.get("hosts", [])]
    try:
        lab.inventory["db"] = (Path(dir_) / SECRET_DB_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        pass
    return lab
