"""Which switch an ovs-style command works on: the host the invocation selects, resolved once
per chain, and, before the first change to a switch, what invariant I13 already finds wrong
there (the pre-commit check refuses only what the transaction adds).

Kept apart from the command table (vmctl.ovs.commands, loaded on every invocation) and from
Ctx: it reaches the invariants, which reach the store, which builds switch sessions; only the
command functions import it.
"""

from __future__ import annotations

from vmctl.errors import VmctlError


def switch(ctx):
    """The switch session (vmctl.ovs.Session) of the host the invocation selects (opts["host"],
    from --host or VMCTL_HOST, else the only host); a read-write command marks the transaction
    written. A session's own calls (Session.run) come with ctx.session set."""
    if ctx.session is None:
        ctx.session = selected_switch(ctx.txn, ctx.opts.get("host"), ctx.cmd.rw)
    return ctx.session


def resolve_switch_host(txn, name: str | None) -> str:
    """The uuid of the host whose switch ovs-style commands work on: the one named by --host (or
    VMCTL_HOST), else the only host."""
    if name:
        return txn.resolve_one("host", name)["uuid"]
    hosts = txn.all("host")
    if len(hosts) == 1:
        return hosts[0]["uuid"]
    raise VmctlError(
        "HOST_REQUIRED",
        "Name the host whose bridges to use: --host=NAME or VMCTL_HOST",
        [("hosts", len(hosts))],
    )


def selected_switch(txn, name: str | None, write: bool):
    """The switch session (vmctl.ovs.Session) of the host `name` selects (resolve_switch_host,
    once per transaction, so once per chain). `write`: the command may change the switch rows, so
    the transaction counts as written: memoized views of the inventory (the engine's pool
    snapshots, which read the bridges) are stale."""
    key = ("switch-host", name)
    host = txn.cache.get(key)
    if host is None:
        host = txn.cache[key] = resolve_switch_host(txn, name)
    s = txn.switch(host)
    if write:
        txn.writes += 1
        # vmctl.xenet keeps what it derives from the inventory rows while only these bumps happened
        txn.cache["ovs-rw-commands"] = txn.cache.get("ovs-rw-commands", 0) + 1
        baselines = txn.cache.setdefault("ovs-switch-baselines", {})
        if host not in baselines:
            # what I13 finds wrong on this switch before the user's commands touch it: the check
            # before commit refuses only what they add (vmctl.invariants.check_switches_before_commit)
            from vmctl.invariants import host_switch_violations

            baselines[host] = set(host_switch_violations(txn, host))
    return s
