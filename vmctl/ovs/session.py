"""One host's switch inside one transaction: its rows, the ovs-vsctl view of them (§3.2), the
lookups and row changes the commands share, and the commit check (network.md §3). The commands
themselves are functions of vmctl.ovs.show, .bridges, .ports, .controller and .database, reached
through the command table (vmctl.ovs.commands).

Rows are kept as the vmctl.store records, except that the reference sets `ports`, `interfaces` and
`controller` are held as insertion-ordered dicts (uuid -> None) so that removing one element of a
bridge with thousands of ports stays O(1).
"""

from __future__ import annotations

from collections.abc import Callable

from vmctl.errors import OvsError
from vmctl.ovs import generic as g
from vmctl.ovs.datum import atom_str, is_uuid, parse_atom, parse_datum, parse_token
from vmctl.ovs.schema import MAP_COLUMNS, RECORD_KEY, SET_COLUMNS, UUID_SET_COLUMNS
from vmctl.ovs.view import VBridge, View, VIface, VPort

_TABLES = ("bridge", "port", "interface", "controller")


def _escape_words(words: list[str]) -> str:
    """The command echo of --may-exist messages: words needing it are double-quoted."""
    out = []
    for w in words:
        if any(c in w for c in " \t\r\n\v\\'\""):
            out.append('"' + w.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            out.append(w)
    return " ".join(out)


def _copy_row(row: dict) -> dict:
    r = dict(row)
    for k, v in r.items():
        if k in UUID_SET_COLUMNS:
            r[k] = dict.fromkeys(v)
        elif isinstance(v, dict):
            r[k] = dict(v)
        elif isinstance(v, list):
            r[k] = list(v)
    return r


def _export_row(row: dict) -> dict:
    r = row.copy()
    for k in SET_COLUMNS:
        if k in r:
            r[k] = list(r[k])
    for k in MAP_COLUMNS:
        if k in r:
            r[k] = dict(r[k])
    return r


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
        self.warn = warn
        self.bare = bare
        self.headings = not (bare or no_headings)
        self.tables: dict[str, dict[str, dict]] = {t: {} for t in _TABLES}
        self._all: dict[str, dict] = {}  # every row ever seen, deleted ones included
        for t in _TABLES:
            for row in records.get(t, ()):
                r = _copy_row(row)
                self.tables[t][r["uuid"]] = r
                self._all[r["uuid"]] = r
        self._initial = {t: {u: _export_row(r) for u, r in self.tables[t].items()} for t in _TABLES}
        self.inserted: set[str] = set()  # rows inserted by this session (their `name` is writable)
        # add-bond-iface/del-bond-iface edits of Port.interfaces, applied only at commit (§3.4)
        self.iface_ops: list[tuple[str, bool, str]] = []
        self._view: View | None = None
        # True while the view equals what a rebuild from the rows would give (and a rebuild would
        # warn about nothing): then "discarding" it may keep it, which keeps long chains linear.
        self.exact = False
        self.dirty = False
        self.tables_printed = 0
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
        fmt: str | None = None,
    ) -> str:
        """Run one command on this switch outside the runner (the xe layer, the read-only fast path,
        tests); return exactly its stdout text (possibly ""), or raise OvsError.
        `fmt` is the output format (`list` prints ovs-vsctl's JSON for "json").

        `bare` and `no_headings` (the global --bare/--no-headings, which only `list` uses) may be
        given here or once to the constructor."""
        from vmctl.commands.table import Ctx
        from vmctl.ovs.commands import COMMANDS

        spec = COMMANDS.get(name)
        if spec is None:
            raise OvsError(f"unknown command '{name}'; use --help for help")
        self.set_display(bare, no_headings)
        # no transaction and no runner: switch(ctx) is this session, and nothing is marked written
        ctx = Ctx(
            txn=None,
            cmd=None,  # type: ignore[arg-type]
            opts={"oneline": oneline},
            fmt=fmt or "table",
            options=options,
            args=args,
            session=self,
        )
        return spec.func(ctx).text

    def set_display(self, bare: bool | None, no_headings: bool | None) -> None:
        """How `list` prints: --bare, --no-headings (None: as before)."""
        if bare is not None:
            self.bare = bare
        if bare is not None or no_headings is not None:
            self.headings = not (self.bare or bool(no_headings))

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

    def loaded_records(self) -> dict[str, list[dict]]:
        """The rows as the session found them, in the form of records()."""
        return {t: [_export_row(r) for r in self._initial[t].values()] for t in _TABLES}

    def replace_rows(self, records: dict[str, list[dict]]) -> None:
        """Make the switch hold exactly `records` (rows in the form of records(), uuids kept):
        the rows found on a real host, which the inventory takes as they are."""
        self.tables = {t: {} for t in _TABLES}
        for t in _TABLES:
            for row in records.get(t, ()):
                r = _copy_row(row)
                self.tables[t][r["uuid"]] = r
                self._all[r["uuid"]] = r
        self.inserted = set()
        self.iface_ops = []
        self._names = {}
        self._view = None
        self.exact = False
        self.dirty = True

    @property
    def changed(self) -> bool:
        if not self.dirty:
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
        return name in self.view().bridges

    def port_bridge(self, name: str) -> str | None:
        p = self.find_port(name, False)
        return p.bridge.name if p else None

    def add_bridge(self, name: str, external_ids: dict[str, str] | None = None) -> None:
        self.run("add-br", {}, [name])
        if external_ids:
            row = self.view().bridges[name].row
            assert row is not None
            row["external_ids"].update(external_ids)

    def del_bridge(self, name: str) -> None:
        self.run("del-br", {"--if-exists": None}, [name])

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
        self.create_port(bridge, port, names, settings, {}, ["add-port", bridge, port], False, False)
        prow = self.view().ports[port].row
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
        self.run("del-port", {"--if-exists": None}, [name])

    # ------------------------------------------------------------ rows

    def insert(self, table: str, row: dict) -> dict:
        u = self._new_uuid()
        row["uuid"] = u
        self.tables[table][u] = row
        self._all[u] = row
        self.inserted.add(u)
        self.dirty = True
        idx = self._names.get(table)
        if idx is not None:
            idx.setdefault(row["name"], []).append(u)
        return row

    def delete(self, table: str, uuid: str) -> None:
        row = self.tables[table].pop(uuid, None)
        if row is not None:
            self.dirty = True
            idx = self._names.get(table)
            if idx is not None:
                idx[row["name"]].remove(uuid)

    def new_iface(self, name: str, type_: str = "") -> dict:
        return self.insert(
            "interface", {"name": name, "type": type_, "options": {}, "external_ids": {}, "other_config": {}}
        )

    def new_port(self, name: str, ifaces: list[dict]) -> dict:
        return self.insert(
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
        ports_t, ifaces_t = self.tables["port"], self.tables["interface"]
        edited: dict[str, dict] = {}
        for pu, add, iu in self.iface_ops:
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
        for bu, b in self.tables["bridge"].items():
            out["bridge"][bu] = b
            for cu in b["controller"]:
                if cu in self.tables["controller"]:
                    out["controller"][cu] = self.tables["controller"][cu]
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

    def view(self) -> View:
        if self._view is None:
            self._view = self._build_view()
        return self._view

    @staticmethod
    def _is_fake(p: dict) -> bool:
        tag = p["tag"]
        return bool(p["fake_bridge"]) and tag is not None and 0 <= tag <= 4095

    def add_vbridge(self, v: View, name: str, row: dict | None, parent: VBridge | None, vlan: int) -> VBridge:
        vb = VBridge(name, row, parent, vlan)
        if parent is not None:
            other = parent.children.get(vlan)
            if other is not None:
                self.exact = False
                self.warn(
                    f"vsctl|WARN|{parent.name}: bridge has multiple VLAN bridges ({name} and "
                    f"{other.name}) for VLAN {vlan}, but only one is allowed"
                )
            else:
                parent.children[vlan] = vb
        v.bridges[name] = vb
        return vb

    @staticmethod
    def add_vport(v: View, parent: VBridge, row: dict) -> VPort:
        tag = row["tag"]
        if tag is not None and 0 <= tag <= 4095:
            child = parent.children.get(tag)
            if child is not None:
                parent = child
        vp = VPort(row, parent)
        parent.ports[row["uuid"]] = vp
        v.ports[row["name"]] = vp
        return vp

    @staticmethod
    def add_viface(v: View, vp: VPort, row: dict) -> None:
        vi = VIface(row, vp)
        vp.ifaces[row["uuid"]] = vi
        v.ifaces[row["name"]] = vi

    def discard_view(self, rows_changed_view: bool) -> None:
        """The view is to be rebuilt on next use (add-br, set, clear); keep it when that would
        give the same view."""
        if rows_changed_view or not self.exact:
            self._view = None

    def _log(self, line: str) -> None:
        self.exact = False  # a rebuild would log it again
        self.warn(line)

    def _build_view(self) -> View:
        self.exact = True
        v = View()
        rows = self._all
        ports_t = self.tables["port"]
        bridges = sorted(self.tables["bridge"].values(), key=lambda b: b["uuid"])
        sorted_ports = {b["uuid"]: [rows[u] for u in sorted(b["ports"]) if u in ports_t] for b in bridges}
        names: set[str] = set()
        port_names: set[str] = set()
        for b in bridges:
            if b["name"] in names:
                self._log(f"vsctl|WARN|{b['name']}: database contains duplicate bridge name")
                continue
            names.add(b["name"])
            vb = self.add_vbridge(v, b["name"], b, None, 0)
            for p in sorted_ports[b["uuid"]]:
                if p["name"] in port_names:
                    continue
                port_names.add(p["name"])
                if self._is_fake(p) and p["name"] not in names:
                    names.add(p["name"])
                    self.add_vbridge(v, p["name"], None, vb, p["tag"])
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
                vp = self.add_vport(v, vb, p)
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
                    self.add_viface(v, vp, i)
        return v

    def find_bridge(self, name: str, must: bool) -> VBridge | None:
        vb = self.view().bridges.get(name)
        if vb is None and must:
            raise OvsError(f"no bridge named {name}")
        return vb

    def find_real_bridge(self, name: str) -> VBridge:
        vb = self.find_bridge(name, True)
        assert vb is not None
        if vb.parent is not None:
            raise OvsError(f"{name} is a fake bridge")
        return vb

    def find_port(self, name: str, must: bool) -> VPort | None:
        vp = self.view().ports.get(name)
        if vp is not None and vp.bridge.name == name:
            vp = None  # a local port or a fake bridge's own port is hidden
        if vp is None and must:
            raise OvsError(f"no port named {name}")
        return vp

    def find_iface(self, name: str, must: bool) -> VIface | None:
        vi = self.view().ifaces.get(name)
        if vi is not None and vi.port.bridge.name == name:
            vi = None
        if vi is None and must:
            raise OvsError(f"no interface named {name}")
        return vi

    def check_conflicts(self, name: str, prefix: str) -> None:
        v = self.view()
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
    def real(vb: VBridge) -> dict:
        row = (vb.parent or vb).row
        assert row is not None
        return row

    def del_vport(self, vp: VPort) -> None:
        v = self.view()
        real = self.real(vp.bridge)
        real["ports"].pop(vp.row["uuid"], None)
        self.dirty = True
        for vi in list(vp.ifaces.values()):
            self.delete("interface", vi.row["uuid"])
            if v.ifaces.get(vi.row["name"]) is vi:
                del v.ifaces[vi.row["name"]]
        vp.bridge.ports.pop(vp.row["uuid"], None)
        if v.ports.get(vp.row["name"]) is vp:
            del v.ports[vp.row["name"]]
        self.delete("port", vp.row["uuid"])

    def del_vbridge(self, vb: VBridge) -> None:
        for child in list(vb.children.values()):
            self.del_vbridge(child)
        for vp in list(vb.ports.values()):
            self.del_vport(vp)
        v = self.view()
        if vb.parent is not None and vb.parent.children.get(vb.vlan) is vb:
            del vb.parent.children[vb.vlan]
        if vb.row is not None:
            self.delete("bridge", vb.row["uuid"])
        if v.bridges.get(vb.name) is vb:
            del v.bridges[vb.name]

    # ------------------------------------------------------------ adding ports (add-port, add-bond, add_port)

    @staticmethod
    def echo(o: dict, words: list[str]) -> str:
        """The command as --may-exist errors quote it: its options first, then its words."""
        opts = [k for k in ("--may-exist", "--fake-iface") if k in o]
        opts += [k for k in o if k not in ("--may-exist", "--fake-iface")]
        return _escape_words(opts + words)

    def create_port(
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
        """Port `port_name` on bridge `br_name` with the interfaces `ifaces` and the Port column
        `settings` (COLUMN[:KEY]=VALUE), for add-port, add-bond and add_port; with `may_exist` an
        identical existing port is left alone. `o` and `words` are the command, for messages."""
        if not port_name:
            raise OvsError("port name must not be empty string")
        if any(not i for i in ifaces):
            raise OvsError("interface name must not be empty string")
        v = self.view()
        if may_exist:
            vp = self.find_port(port_name, False)
            if vp is not None:
                want = sorted(ifaces)
                have = sorted(self._all[u]["name"] for u in vp.row["interfaces"])
                if vp.bridge.name != br_name:
                    raise OvsError(
                        f'"{self.echo(o, words)}" but {port_name} is actually attached to '
                        f"bridge {vp.bridge.name}"
                    )
                if want != have:
                    raise OvsError(
                        f'"{self.echo(o, words)}" but {port_name} actually has interface(s) '
                        + ", ".join(have)
                    )
                return
        self.check_conflicts(port_name, f"cannot create a port named {port_name}")
        for i in ifaces:
            self.check_conflicts(i, f"cannot create an interface named {i}")
        vb = self.find_bridge(br_name, True)
        assert vb is not None
        irows = [self.new_iface(i) for i in ifaces]
        prow = self.new_port(port_name, irows)
        prow["bond_fake_iface"] = fake_iface
        if vb.parent is not None:
            prow["tag"] = vb.vlan
        for s in settings:
            self.set_column("Port", prow, s)
        self.real(vb)["ports"][prow["uuid"]] = None
        vp = self.add_vport(v, vb, prow)
        for r in irows:
            self.add_viface(v, vp, r)
        if vb.parent is not None:
            # ovs-vsctl keeps the port with the fake bridge; a rebuild goes by its final tag
            tag = prow["tag"]
            again = vb.parent.children.get(tag) if tag is not None and 0 <= tag <= 4095 else None
            if (again or vb.parent) is not vb:
                self.exact = False
        if len(set(ifaces)) != len(ifaces):
            self.exact = False

    # ------------------------------------------------------------ records and columns (generic commands, §5)

    def rows_of(self, table: str) -> dict[str, dict]:
        return self.tables[RECORD_KEY[table]]

    def get_row(self, table: str, rid: str, must: bool) -> dict | None:
        rows = self.rows_of(table)
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

    def set_column(self, table: str, row: dict, arg: str) -> None:
        tok, pos = g.column_token(arg)
        col = g.resolve_column(table, tok)
        key = None
        if pos < len(arg) and arg[pos] == ":":
            key, pos = parse_token(arg, pos + 1)
        if not (pos < len(arg) - 1 and arg[pos] == "="):
            raise OvsError(f'{arg}: argument does not end in "=" followed by a value.')
        value = arg[pos + 1 :]
        self.check_mutable(table, row, col)
        t = col.type
        if key is not None:
            if not t.is_map:
                raise OvsError(f"cannot specify key to set for non-map column {col.name}")
            k = parse_atom(t.key, key)[0]
            val = parse_atom(t.value, value)[0]  # type: ignore[arg-type]
            row[col.name][k] = val
        else:
            g.write_datum(col, row, parse_datum(t, value))
        self.dirty = True

    def check_mutable(self, table: str, row: dict, col) -> None:
        if not col.mutable and row["uuid"] not in self.inserted:
            raise OvsError(f"cannot modify read-only column {col.name} in table {table}")
        if col.access != "settable":
            raise OvsError(f"column {col.name} in table {table} is read-only in vmctl")


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
