"""The ovs-vsctl-style command table (network.md §1), like vsctl_commands[] in ovs-vsctl.c: name,
argument counts, options, read-only or not, synopsis, help and the function that runs it.

Loaded on every invocation (vmctl.commands.bridge registers it in the command table), so it imports
no command code: each function is named "module:function" of vmctl.ovs and imported on its first
call (`CommandFunction`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


class CommandFunction:
    """A command function given as "module:function" of vmctl.ovs, imported when first called.
    Called with the command's Ctx; returns its Text."""

    __slots__ = ("ref", "_fn")

    def __init__(self, ref: str):
        self.ref = ref
        self._fn: Callable | None = None

    def __call__(self, ctx):
        fn = self._fn
        if fn is None:
            module, _, name = self.ref.partition(":")
            fn = self._fn = getattr(importlib.import_module("vmctl.ovs." + module), name)
        return fn(ctx)

    def __repr__(self) -> str:
        return f"CommandFunction({self.ref!r})"


@dataclass(frozen=True)
class OvsCommandSpec:
    name: str
    min_args: int
    max_args: int | None  # None = unbounded
    options: str  # the option string of network.md §1, "" if none
    read_only: bool
    syntax: str
    help: str
    func: CommandFunction


_N = None
_TABLE = [
    # name, min and max args, options, read-only, synopsis, help, function ("module:function")
    # the Open vSwitch commands (vmctl.ovs.show)
    ("init", 0, 0, "", False, "init", "initialize the switch (does nothing)", "show:init"),
    (
        "show",
        0,
        0,
        "",
        True,
        "show",
        "print an overview of the host's bridges, ports and interfaces",
        "show:show",
    ),
    # bridges (vmctl.ovs.bridges)
    (
        "add-br",
        1,
        3,
        "--may-exist",
        False,
        "add-br BRIDGE [PARENT VLAN]",
        "create a new bridge, or a fake bridge on PARENT for VLAN",
        "bridges:add_br",
    ),
    (
        "del-br",
        1,
        1,
        "--if-exists",
        False,
        "del-br BRIDGE",
        "delete BRIDGE and all of its ports",
        "bridges:del_br",
    ),
    (
        "list-br",
        0,
        0,
        "--real,--fake",
        True,
        "list-br",
        "print the names of all the bridges",
        "bridges:list_br",
    ),
    ("br-exists", 1, 1, "", True, "br-exists BRIDGE", "exit 2 if BRIDGE does not exist", "bridges:br_exists"),
    (
        "br-to-vlan",
        1,
        1,
        "",
        True,
        "br-to-vlan BRIDGE",
        "print the VLAN which BRIDGE is on",
        "bridges:br_to_vlan",
    ),
    (
        "br-to-parent",
        1,
        1,
        "",
        True,
        "br-to-parent BRIDGE",
        "print the parent of BRIDGE",
        "bridges:br_to_parent",
    ),
    (
        "br-set-external-id",
        2,
        3,
        "",
        False,
        "br-set-external-id BRIDGE KEY [VALUE]",
        "set or remove an external id of BRIDGE",
        "bridges:br_set_external_id",
    ),
    (
        "br-get-external-id",
        1,
        2,
        "",
        True,
        "br-get-external-id BRIDGE [KEY]",
        "print the external ids of BRIDGE, or the value of KEY",
        "bridges:br_get_external_id",
    ),
    # ports and interfaces (vmctl.ovs.ports)
    (
        "list-ports",
        1,
        1,
        "",
        True,
        "list-ports BRIDGE",
        "print the names of the ports on BRIDGE",
        "ports:list_ports",
    ),
    (
        "add-port",
        2,
        _N,
        "--may-exist",
        False,
        "add-port BRIDGE PORT [COLUMN[:KEY]=VALUE]...",
        "add a new port named PORT to BRIDGE",
        "ports:add_port",
    ),
    (
        "del-port",
        1,
        2,
        "--if-exists,--with-iface",
        False,
        "del-port [BRIDGE] PORT",
        "delete PORT (which may be a bonded port) from BRIDGE",
        "ports:del_port",
    ),
    (
        "port-to-br",
        1,
        1,
        "",
        True,
        "port-to-br PORT",
        "print the name of the bridge that contains PORT",
        "ports:port_to_br",
    ),
    (
        "add-bond",
        4,
        _N,
        "--may-exist,--fake-iface",
        False,
        "add-bond BRIDGE PORT IFACE... [COLUMN[:KEY]=VALUE]...",
        "add a bonded port named PORT to BRIDGE from the interfaces IFACE",
        "ports:add_bond",
    ),
    (
        "add-bond-iface",
        2,
        2,
        "--may-exist",
        False,
        "add-bond-iface BOND IFACE",
        "add the interface IFACE to the bonded port BOND",
        "ports:add_bond_iface",
    ),
    (
        "del-bond-iface",
        1,
        2,
        "--if-exists",
        False,
        "del-bond-iface [BOND] IFACE",
        "delete the interface IFACE from its bonded port",
        "ports:del_bond_iface",
    ),
    (
        "list-ifaces",
        1,
        1,
        "",
        True,
        "list-ifaces BRIDGE",
        "print the names of the interfaces on BRIDGE",
        "ports:list_ifaces",
    ),
    (
        "iface-to-br",
        1,
        1,
        "",
        True,
        "iface-to-br IFACE",
        "print the name of the bridge that contains IFACE",
        "ports:iface_to_br",
    ),
    # controllers and fail-mode (vmctl.ovs.controller)
    (
        "get-controller",
        1,
        1,
        "",
        True,
        "get-controller BRIDGE",
        "print the controllers of BRIDGE",
        "controller:get_controller",
    ),
    (
        "del-controller",
        1,
        1,
        "",
        False,
        "del-controller BRIDGE",
        "delete the controllers of BRIDGE",
        "controller:del_controller",
    ),
    (
        "set-controller",
        1,
        _N,
        "--inactivity-probe=",
        False,
        "set-controller BRIDGE TARGET...",
        "set the controllers of BRIDGE",
        "controller:set_controller",
    ),
    (
        "get-fail-mode",
        1,
        1,
        "",
        True,
        "get-fail-mode BRIDGE",
        "print the fail-mode of BRIDGE",
        "controller:get_fail_mode",
    ),
    (
        "del-fail-mode",
        1,
        1,
        "",
        False,
        "del-fail-mode BRIDGE",
        "delete the fail-mode of BRIDGE",
        "controller:del_fail_mode",
    ),
    (
        "set-fail-mode",
        2,
        2,
        "",
        False,
        "set-fail-mode BRIDGE MODE",
        "set the fail-mode of BRIDGE to standalone or secure",
        "controller:set_fail_mode",
    ),
    # the generic database commands (vmctl.ovs.database)
    (
        "get",
        2,
        _N,
        "--if-exists",
        True,
        "get TABLE RECORD [COLUMN[:KEY]]...",
        "print the values of the columns of RECORD in TABLE",
        "database:get",
    ),
    (
        "set",
        3,
        _N,
        "--if-exists",
        False,
        "set TABLE RECORD COLUMN[:KEY]=VALUE...",
        "set the values of the columns of RECORD in TABLE",
        "database:set_",
    ),
    (
        "clear",
        3,
        _N,
        "--if-exists",
        False,
        "clear TABLE RECORD COLUMN...",
        "clear the values of the columns of RECORD in TABLE",
        "database:clear",
    ),
    (
        "list",
        1,
        _N,
        "--if-exists,--columns=",
        True,
        "list TABLE [RECORD]...",
        "list the records of TABLE (all of them without RECORD)",
        "database:list_",
    ),
]

COMMANDS: dict[str, OvsCommandSpec] = {
    row[0]: OvsCommandSpec(*row[:-1], func=CommandFunction(row[-1])) for row in _TABLE
}
