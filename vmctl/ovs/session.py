"""One host's switch inside one transaction: rows, the ovs-vsctl view, and every command of
network.md §4-§6.

Rows are kept as the vmctl.store records, except that the reference sets `ports`, `interfaces` and
`controller` are held as insertion-ordered dicts (uuid -> None) so that removing one element of a
bridge with thousands of ports stays O(1).
"""

from __future__ import annotations

from collections.abc import Callable

from vmctl.errors import OvsError
from vmctl.ovs import generic as g
from vmctl.ovs.datum import (
    atom_str,
    c_atoi,
    c_atoll,
    datum_bare,
    datum_str,
    is_uuid,
    parse_atom,
    parse_datum,
    parse_token,
)
from vmctl.ovs.schema import COLUMNS, RECORD_KEY

_TABLES = ("bridge", "port", "interface", "controller")
_REFSETS = ("ports", "interfaces", "controller")
_TARGET_TYPES = ("tcp", "ssl", "unix", "ptcp", "pssl", "punix")


class _VBridge:
    __slots__ = ("name", "row", "parent", "vlan", "children", "ports")

    def __init__(self, name: str, row: dict | None, parent: _VBridge | None, vlan: int):
        self.name = name
        self.row = row
        self.parent = parent
        self.vlan = vlan
        self.children: dict[int, _VBridge] = {}
        self.ports: dict[str, _VPort] = {}  # by port uuid, in attribution order


class _VPort:
    __slots__ = ("row", "bridge", "ifaces")

    def __init__(self, row: dict, bridge: _VBridge):
        self.row = row
        self.bridge = bridge
        self.ifaces: dict[str, _VIface] = {}  # by interface uuid


class _VIface:
    __slots__ = ("row", "port")

    def __init__(self, row: dict, port: _VPort):
        self.row = row
        self.port = port


class _View:
    __slots__ = ("bridges", "ports", "ifaces")

    def __init__(self) -> None:
        self.bridges: dict[str, _VBridge] = {}
        self.ports: dict[str, _VPort] = {}
        self.ifaces: dict[str, _VIface] = {}


def _escape_words(words: list[str]) -> str:
    """The command echo of --may-exist messages: words needing it are double-quoted."""
    out = []
    for w in words:
        if any(c in w for c in " \t\r\n\v\\'\""):
            out.append('"' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            out.append(w)
    return " ".join(out)


def _oneline(text: str) -> str:
    if text.endswith("\n"):
        text = text[:-1]
    return text.replace("\\", "\\\\").replace("\n", "\\n") + "\n"


def _copy_row(row: dict) -> dict:
    r = dict(row)
    for k, v in r.items():
        if k in _REFSETS:
            r[k] = dict.fromkeys(v)
        elif isinstance(v, dict):
            r[k] = dict(v)
        elif isinstance(v, list):
            r[k] = list(v)
    return r


def _export_row(row: dict) -> dict:
    r = row.copy()
    for k in _LISTS:
        if k in r:
            r[k] = list(r[k])
    for k in _MAPS:
        if k in r:
            r[k] = dict(r[k])
    return r


_LISTS = (*_REFSETS, "trunks")
_MAPS = ("external_ids", "other_config", "options")


class Session:
    """One host's switch inside one transaction."""

    def __init__(
        self,
        host_uuid: str,
        records: dict[str, list[dict]],
        new_uuid: Callable[[], str],
        warn: Callable[[str], None],
        *,
        bare: bool = False,
        no_headings: bool = False,
    ):
        self.host_uuid = host_uuid
        self._new_uuid = new_uuid
        self._warn = warn
        self._bare = bare
        self._headings = not (bare or no_headings)
        self._t: dict[str, dict[str, dict]] = {t: {} for t in _TABLES}
        self._all: dict[str, dict] = {}  # every row ever seen, deleted ones included
        for t in _TABLES:
            for row in records.get(t, ()):
                r = _copy_row(row)
                self._t[t][r["uuid"]] = r
                self._all[r["uuid"]] = r
        self._initial = {t: {u: _export_row(r) for u, r in self._t[t].items()} for t in _TABLES}
        self._new: set[str] = set()  # rows inserted by this session (their `name` is writable)
        # add-bond-iface/del-bond-iface edits of Port.interfaces, applied only at commit (§3.4)
        self._iface_ops: list[tuple[str, bool, str]] = []
        self._view: _View | None = None
        # True while the view equals what a rebuild from the rows would give (and a rebuild would
        # warn about nothing): then "discarding" it may keep it, which keeps long chains linear.
        self._exact = False
        self._dirty = False
        self._tables_printed = 0
        # name -> uuids per table, built on the first generic lookup by name, then maintained
        self._names: dict[str, dict[str, list[str]]] = {}

    # ------------------------------------------------------------ public API

    def run(
        self,
        name: str,
        options: dict[str, str | None],
        args: list[str],
        oneline: bool = False,
        *,
        bare: bool | None = None,
        no_headings: bool | None = None,
    ) -> str:
        """Run one command; return exactly its stdout text (possibly ""), or raise OvsError.

        `bare` and `no_headings` (the global --bare/--no-headings, which only `list` uses) may be
        given here or once to the constructor."""
        fn = getattr(self, "_cmd_" + name.replace("-", "_"), None)
        if fn is None:
            raise OvsError(f"unknown command '{name}'; use --help for help")
        if bare is not None:
            self._bare = bare
        if bare is not None or no_headings is not None:
            self._headings = not (self._bare or bool(no_headings))
        out = fn(options, args)
        if name == "list":
            return out  # tables are printed as they are
        return _oneline(out) if oneline else out

    def invalidate_view(self) -> None:
        self._view = None

    def commit_check(self) -> None:
        import json  # only for the error text; kept out of the import path of every invocation

        final = self._final_rows()
        for table, key in (("Bridge", "bridge"), ("Port", "port"), ("Interface", "interface")):
            seen: set[str] = set()
            for row in final[key].values():
                n = row["name"]
                if n in seen:
                    details = (
                        f'Transaction causes multiple rows in "{table}" table to have identical '
                        f'values ({atom_str("string", n)}) for index on column "name".'
                    )
                    text = json.dumps(
                        {"details": details, "error": "constraint violation"},
                        separators=(",", ":"),
                        ensure_ascii=False,
                    )
                    raise OvsError("transaction error: " + text)
                seen.add(n)

    def records(self) -> dict[str, list[dict]]:
        final = self._final_rows()
        return {t: [_export_row(r) for r in final[t].values()] for t in _TABLES}

    @property
    def changed(self) -> bool:
        if not self._dirty:
            return False
        final = self._final_rows()
        for t in _TABLES:
            init = self._initial[t]
            rows = final[t]
            if rows.keys() != init.keys() or any(_export_row(r) != init[u] for u, r in rows.items()):
                return True
        return False

    # ------------------------------------------------------------ helpers for the xe layer

    def has_bridge(self, name: str) -> bool:
        return name in self._v().bridges

    def port_bridge(self, name: str) -> str | None:
        p = self._find_port(name, False)
        return p.bridge.name if p else None

    def add_bridge(self, name: str, external_ids: dict[str, str] | None = None) -> None:
        self._cmd_add_br({}, [name])
        if external_ids:
            row = self._v().bridges[name].row
            assert row is not None
            row["external_ids"].update(external_ids)

    def del_bridge(self, name: str) -> None:
        self._cmd_del_br({"--if-exists": None}, [name])

    def add_port(
        self,
        bridge: str,
        port: str,
        ifaces: list[str] | None = None,
        iface_type: str = "",
        options: dict[str, str] | None = None,
        external_ids: dict[str, str] | None = None,
        iface_external_ids: dict[str, str] | None = None,
        tag: int | None = None,
    ) -> None:
        names = ifaces or [port]
        settings = [] if tag is None else [f"tag={tag}"]
        self._add_port(bridge, port, names, settings, {}, ["add-port", bridge, port], False, False)
        prow = self._v().ports[port].row
        if external_ids:
            prow["external_ids"].update(external_ids)
        for iu in prow["interfaces"]:
            irow = self._all[iu]
            irow["type"] = iface_type
            if options:
                irow["options"].update(options)
            if iface_external_ids:
                irow["external_ids"].update(iface_external_ids)

    def del_port(self, name: str) -> None:
        self._cmd_del_port({"--if-exists": None}, [name])

    # ------------------------------------------------------------ rows

    def _insert(self, table: str, row: dict) -> dict:
        u = self._new_uuid()
        row["uuid"] = u
        self._t[table][u] = row
        self._all[u] = row
        self._new.add(u)
        self._dirty = True
        idx = self._names.get(table)
        if idx is not None:
            idx.setdefault(row["name"], []).append(u)
        return row

    def _delete(self, table: str, uuid: str) -> None:
        row = self._t[table].pop(uuid, None)
        if row is not None:
            self._dirty = True
            idx = self._names.get(table)
            if idx is not None:
                idx[row["name"]].remove(uuid)

    def _new_iface(self, name: str, type_: str = "") -> dict:
        return self._insert(
            "interface", {"name": name, "type": type_, "options": {}, "external_ids": {}, "other_config": {}}
        )

    def _new_port(self, name: str, ifaces: list[dict]) -> dict:
        return self._insert(
            "port",
            {
                "name": name,
                "interfaces": dict.fromkeys(i["uuid"] for i in ifaces),
                "tag": None,
                "trunks": [],
                "vlan_mode": None,
                "fake_bridge": False,
                "bond_fake_iface": False,
                "bond_mode": None,
                "lacp": None,
                "external_ids": {},
                "other_config": {},
            },
        )

    def _final_rows(self) -> dict[str, dict[str, dict]]:
        """The rows as committed: pending interface edits applied, unreferenced rows dropped."""
        ports_t, ifaces_t = self._t["port"], self._t["interface"]
        edited: dict[str, dict] = {}
        for pu, add, iu in self._iface_ops:
            if pu not in ports_t:
                continue
            p = edited.get(pu)
            if p is None:
                p = edited[pu] = dict(ports_t[pu])
                p["interfaces"] = dict(p["interfaces"])
            if add:
                p["interfaces"][iu] = None
            else:
                p["interfaces"].pop(iu, None)
        out: dict[str, dict[str, dict]] = {t: {} for t in _TABLES}
        for bu, b in self._t["bridge"].items():
            out["bridge"][bu] = b
            for cu in b["controller"]:
                if cu in self._t["controller"]:
                    out["controller"][cu] = self._t["controller"][cu]
            for pu in b["ports"]:
                p = edited.get(pu) or ports_t.get(pu)
                if p is None:
                    continue
                out["port"][pu] = p
                for iu in p["interfaces"]:
                    i = ifaces_t.get(iu)
                    if i is not None:
                        out["interface"][iu] = i
        return out

    # ------------------------------------------------------------ the view (§3.2)

    def _v(self) -> _View:
        if self._view is None:
            self._view = self._build_view()
        return self._view

    @staticmethod
    def _is_fake(p: dict) -> bool:
        tag = p["tag"]
        return bool(p["fake_bridge"]) and tag is not None and 0 <= tag <= 4095

    def _add_vbridge(
        self, v: _View, name: str, row: dict | None, parent: _VBridge | None, vlan: int
    ) -> _VBridge:
        vb = _VBridge(name, row, parent, vlan)
        if parent is not None:
            other = parent.children.get(vlan)
            if other is not None:
                self._exact = False
                self._warn(
                    f"vsctl|WARN|{parent.name}: bridge has multiple VLAN bridges ({name} and "
                    f"{other.name}) for VLAN {vlan}, but only one is allowed"
                )
            else:
                parent.children[vlan] = vb
        v.bridges[name] = vb
        return vb

    @staticmethod
    def _add_vport(v: _View, parent: _VBridge, row: dict) -> _VPort:
        tag = row["tag"]
        if tag is not None and 0 <= tag <= 4095:
            child = parent.children.get(tag)
            if child is not None:
                parent = child
        vp = _VPort(row, parent)
        parent.ports[row["uuid"]] = vp
        v.ports[row["name"]] = vp
        return vp

    @staticmethod
    def _add_viface(v: _View, vp: _VPort, row: dict) -> None:
        vi = _VIface(row, vp)
        vp.ifaces[row["uuid"]] = vi
        v.ifaces[row["name"]] = vi

    def _discard_view(self, rows_changed_view: bool) -> None:
        """The view is to be rebuilt on next use (add-br, set, clear); keep it when that would
        give the same view."""
        if rows_changed_view or not self._exact:
            self._view = None

    def _log(self, line: str) -> None:
        self._exact = False  # a rebuild would log it again
        self._warn(line)

    def _build_view(self) -> _View:
        self._exact = True
        v = _View()
        rows = self._all
        ports_t = self._t["port"]
        bridges = sorted(self._t["bridge"].values(), key=lambda b: b["uuid"])
        sorted_ports = {b["uuid"]: [rows[u] for u in sorted(b["ports"]) if u in ports_t] for b in bridges}
        names: set[str] = set()
        port_names: set[str] = set()
        for b in bridges:
            if b["name"] in names:
                self._log(f"vsctl|WARN|{b['name']}: database contains duplicate bridge name")
                continue
            names.add(b["name"])
            vb = self._add_vbridge(v, b["name"], b, None, 0)
            for p in sorted_ports[b["uuid"]]:
                if p["name"] in port_names:
                    continue
                port_names.add(p["name"])
                if self._is_fake(p) and p["name"] not in names:
                    names.add(p["name"])
                    self._add_vbridge(v, p["name"], None, vb, p["tag"])
        names2: set[str] = set()
        for b in bridges:
            if b["name"] in names2:
                continue
            names2.add(b["name"])
            vb = v.bridges[b["name"]]
            for p in sorted_ports[b["uuid"]]:
                vp = v.ports.get(p["name"])
                if vp is not None:
                    if vp.row is p:
                        self._log(
                            f"vsctl|WARN|{p['name']}: port is in multiple bridges "
                            f"({vb.name} and {vp.bridge.name})"
                        )
                    else:
                        self._log(f"vsctl|ERR|{p['name']}: database contains duplicate port name")
                    continue
                if self._is_fake(p):
                    if p["name"] in names2:
                        continue
                    names2.add(p["name"])
                vp = self._add_vport(v, vb, p)
                # The column as read, without pending edits (§3.4); deleted rows still have names.
                for iu in sorted(p["interfaces"]):
                    i = rows.get(iu)
                    if i is None:
                        continue
                    vi = v.ifaces.get(i["name"])
                    if vi is not None:
                        if vi.row is i:
                            self._log(
                                f"vsctl|WARN|{i['name']}: interface is in multiple ports "
                                f"({vi.port.row['name']} and {p['name']})"
                            )
                        else:
                            self._log(f"vsctl|ERR|{i['name']}: database contains duplicate interface name")
                        continue
                    self._add_viface(v, vp, i)
        return v

    def _find_bridge(self, name: str, must: bool) -> _VBridge | None:
        vb = self._v().bridges.get(name)
        if vb is None and must:
            raise OvsError(f"no bridge named {name}")
        return vb

    def _find_real_bridge(self, name: str) -> _VBridge:
        vb = self._find_bridge(name, True)
        assert vb is not None
        if vb.parent is not None:
            raise OvsError(f"{name} is a fake bridge")
        return vb

    def _find_port(self, name: str, must: bool) -> _VPort | None:
        vp = self._v().ports.get(name)
        if vp is not None and vp.bridge.name == name:
            vp = None  # a local port or a fake bridge's own port is hidden
        if vp is None and must:
            raise OvsError(f"no port named {name}")
        return vp

    def _find_iface(self, name: str, must: bool) -> _VIface | None:
        vi = self._v().ifaces.get(name)
        if vi is not None and vi.port.bridge.name == name:
            vi = None
        if vi is None and must:
            raise OvsError(f"no interface named {name}")
        return vi

    def _check_conflicts(self, name: str, prefix: str) -> None:
        v = self._v()
        if name in v.bridges:
            raise OvsError(f"{prefix} because a bridge named {name} already exists")
        vp = v.ports.get(name)
        if vp is not None:
            raise OvsError(f"{prefix} because a port named {name} already exists on bridge {vp.bridge.name}")
        vi = v.ifaces.get(name)
        if vi is not None:
            raise OvsError(
                f"{prefix} because an interface named {name} already exists on bridge {vi.port.bridge.name}"
            )

    @staticmethod
    def _real(vb: _VBridge) -> dict:
        row = (vb.parent or vb).row
        assert row is not None
        return row

    def _del_vport(self, vp: _VPort) -> None:
        v = self._v()
        real = self._real(vp.bridge)
        real["ports"].pop(vp.row["uuid"], None)
        self._dirty = True
        for vi in list(vp.ifaces.values()):
            self._delete("interface", vi.row["uuid"])
            if v.ifaces.get(vi.row["name"]) is vi:
                del v.ifaces[vi.row["name"]]
        vp.bridge.ports.pop(vp.row["uuid"], None)
        if v.ports.get(vp.row["name"]) is vp:
            del v.ports[vp.row["name"]]
        self._delete("port", vp.row["uuid"])

    def _del_vbridge(self, vb: _VBridge) -> None:
        for child in list(vb.children.values()):
            self._del_vbridge(child)
        for vp in list(vb.ports.values()):
            self._del_vport(vp)
        v = self._v()
        if vb.parent is not None and vb.parent.children.get(vb.vlan) is vb:
            del vb.parent.children[vb.vlan]
        if vb.row is not None:
            self._delete("bridge", vb.row["uuid"])
        if v.bridges.get(vb.name) is vb:
            del v.bridges[vb.name]

    # ------------------------------------------------------------ commands (§4)

    def _cmd_init(self, o, a) -> str:
        return ""

    def _cmd_add_br(self, o, a) -> str:
        name = a[0]
        if not name:
            raise OvsError("bridge name must not be empty string")
        parent_name: str | None = None
        vlan = 0
        if len(a) == 3:
            parent_name = a[1]
            vlan = c_atoi(a[2])
            if not 0 <= vlan <= 4095:
                raise OvsError("add-br: vlan must be between 0 and 4095")
        elif len(a) != 1:
            raise OvsError("'add-br' command takes exactly 1 or 3 arguments")
        if "--may-exist" in o:
            vb = self._find_bridge(name, False)
            if vb is not None:
                if parent_name is None:
                    if vb.parent is not None:
                        raise OvsError(
                            f'"--may-exist add-br {name}" but {name} is a VLAN bridge for VLAN {vb.vlan}'
                        )
                else:
                    echo = f'"--may-exist add-br {name} {parent_name} {vlan}" but {name}'
                    if vb.parent is None:
                        raise OvsError(f"{echo} is not a VLAN bridge")
                    if vb.parent.name != parent_name:
                        raise OvsError(f"{echo} has the wrong parent {vb.parent.name}")
                    if vb.vlan != vlan:
                        raise OvsError(f"{echo} is a VLAN bridge for the wrong VLAN {vb.vlan}")
                return ""
        self._check_conflicts(name, f"cannot create a bridge named {name}")
        v = self._v()
        if parent_name is None:
            iface = self._new_iface(name, "internal")
            port = self._new_port(name, [iface])
            brow = self._insert(
                "bridge",
                {
                    "name": name,
                    "ports": {port["uuid"]: None},
                    "controller": {},
                    "fail_mode": None,
                    "datapath_type": "",
                    "external_ids": {},
                    "other_config": {},
                },
            )
            if self._exact:
                vb = self._add_vbridge(v, name, brow, None, 0)
        else:
            parent = self._find_bridge(parent_name, False)
            if parent is not None and parent.parent is not None:
                raise OvsError("cannot create bridge with fake bridge as parent")
            if parent is None:
                raise OvsError(f"parent bridge {parent_name} does not exist")
            other = parent.children.get(vlan)
            if other is not None:
                raise OvsError(
                    f"bridge {parent_name} already has a child VLAN bridge {other.name} on VLAN {vlan}"
                )
            iface = self._new_iface(name, "internal")
            port = self._new_port(name, [iface])
            port["fake_bridge"] = True
            port["tag"] = vlan
            self._real(parent)["ports"][port["uuid"]] = None
            if self._exact:
                vb = self._add_vbridge(v, name, None, parent, vlan)
                # a rebuild gives the new fake bridge the parent's ports tagged with its VLAN
                for u, vp in list(parent.ports.items()):
                    if vp.row["tag"] == vlan:
                        del parent.ports[u]
                        vp.bridge = vb
                        vb.ports[u] = vp
                vb = parent
        if self._exact:
            self._add_viface(v, self._add_vport(v, vb, port), iface)
        else:
            self._view = None
        return ""

    def _cmd_del_br(self, o, a) -> str:
        vb = self._find_bridge(a[0], "--if-exists" not in o)
        if vb is not None:
            self._del_vbridge(vb)
        return ""

    def _cmd_list_br(self, o, a) -> str:
        real = "--real" in o
        fake = "--fake" in o
        if not real and not fake:
            real = fake = True
        names = [vb.name for vb in self._v().bridges.values() if (fake if vb.parent is not None else real)]
        return "".join(n + "\n" for n in sorted(names))

    def _cmd_br_exists(self, o, a) -> str:
        if self._find_bridge(a[0], False) is None:
            raise OvsError(None, 2)
        return ""

    def _cmd_br_to_vlan(self, o, a) -> str:
        vb = self._find_bridge(a[0], True)
        return f"{vb.vlan}\n"  # type: ignore[union-attr]

    def _cmd_br_to_parent(self, o, a) -> str:
        vb = self._find_bridge(a[0], True)
        assert vb is not None
        return f"{(vb.parent or vb).name}\n"

    def _ext_target(self, vb: _VBridge) -> tuple[dict, str]:
        if vb.row is not None:
            return vb.row, ""
        vp = self._v().ports.get(vb.name)
        if vp is None:  # cannot happen with rows made by these commands; never a traceback
            raise OvsError(f"no port named {vb.name}")
        return vp.row, "fake-bridge-"

    def _cmd_br_set_external_id(self, o, a) -> str:
        vb = self._find_bridge(a[0], True)
        assert vb is not None
        row, prefix = self._ext_target(vb)
        key = prefix + a[1]
        if len(a) > 2:
            row["external_ids"][key] = a[2]
        else:
            row["external_ids"].pop(key, None)
        self._dirty = True
        return ""

    def _cmd_br_get_external_id(self, o, a) -> str:
        vb = self._find_bridge(a[0], True)
        assert vb is not None
        row, prefix = self._ext_target(vb)
        ext = row["external_ids"]
        if len(a) > 1:
            val = ext.get(prefix + a[1])
            return "" if val is None else val + "\n"
        return "".join(f"{k[len(prefix) :]}={ext[k]}\n" for k in sorted(ext) if k.startswith(prefix))

    def _cmd_list_ports(self, o, a) -> str:
        vb = self._find_bridge(a[0], True)
        assert vb is not None
        names = [vp.row["name"] for vp in vb.ports.values() if vp.row["name"] != vb.name]
        return "".join(n + "\n" for n in sorted(names))

    def _cmd_add_port(self, o, a) -> str:
        self._add_port(a[0], a[1], [a[1]], a[2:], o, ["add-port", *a], "--may-exist" in o, False)
        return ""

    def _cmd_add_bond(self, o, a) -> str:
        n = len(a) - 2
        for i in range(2, len(a)):
            if "=" in a[i]:
                n = i - 2
                break
        if n < 2:
            raise OvsError(f"add-bond requires at least 2 interfaces, but only {n} were specified")
        self._add_port(
            a[0], a[1], a[2 : 2 + n], a[2 + n :], o, ["add-bond", *a], "--may-exist" in o, "--fake-iface" in o
        )
        return ""

    @staticmethod
    def _echo(o: dict, words: list[str]) -> str:
        opts = [k for k in ("--may-exist", "--fake-iface") if k in o]
        opts += [k for k in o if k not in ("--may-exist", "--fake-iface")]
        return _escape_words(opts + words)

    def _add_port(
        self,
        br_name: str,
        port_name: str,
        ifaces: list[str],
        settings: list[str],
        o: dict,
        words: list[str],
        may_exist: bool,
        fake_iface: bool,
    ) -> None:
        if not port_name:
            raise OvsError("port name must not be empty string")
        if any(not i for i in ifaces):
            raise OvsError("interface name must not be empty string")
        v = self._v()
        if may_exist:
            vp = self._find_port(port_name, False)
            if vp is not None:
                want = sorted(ifaces)
                have = sorted(self._all[u]["name"] for u in vp.row["interfaces"])
                if vp.bridge.name != br_name:
                    raise OvsError(
                        f'"{self._echo(o, words)}" but {port_name} is actually attached to '
                        f"bridge {vp.bridge.name}"
                    )
                if want != have:
                    raise OvsError(
                        f'"{self._echo(o, words)}" but {port_name} actually has interface(s) '
                        + ", ".join(have)
                    )
                return
        self._check_conflicts(port_name, f"cannot create a port named {port_name}")
        for i in ifaces:
            self._check_conflicts(i, f"cannot create an interface named {i}")
        vb = self._find_bridge(br_name, True)
        assert vb is not None
        irows = [self._new_iface(i) for i in ifaces]
        prow = self._new_port(port_name, irows)
        prow["bond_fake_iface"] = fake_iface
        if vb.parent is not None:
            prow["tag"] = vb.vlan
        for s in settings:
            self._set_column("Port", prow, s)
        self._real(vb)["ports"][prow["uuid"]] = None
        vp = self._add_vport(v, vb, prow)
        for r in irows:
            self._add_viface(v, vp, r)
        if vb.parent is not None:
            # ovs-vsctl keeps the port with the fake bridge; a rebuild goes by its final tag
            tag = prow["tag"]
            again = vb.parent.children.get(tag) if tag is not None and 0 <= tag <= 4095 else None
            if (again or vb.parent) is not vb:
                self._exact = False
        if len(set(ifaces)) != len(ifaces):
            self._exact = False

    def _cmd_del_port(self, o, a) -> str:
        must = "--if-exists" not in o
        target = a[-1]
        vp: _VPort | None
        if self._find_bridge(target, False) is not None:
            if must:
                raise OvsError(
                    f"cannot delete port {target} because it is the local port for bridge "
                    f"{target} (deleting this port requires deleting the entire bridge)"
                )
            vp = None
        elif "--with-iface" not in o:
            vp = self._find_port(target, must)
        else:
            vp = self._find_port(target, False)
            if vp is None:
                vi = self._find_iface(target, False)
                if vi is not None:
                    vp = vi.port
            if must and vp is None:
                raise OvsError(f"no port or interface named {target}")
        if vp is None:
            return ""
        if len(a) == 2:
            vb = self._find_bridge(a[0], True)
            if vp.bridge is not vb:
                if vp.bridge.parent is vb:
                    raise OvsError(
                        f"bridge {a[0]} does not have a port {a[1]} (although its child bridge "
                        f"{vp.bridge.name} does)"
                    )
                raise OvsError(f"bridge {a[0]} does not have a port {a[1]}")
        self._del_vport(vp)
        return ""

    def _cmd_port_to_br(self, o, a) -> str:
        vp = self._find_port(a[0], True)
        return vp.bridge.name + "\n"  # type: ignore[union-attr]

    def _cmd_add_bond_iface(self, o, a) -> str:
        vp = self._find_port(a[0], True)
        assert vp is not None
        name = a[1]
        if "--may-exist" in o:
            vi = self._find_iface(name, False)
            if vi is not None:
                if vi.port is vp:
                    return ""
                raise OvsError(
                    f'"{self._echo(o, ["add-bond-iface", *a])}" but {name} is actually attached '
                    f"to port {vi.port.row['name']}"
                )
        self._check_conflicts(name, f"cannot create an interface named {name}")
        irow = self._new_iface(name)
        self._iface_ops.append((vp.row["uuid"], True, irow["uuid"]))
        self._exact = False  # a rebuild reads the unedited column (§3.4)
        self._add_viface(self._v(), vp, irow)
        return ""

    def _cmd_del_bond_iface(self, o, a) -> str:
        name = a[-1]
        vi = self._find_iface(name, "--if-exists" not in o)
        if vi is None:
            return ""
        if len(a) == 2:
            vp = self._find_port(a[0], True)
            assert vp is not None
            if vi.port is not vp:
                raise OvsError(f"port {vp.row['name']} does not have an interface {name}")
        port = vi.port
        if len(port.ifaces) <= 1:
            raise OvsError(f"cannot delete last interface from port {port.row['name']}")
        self._iface_ops.append((port.row["uuid"], False, vi.row["uuid"]))
        self._exact = False
        self._dirty = True
        self._delete("interface", vi.row["uuid"])
        port.ifaces.pop(vi.row["uuid"], None)
        v = self._v()
        if v.ifaces.get(name) is vi:
            del v.ifaces[name]
        return ""

    def _cmd_list_ifaces(self, o, a) -> str:
        vb = self._find_bridge(a[0], True)
        assert vb is not None
        names = [
            vi.row["name"]
            for vp in vb.ports.values()
            for vi in vp.ifaces.values()
            if vi.row["name"] != vb.name
        ]
        return "".join(n + "\n" for n in sorted(names))

    def _cmd_iface_to_br(self, o, a) -> str:
        vi = self._find_iface(a[0], True)
        return vi.port.bridge.name + "\n"  # type: ignore[union-attr]

    def _cmd_get_controller(self, o, a) -> str:
        vb = self._find_bridge(a[0], True)
        assert vb is not None
        row = self._real(vb)
        ctl = self._t["controller"]
        targets = sorted(ctl[u]["target"] for u in row["controller"] if u in ctl)
        return "".join(t + "\n" for t in targets)

    def _cmd_del_controller(self, o, a) -> str:
        row = self._real(self._find_real_bridge(a[0]))
        if row["controller"]:
            for u in row["controller"]:
                self._delete("controller", u)
            row["controller"] = {}
            self._dirty = True
        return ""

    def _cmd_set_controller(self, o, a) -> str:
        row = self._real(self._find_real_bridge(a[0]))
        for u in row["controller"]:
            self._delete("controller", u)
        probe = o.get("--inactivity-probe")
        new = {}
        for target in a[1:]:
            kind, colon, _ = target.partition(":")
            if not colon or kind not in _TARGET_TYPES:
                self._warn(f'vsctl|WARN|target type "{target}" is possibly erroneous')
            c = self._insert(
                "controller",
                {"target": target, "inactivity_probe": None if probe is None else c_atoll(probe)},
            )
            new[c["uuid"]] = None
        row["controller"] = new
        self._dirty = True
        return ""

    def _cmd_get_fail_mode(self, o, a) -> str:
        vb = self._find_bridge(a[0], True)
        assert vb is not None
        mode = self._real(vb)["fail_mode"]
        return mode + "\n" if mode else ""

    def _cmd_del_fail_mode(self, o, a) -> str:
        row = self._real(self._find_real_bridge(a[0]))
        row["fail_mode"] = None
        self._dirty = True
        return ""

    def _cmd_set_fail_mode(self, o, a) -> str:
        row = self._real(self._find_real_bridge(a[0]))
        if a[1] not in ("standalone", "secure"):
            raise OvsError('fail-mode must be "standalone" or "secure"')
        row["fail_mode"] = a[1]
        self._dirty = True
        return ""

    # ------------------------------------------------------------ show (§6)

    def _cmd_show(self, o, a) -> str:
        t = self._t
        q = _q
        out = [self.host_uuid]
        for b in sorted(t["bridge"].values(), key=lambda r: r["name"]):
            out.append("    Bridge " + q(b["name"]))
            ctls = sorted(
                (t["controller"][u] for u in b["controller"] if u in t["controller"]),
                key=lambda r: r["target"],
            )
            out.extend("        Controller " + q(c["target"]) for c in ctls)
            if b["fail_mode"] is not None:
                out.append("        fail_mode: " + q(b["fail_mode"]))
            if b["datapath_type"]:
                out.append("        datapath_type: " + q(b["datapath_type"]))
            ports = sorted((t["port"][u] for u in b["ports"] if u in t["port"]), key=lambda r: r["name"])
            for p in ports:
                out.append("        Port " + q(p["name"]))
                if p["tag"] is not None:
                    out.append(f"            tag: {p['tag']}")
                if p["trunks"]:
                    out.append("            trunks: [" + ", ".join(map(str, sorted(p["trunks"]))) + "]")
                ifaces = sorted(
                    (t["interface"][u] for u in p["interfaces"] if u in t["interface"]),
                    key=lambda r: r["name"],
                )
                for i in ifaces:
                    out.append("            Interface " + q(i["name"]))
                    if i["type"]:
                        out.append("                type: " + q(i["type"]))
                    if i["options"]:
                        opts = ", ".join(f"{q(k)}={q(v)}" for k, v in sorted(i["options"].items()))
                        out.append("                options: {" + opts + "}")
        return "\n".join(out) + "\n"

    # ------------------------------------------------------------ generic commands (§5)

    def _rows_of(self, table: str) -> dict[str, dict]:
        return self._t[RECORD_KEY[table]]

    def _get_row(self, table: str, rid: str, must: bool) -> dict | None:
        rows = self._rows_of(table)
        row = None
        if is_uuid(rid):
            row = rows.get(rid.lower())
        if row is None and rid == "." and len(rows) == 1:
            row = next(iter(rows.values()))
        if row is None:
            key = RECORD_KEY[table]
            idx = self._names.get(key)
            if idx is None:
                idx = self._names[key] = {}
                for u, r in rows.items():
                    idx.setdefault(r["name"], []).append(u)
            found = idx.get(rid, ())
            if len(found) > 1:
                raise OvsError(f'multiple rows in {table} match "{rid}"')
            if found:
                row = rows[found[0]]
        if row is None and _partial_uuid_len(rid) >= 4:
            for u, r in sorted(rows.items()):
                if u.startswith(rid):
                    if row is not None:
                        raise OvsError(
                            f"{table} contains 2 or more rows whose UUIDs begin with {rid}: "
                            f"at least {row['uuid']} and {u}"
                        )
                    row = r
        if row is None and must:
            raise OvsError(f'no row "{rid}" in table {table}')
        return row

    def _cmd_get(self, o, a) -> str:
        must = "--if-exists" not in o
        table = g.resolve_table(a[0])
        row = self._get_row(table, a[1], must)
        if row is None:
            return ""
        out: list[str] = []
        for arg in a[2:]:
            if g.is_uuid_item(arg):
                out.append(row["uuid"] + "\n")
                continue
            tok, pos = g.column_token(arg)
            col = g.resolve_column(table, tok)
            key = None
            if pos < len(arg) and arg[pos] == ":":
                key, pos = parse_token(arg, pos + 1)
            if pos < len(arg):
                raise OvsError(f'{arg}: trailing garbage "{arg[pos:]}" in argument')
            d = g.read_datum(col, row)
            if key is not None:
                t = col.type
                if not t.is_map:
                    raise OvsError(f"cannot specify key to get for non-map column {col.name}")
                k = parse_atom(t.key, key)[0]
                keys, values = d
                if k in keys:
                    out.append(atom_str(t.value.kind, values[keys.index(k)]))  # type: ignore[index,union-attr]
                elif must:
                    raise OvsError(f'no key "{key}" in {table} record "{a[1]}" column {col.name}')
            else:
                out.append(datum_str(col.type, d))
            out.append("\n")
        return "".join(out)

    def _set_column(self, table: str, row: dict, arg: str) -> None:
        tok, pos = g.column_token(arg)
        col = g.resolve_column(table, tok)
        key = None
        if pos < len(arg) and arg[pos] == ":":
            key, pos = parse_token(arg, pos + 1)
        if not (pos < len(arg) - 1 and arg[pos] == "="):
            raise OvsError(f'{arg}: argument does not end in "=" followed by a value.')
        value = arg[pos + 1 :]
        self._check_mutable(table, row, col)
        t = col.type
        if key is not None:
            if not t.is_map:
                raise OvsError(f"cannot specify key to set for non-map column {col.name}")
            k = parse_atom(t.key, key)[0]
            val = parse_atom(t.value, value)[0]  # type: ignore[arg-type]
            row[col.name][k] = val
        else:
            g.write_datum(col, row, parse_datum(t, value))
        self._dirty = True

    def _check_mutable(self, table: str, row: dict, col) -> None:
        if not col.mutable and row["uuid"] not in self._new:
            raise OvsError(f"cannot modify read-only column {col.name} in table {table}")
        if col.access != "settable":
            raise OvsError(f"column {col.name} in table {table} is read-only in vmctl")

    def _cmd_set(self, o, a) -> str:
        table = g.resolve_table(a[0])
        row = self._get_row(table, a[1], "--if-exists" not in o)
        if row is None:
            return ""
        tags = row.get("tag") if table == "Port" else None
        for arg in a[2:]:
            self._set_column(table, row, arg)
        # of the settable columns only Port.tag shapes the view
        self._discard_view(table == "Port" and row["tag"] != tags)
        return ""

    def _cmd_clear(self, o, a) -> str:
        table = g.resolve_table(a[0])
        row = self._get_row(table, a[1], "--if-exists" not in o)
        if row is None:
            return ""
        tags = row.get("tag") if table == "Port" else None
        for arg in a[2:]:
            col = g.resolve_column(table, arg)
            if not col.mutable and row["uuid"] not in self._new:
                raise OvsError(f"cannot modify read-only column {col.name} in table {table}")
            if col.type.n_min > 0:
                raise OvsError(
                    f'"clear" operation cannot be applied to column {col.name} of table {table}, '
                    "which is not allowed to be empty"
                )
            self._check_mutable(table, row, col)
            g.write_datum(col, row, ([], {} if col.type.is_map else None))  # type: ignore[arg-type]
            self._dirty = True
        self._discard_view(table == "Port" and row["tag"] != tags)
        return ""

    def _cmd_list(self, o, a) -> str:
        table = g.resolve_table(a[0])
        spec = o.get("--columns")
        cols: list | None
        allcols = COLUMNS[table]
        if spec is None:
            cols = [None, *allcols.values()]
        else:
            cols = [
                None if w.lower() == "_uuid" else g.resolve_column(table, w) for w in g.split_columns(spec)
            ]
            if not cols:
                raise OvsError("must specify at least one column name")
        must = "--if-exists" not in o
        if len(a) > 1:
            rows = [r for r in (self._get_row(table, rid, must) for rid in a[1:]) if r is not None]
        else:
            rows = sorted(self._rows_of(table).values(), key=lambda r: (r["name"], r["uuid"]))
        out: list[str] = []
        if self._tables_printed:
            out.append("\n")
        self._tables_printed += 1
        for n, row in enumerate(rows):
            if n:
                out.append("\n")
            for col in cols:
                if col is None:
                    name, text = "_uuid", row["uuid"]
                else:
                    d = g.read_datum(col, row)
                    name = col.name
                    text = datum_bare(col.type, d) if self._bare else datum_str(col.type, d)
                if self._headings:
                    out.append(f"{name:<20}: ")
                out.append(text + "\n")
        return "".join(out)


def _q(s: str) -> str:
    return atom_str("string", s)


def _partial_uuid_len(s: str) -> int:
    tmpl = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
    if len(s) > len(tmpl):
        return 0
    for c, t in zip(s, tmpl):
        if t == "x":
            if c not in "0123456789abcdefABCDEF":
                return 0
        elif c != "-":
            return 0
    return len(s)
