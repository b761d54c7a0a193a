"""The controller and fail-mode commands (network.md §4): get-controller, del-controller,
set-controller, get-fail-mode, del-fail-mode and set-fail-mode."""

from __future__ import annotations

from vmctl.commands.table import Ctx, Text
from vmctl.errors import OvsError
from vmctl.ovs.datum import c_atoll
from vmctl.ovs.reply import reply
from vmctl.ovs.selection import switch

_TARGET_TYPES = ("tcp", "ssl", "unix", "ptcp", "pssl", "punix")


def get_controller(ctx: Ctx) -> Text:
    s = switch(ctx)
    a = ctx.args
    vb = s.find_bridge(a[0], True)
    assert vb is not None
    row = s.real(vb)
    ctl = s.tables["controller"]
    targets = sorted(ctl[u]["target"] for u in row["controller"] if u in ctl)
    return reply(ctx, "".join(t + "\n" for t in targets))


def del_controller(ctx: Ctx) -> Text:
    s = switch(ctx)
    a = ctx.args
    row = s.real(s.find_real_bridge(a[0]))
    if row["controller"]:
        for u in row["controller"]:
            s.delete("controller", u)
        row["controller"] = {}
        s.dirty = True
    return reply(ctx, "")


def set_controller(ctx: Ctx) -> Text:
    s = switch(ctx)
    o = ctx.options
    a = ctx.args
    row = s.real(s.find_real_bridge(a[0]))
    for u in row["controller"]:
        s.delete("controller", u)
    probe = o.get("--inactivity-probe")
    new = {}
    for target in a[1:]:
        kind, colon, _ = target.partition(":")
        if not colon or kind not in _TARGET_TYPES:
            s.warn(f'vsctl|WARN|target type "{target}" is possibly erroneous')
        c = s.insert(
            "controller",
            {"target": target, "inactivity_probe": None if probe is None else c_atoll(probe)},
        )
        new[c["uuid"]] = None
    row["controller"] = new
    s.dirty = True
    return reply(ctx, "")


def get_fail_mode(ctx: Ctx) -> Text:
    s = switch(ctx)
    a = ctx.args
    vb = s.find_bridge(a[0], True)
    assert vb is not None
    mode = s.real(vb)["fail_mode"]
    return reply(ctx, mode + "\n" if mode else "")


def del_fail_mode(ctx: Ctx) -> Text:
    s = switch(ctx)
    a = ctx.args
    row = s.real(s.find_real_bridge(a[0]))
    row["fail_mode"] = None
    s.dirty = True
    return reply(ctx, "")


def set_fail_mode(ctx: Ctx) -> Text:
    s = switch(ctx)
    a = ctx.args
    row = s.real(s.find_real_bridge(a[0]))
    if a[1] not in ("standalone", "secure"):
        raise OvsError('fail-mode must be "standalone" or "secure"')
    row["fail_mode"] = a[1]
    s.dirty = True
    return reply(ctx, "")
