"""ovs-vsctl-compatible bridge and port commands, in memory (network.md).

Imports only the standard library and vmctl.errors, so that the CLI starts fast.
"""

from vmctl.errors import OvsError
from vmctl.ovs.commands import COMMANDS, OvsCommandSpec
from vmctl.ovs.generic import check
from vmctl.ovs.session import Session

__all__ = ["COMMANDS", "OvsCommandSpec", "OvsError", "Session", "check"]
