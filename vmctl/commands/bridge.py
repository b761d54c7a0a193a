"""The ovs-vsctl-style bridge and port commands (network.md), registered from vmctl.ovs's
own table; the runner hands them to the host's switch session."""

from __future__ import annotations

from vmctl.commands.table import Command, register
from vmctl.ovs.commands import COMMANDS as OVS_COMMANDS  # the table only: no session code at start-up


def _precheck(seg) -> None:
    from vmctl import ovs

    ovs.check(seg.name, seg.options, seg.args)


def _on_switch(ctx):
    from vmctl.commands.table import Text
    from vmctl.errors import VmctlError

    txn = ctx.txn
    name = ctx.opts.get("host")
    if name:
        host = txn.resolve_one("host", name)["uuid"]
    else:
        hosts = txn.all("host")
        if len(hosts) != 1:
            raise VmctlError(
                "HOST_REQUIRED",
                "Name the host whose bridges to use: --host=NAME or VMCTL_HOST",
                [("hosts", len(hosts))],
            )
        host = hosts[0]["uuid"]
    s = txn.switch(host)
    o = ctx.opts
    text = s.run(
        ctx.cmd.name,
        ctx.seg.options,
        ctx.seg.args,
        oneline=o["oneline"],
        bare=o["bare"],
        no_headings=o["no_headings"],
    )
    if ctx.cmd.rw:
        txn.writes += 1  # switch rows changed: memoized views (pool snapshots) are stale
    return Text(text)


for _spec in OVS_COMMANDS.values():
    register(
        Command(
            name=_spec.name,
            func=_on_switch,
            precheck=_precheck,
            help=_spec.help,
            family="bridge",
            style="ovs",
            rw=not _spec.read_only,
            min_args=_spec.min_args,
            max_args=_spec.max_args,
            syntax=_spec.syntax,
            options=_spec.options,
        )
    )
