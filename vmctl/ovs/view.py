"""The ovs-vsctl view of one switch's rows (network.md §3.2): bridges (real and fake), their ports
and the ports' interfaces, by name. Built by vmctl.ovs.session.Session.view()."""

from __future__ import annotations


class VBridge:
    __slots__ = ("name", "row", "parent", "vlan", "children", "ports")

    def __init__(self, name: str, row: dict | None, parent: VBridge | None, vlan: int):
        self.name = name
        self.row = row
        self.parent = parent
        self.vlan = vlan
        self.children: dict[int, VBridge] = {}
        self.ports: dict[str, VPort] = {}  # by port uuid, in attribution order


class VPort:
    __slots__ = ("row", "bridge", "ifaces")

    def __init__(self, row: dict, bridge: VBridge):
        self.row = row
        self.bridge = bridge
        self.ifaces: dict[str, VIface] = {}  # by interface uuid


class VIface:
    __slots__ = ("row", "port")

    def __init__(self, row: dict, port: VPort):
        self.row = row
        self.port = port


class View:
    __slots__ = ("bridges", "ports", "ifaces")

    def __init__(self) -> None:
        self.bridges: dict[str, VBridge] = {}
        self.ports: dict[str, VPort] = {}
        self.ifaces: dict[str, VIface] = {}
