"""ovs-vsctl-compatible bridge and port commands, in memory (network.md).

Imports only the standard library and vmctl.errors, so that the CLI starts fast; `Session` and
`check` are loaded on first use, so that loading the command table (vmctl.ovs.commands) loads no
session code.
"""

from vmctl.errors import OvsError
from vmctl.ovs.commands import COMMANDS, OvsCommandSpec

__all__ = ["COMMANDS", "OvsCommandSpec", "OvsError", "Session", "check"]


def __getattr__(name: str):
    if name == "Session":
        from vmctl.ovs.session import Session

        return Session
    if name == "check":
        from vmctl.ovs.generic import check

        return check
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
