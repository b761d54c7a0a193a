"""journal-list (model.md §1.9): the committed transactions, oldest first."""

from __future__ import annotations

from vmctl.commands.table import Arg, Ctx, Records, command
from vmctl.errors import VmctlError
from vmctl.model import CLASSES, JOURNAL
from vmctl.units import is_uuid, parse_int


def _object_keys(txn, value: str) -> set[str]:
    """UUID or name -> the uuids it names (current objects by name, any uuid as given)."""
    if is_uuid(value):
        return {value}
    found = set()
    for cls, c in CLASSES.items():
        if c.named:
            found |= {r["uuid"] for r in txn.select(cls, name_label=value)}
    if not found:
        raise VmctlError(
            "UUID_INVALID",
            f"No object has the uuid or name-label {value}",
            [("class", "object"), ("value", value)],
        )
    return found


@command(
    "journal-list",
    "List committed transactions: time, user, command and the objects touched",
    family="journal",
    rw=False,
    long_options=("since", "object", "limit"),
    args=(
        Arg("since", help="a sequence number or an ISO 8601 time"),
        Arg("object", help="only entries touching this object (uuid or name-label)"),
        Arg("limit", "int", help="only the last N entries"),
        Arg("params", help="fields to show: a,b,c or all"),
    ),
)
def journal_list(ctx: Ctx):
    from vmctl.store.txn import journal_rows

    txn = ctx.txn
    txn.flush()
    rows = list(journal_rows(txn.conn))
    since = ctx.a.get("since")
    if since is not None:
        if since.isdigit():
            n = int(since)
            rows = [r for r in rows if r["seq"] >= n]
        else:
            if not since[:4].isdigit():
                raise VmctlError("INVALID_VALUE", params=[("name", "since"), ("value", since)])
            rows = [r for r in rows if r["time"] >= since]
    if "object" in ctx.a:
        keys = _object_keys(txn, ctx.a["object"])

        def touches(r):
            for k in r["created"] + r["changed"] + r["destroyed"]:
                if k.split(":", 1)[1] in keys:
                    return True
            return False

        rows = [r for r in rows if touches(r)]
    if "limit" in ctx.a:
        n = parse_int(ctx.a["limit"], "limit", lo=0)
        rows = rows[-n:] if n else []
    fields = list(JOURNAL.columns)
    if "params" in ctx.a:
        text = ctx.a["params"]
        fields = list(JOURNAL.fields) if text == "all" else [x for x in text.split(",") if x]
        for f in fields:
            if f not in JOURNAL.fields:
                raise VmctlError("UNKNOWN_FIELD", params=[("class", "journal"), ("field", f)])
    return Records("journal", rows, fields)
