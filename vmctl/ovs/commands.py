"""The ovs-vsctl-style command table (network.md §1)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OvsCommandSpec:
    name: str
    min_args: int
    max_args: int | None  # None = unbounded
    options: str  # the option string of network.md §1, "" if none
    read_only: bool
    syntax: str
    help: str


_N = None
_TABLE = [
    ("init", 0, 0, "", False, "init", "initialize the switch (does nothing)"),
    ("show", 0, 0, "", True, "show", "print an overview of the host's bridges, ports and interfaces"),
    (
        "add-br",
        1,
        3,
        "--may-exist",
        False,
        "add-br BRIDGE [PARENT VLAN]",
        "create a new bridge, or a fake bridge on PARENT for VLAN",
    ),
    ("del-br", 1, 1, "--if-exists", False, "del-br BRIDGE", "delete BRIDGE and all of its ports"),
    ("list-br", 0, 0, "--real,--fake", True, "list-br", "print the names of all the bridges"),
    ("br-exists", 1, 1, "", True, "br-exists BRIDGE", "exit 2 if BRIDGE does not exist"),
    ("br-to-vlan", 1, 1, "", True, "br-to-vlan BRIDGE", "print the VLAN which BRIDGE is on"),
    ("br-to-parent", 1, 1, "", True, "br-to-parent BRIDGE", "print the parent of BRIDGE"),
    (
        "br-set-external-id",
        2,
        3,
        "",
        False,
        "br-set-external-id BRIDGE KEY [VALUE]",
        "set or remove an external id of BRIDGE",
    ),
    (
        "br-get-external-id",
        1,
        2,
        "",
        True,
        "br-get-external-id BRIDGE [KEY]",
        "print the external ids of BRIDGE, or the value of KEY",
    ),
    ("list-ports", 1, 1, "", True, "list-ports BRIDGE", "print the names of the ports on BRIDGE"),
    (
        "add-port",
        2,
        _N,
        "--may-exist",
        False,
        "add-port BRIDGE PORT [COLUMN[:KEY]=VALUE]...",
        "add a new port named PORT to BRIDGE",
    ),
    (
        "del-port",
        1,
        2,
        "--if-exists,--with-iface",
        False,
        "del-port [BRIDGE] PORT",
        "delete PORT (which may be a bonded port) from BRIDGE",
    ),
    ("port-to-br", 1, 1, "", True, "port-to-br PORT", "print the name of the bridge that contains PORT"),
    (
        "add-bond",
        4,
        _N,
        "--may-exist,--fake-iface",
        False,
        "add-bond BRIDGE PORT IFACE... [COLUMN[:KEY]=VALUE]...",
        "add a bonded port named PORT to BRIDGE from the interfaces IFACE",
    ),
    (
        "add-bond-iface",
        2,
        2,
        "--may-exist",
        False,
        "add-bond-iface BOND IFACE",
        "add the interface IFACE to the bonded port BOND",
    ),
    (
        "del-bond-iface",
        1,
        2,
        "--if-exists",
        False,
        "del-bond-iface [BOND] IFACE",
        "delete the interface IFACE from its bonded port",
    ),
    ("list-ifaces", 1, 1, "", True, "list-ifaces BRIDGE", "print the names of the interfaces on BRIDGE"),
    ("iface-to-br", 1, 1, "", True, "iface-to-br IFACE", "print the name of the bridge that contains IFACE"),
    ("get-controller", 1, 1, "", True, "get-controller BRIDGE", "print the controllers of BRIDGE"),
    ("del-controller", 1, 1, "", False, "del-controller BRIDGE", "delete the controllers of BRIDGE"),
    (
        "set-controller",
        1,
        _N,
        "--inactivity-probe=",
        False,
        "set-controller BRIDGE TARGET...",
        "set the controllers of BRIDGE",
    ),
    ("get-fail-mode", 1, 1, "", True, "get-fail-mode BRIDGE", "print the fail-mode of BRIDGE"),
    ("del-fail-mode", 1, 1, "", False, "del-fail-mode BRIDGE", "delete the fail-mode of BRIDGE"),
    (
        "set-fail-mode",
        2,
        2,
        "",
        False,
        "set-fail-mode BRIDGE MODE",
        "set the fail-mode of BRIDGE to standalone or secure",
    ),
    (
        "get",
        2,
        _N,
        "--if-exists",
        True,
        "get TABLE RECORD [COLUMN[:KEY]]...",
        "print the values of the columns of RECORD in TABLE",
    ),
    (
        "set",
        3,
        _N,
        "--if-exists",
        False,
        "set TABLE RECORD COLUMN[:KEY]=VALUE...",
        "set the values of the columns of RECORD in TABLE",
    ),
    (
        "clear",
        3,
        _N,
        "--if-exists",
        False,
        "clear TABLE RECORD COLUMN...",
        "clear the values of the columns of RECORD in TABLE",
    ),
    (
        "list",
        1,
        _N,
        "--if-exists,--columns=",
        True,
        "list TABLE [RECORD]...",
        "list the records of TABLE (all of them without RECORD)",
    ),
]

COMMANDS: dict[str, OvsCommandSpec] = {row[0]: OvsCommandSpec(*row) for row in _TABLE}
