"""The ovs-vsctl-style bridge and port commands (network.md), registered from vmctl.ovs's
own table with their functions (each imported on its first call)."""

from __future__ import annotations

from vmctl.commands.table import Command, register
from vmctl.ovs.commands import COMMANDS as OVS_COMMANDS  # the table only: no session code at start-up


def _check_names(seg) -> None:
    """network.md §2.3 phase 2: table and column names of get/set/clear/list, before any
    transaction opens."""
    from vmctl.ovs import check

    check(seg.name, seg.options, seg.args)


for _spec in OVS_COMMANDS.values():
    register(
        Command(
            name=_spec.name,
            func=_spec.func,
            precheck=_check_names,
            help=_spec.help,
            family="bridge",
            style="ovs",
            rw=not _spec.read_only,
            min_args=_spec.min_args,
            max_args=_spec.max_args,
            syntax=_spec.syntax,
            options=_spec.options,
            module="bridge",  # its function lives in vmctl.ovs
        )
    )
