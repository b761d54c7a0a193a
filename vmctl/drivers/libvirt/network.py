"""A host's Open vSwitch (drivers.md §1, §3 last row): its bridges, ports, interfaces and
controllers, read and changed through the host's OVSDB remote (`HostTarget.ovsdb`) with the
`ovs-vsctl --db=REMOTE` of the machine vmctl runs on; vmctl never speaks the OVSDB protocol itself.

Rows travel as the inventory keeps them (vmctl/ovs/session.py `records()`): per table a list of
dicts holding `uuid` and the stored columns. A change is the difference between two such sets
and is made in one ovs-vsctl invocation, that is one OVSDB transaction: the host takes all of it
or nothing. How the difference is written, and why:

* a new row is created with the inventory's own uuid (`--id=UUID create`), so that `get`, `list`
  and `show` read the same uuids in vmctl and on the host;
* existing rows are named by uuid, so a row the host no longer has fails the change ("no row")
  instead of changing a namesake;
* set columns change by the elements added and removed and map columns by key, never by
  rewriting the whole column: what the change does not mention stays as the host has it (the
  ports libvirt plugs for guests, another tool's external_ids);
* a row leaves by losing its last reference (Bridge rows from the root row's `bridges`), as in
  OVSDB itself: Port, Interface and Controller rows are garbage-collected by the server.

Ctrl-C while a change runs: the ovs-vsctl process runs in a session of its own, so the OVSDB
transaction finishes (or fails) as a whole; if it was made, it is reversed before the
KeyboardInterrupt goes on, and the host is as it was.
"""

from __future__ import annotations

import json
import shutil
import subprocess

from vmctl.drivers.base import DriverFault, HostTarget, SwitchRows

INSTALL = "apt-get install openvswitch-switch"
TIMEOUT = 10  # seconds ovs-vsctl may take to reach the host's database and commit

# The stored columns of each table (as vmctl/store/schema.py OVS_TABLES keeps them), each with
# how a value is written: ref, a set of row uuids; set, a set of integers; map, string to string;
# opt, zero or one atom (None when empty); one, exactly one atom.
COLUMNS: dict[str, dict[str, str]] = {
    "bridge": {
        "name": "one",
        "ports": "ref",
        "controller": "ref",
        "fail_mode": "opt",
        "datapath_type": "one",
        "external_ids": "map",
        "other_config": "map",
    },
    "port": {
        "name": "one",
        "interfaces": "ref",
        "tag": "opt",
        "trunks": "set",
        "vlan_mode": "opt",
        "fake_bridge": "one",
        "bond_fake_iface": "one",
        "bond_mode": "opt",
        "lacp": "opt",
        "external_ids": "map",
        "other_config": "map",
    },
    "interface": {
        "name": "one",
        "type": "one",
        "options": "map",
        "external_ids": "map",
        "other_config": "map",
    },
    "controller": {"target": "one", "inactivity_probe": "opt"},
}
TABLES = {"bridge": "Bridge", "port": "Port", "interface": "Interface", "controller": "Controller"}
# creation order: what a row refers to exists before it (not required by OVSDB within one
# transaction, but it reads naturally in the command line)
ORDER = ("interface", "port", "controller", "bridge")


# --- writing values as ovs-vsctl reads them -------------------------------------------------------------
def _atom(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v), ensure_ascii=False)  # a quoted string: any text survives


def _value(kind: str, v: object) -> str:
    if kind == "ref":
        return "[" + ",".join(v) + "]"  # type: ignore[arg-type]
    if kind == "set":
        return "[" + ",".join(str(x) for x in v) + "]"  # type: ignore[union-attr]
    if kind == "map":
        return "{" + ",".join(f"{_atom(k)}={_atom(x)}" for k, x in sorted(v.items())) + "}"  # type: ignore[union-attr]
    return _atom(v)


def _empty(kind: str, v: object) -> bool:
    return v is None or (kind in ("ref", "set", "map") and not v)


def _elements(kind: str, v: list) -> list[str]:
    return list(v) if kind == "ref" else [str(x) for x in v]


def change_commands(before: SwitchRows, after: SwitchRows) -> list[list[str]]:
    """The ovs-vsctl commands (each a list of words) that turn a switch holding `before` into one
    holding `after`; none when they are equal."""
    old = {t: {r["uuid"]: r for r in before.get(t, ())} for t in COLUMNS}
    new = {t: {r["uuid"]: r for r in after.get(t, ())} for t in COLUMNS}
    cmds: list[list[str]] = []
    for t in ORDER:
        for u, row in new[t].items():
            if u not in old[t]:
                cols = [f"{c}={_value(k, row[c])}" for c, k in COLUMNS[t].items() if not _empty(k, row[c])]
                cmds.append([f"--id={u}", "create", TABLES[t], *cols])
    for t in ORDER:
        for u, row in new[t].items():
            was = old[t].get(u)
            if was is None:
                continue
            for c, kind in COLUMNS[t].items():
                if c != "name" and row[c] != was[c]:
                    cmds += _edit(TABLES[t], u, c, kind, was[c], row[c])
    added = [u for u in new["bridge"] if u not in old["bridge"]]
    gone = [u for u in old["bridge"] if u not in new["bridge"]]
    if added:
        cmds.append(["add", "Open_vSwitch", ".", "bridges", *added])
    if gone:
        cmds.append(["remove", "Open_vSwitch", ".", "bridges", *gone])
    return cmds


def _edit(table: str, uuid: str, col: str, kind: str, was, now) -> list[list[str]]:
    if kind in ("ref", "set"):
        out = []
        gone = [x for x in was if x not in now]
        added = [x for x in now if x not in was]
        if gone:
            out.append(["remove", table, uuid, col, *_elements(kind, gone)])
        if added:
            out.append(["add", table, uuid, col, *_elements(kind, added)])
        return out
    if kind == "map":
        out = []
        gone_keys = sorted(k for k in was if k not in now)
        changed = sorted(k for k in now if was.get(k) != now[k])
        if gone_keys:
            out.append(["remove", table, uuid, col, *(_atom(k) for k in gone_keys)])
        if changed:
            out.append(["set", table, uuid, *(f"{col}:{_atom(k)}={_atom(now[k])}" for k in changed)])
        return out
    if now is None:
        return [["clear", table, uuid, col]]
    return [["set", table, uuid, f"{col}={_atom(now)}"]]


# --- reading rows as ovs-vsctl prints them (--format=json --data=json) -----------------------------------
def _from_json(kind: str, v):
    if kind in ("ref", "set"):
        items = v[1] if isinstance(v, list) and v[:1] == ["set"] else [v]
        return [x[1] if isinstance(x, list) else x for x in items]  # ["uuid", U] -> U
    if kind == "map":
        return {k: x for k, x in v[1]}
    if kind == "opt":
        if isinstance(v, list) and v[:1] == ["set"]:
            return v[1][0] if v[1] else None
        return v
    return v


def rows_from_json(lines: list[str]) -> SwitchRows:
    """The rows of `list` tables printed one JSON object per line, in the order of ORDER."""
    out: SwitchRows = {}
    for t, line in zip(ORDER, lines):
        table = json.loads(line)
        heads = table["headings"]
        rows = []
        for cells in table["data"]:
            rec = dict(zip(heads, cells))
            row = {"uuid": rec["_uuid"][1]}
            for c, kind in COLUMNS[t].items():
                row[c] = _from_json(kind, rec[c])
            rows.append(row)
        out[t] = rows
    return out


class NetworkMixin:
    """The network half of LibvirtDriver (see __init__.py): a host's Open vSwitch database."""

    def switch_rows(self, host: HostTarget) -> SwitchRows:
        """Every Bridge, Port, Interface and Controller row of the host."""
        words = ["--format=json", "--data=json"]
        for t in ORDER:
            cols = ",".join(["_uuid", *COLUMNS[t]])
            words += ["--", f"--columns={cols}", "list", TABLES[t]]
        out = self._vsctl(host, words)
        return rows_from_json([line for line in out.splitlines() if line.strip()])

    def switch_change(self, host: HostTarget, before: SwitchRows, after: SwitchRows) -> None:
        """Make the host's rows go from `before` to `after` (one OVSDB transaction)."""
        cmds = change_commands(before, after)
        if not cmds:
            return
        words = ["--no-wait"]
        if any(c[:2] == ["add", "Open_vSwitch"] for c in cmds):
            words += ["--", "init"]  # the root row, should the database be new
        for c in cmds:
            words += ["--", *c]
        try:
            self._vsctl(host, words)
        except _DoneThenInterrupted:
            # the change was made before the interrupt could stop it: take it back, then stop
            self.switch_change(host, after, before)
            raise KeyboardInterrupt from None

    def _vsctl(self, host: HostTarget, words: list[str]) -> str:
        """Run ovs-vsctl against the host's database; its stdout, or a DriverFault with its
        message. A Ctrl-C meanwhile lets the invocation finish, then raises KeyboardInterrupt:
        _DoneThenInterrupted when the invocation succeeded (the caller undoes it)."""
        exe = shutil.which("ovs-vsctl")
        if exe is None:
            raise DriverFault(
                f"ovs-vsctl is not installed here: {INSTALL}", code="DRIVER_UNAVAILABLE", host=host.name
            )
        argv = [exe, f"--db={host.ovsdb}", f"--timeout={TIMEOUT}", "-vconsole:off", "-vsyslog:off", *words]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a Ctrl-C on the terminal reaches vmctl, not the transaction
        )
        interrupted = False
        while True:
            try:
                out, err = proc.communicate()
                break
            except KeyboardInterrupt:
                interrupted = True
        if proc.returncode != 0:
            if proc.returncode < 0:
                msg = f"ovs-vsctl: no answer from {host.ovsdb} within {TIMEOUT} s"
            else:
                msg = "; ".join(line for line in err.splitlines() if line.strip()) or "ovs-vsctl failed"
            if interrupted:
                raise KeyboardInterrupt
            raise DriverFault(msg, host=host.name, ovsdb=host.ovsdb)
        if interrupted:
            raise _DoneThenInterrupted
        return out


class _DoneThenInterrupted(KeyboardInterrupt):
    """Ctrl-C arrived while an ovs-vsctl invocation ran, and the invocation succeeded."""
