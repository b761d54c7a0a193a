"""`host-sync` and `pool-sync`: compare real hosts with the inventory (drivers.md §4; the rules
are in vmctl/sync.py). One line per difference, `<class> <uuid>: inventory says ..., the host
has ...`, exit 1 if any; `--fix` makes the records follow the hosts and prints
`fixed <class> <uuid>: ...: <what it did>` per repair. Objects the hosts have and vmctl does not
know are listed and left alone."""

from __future__ import annotations

from vmctl import sync
from vmctl.commands.table import Arg, Ctx, Text, command
from vmctl.errors import VmctlError


def _report(ctx: Ctx, hosts: list[dict], what: str) -> Text:
    lines, left = sync.run(ctx.txn, hosts, ctx.flag("fix"))
    if not left:
        lines.append(
            f"{ctx.cmd.name}: {what} agrees with the inventory"
            + (" now" if ctx.flag("fix") and lines else "")
        )
    return Text("".join(line + "\n" for line in lines), exit_code=1 if left else 0)


@command(
    "host-sync",
    "Compare a real host with the inventory (domains and their states, volumes and their sizes, "
    "tasks left by a killed vmctl); --fix makes the inventory follow the host",
    family="host",
    args=(Arg("host", "ref:host", True, "the host", complete="host"),),
    flags=("--fix",),
    writes_with="--fix",
)
def host_sync(ctx: Ctx):
    host = ctx.txn.resolve_one("host", ctx.a["host"])
    return _report(ctx, [host], f"host {host['name-label']}")


@command(
    "pool-sync",
    "host-sync for every host of a real pool; --fix makes the inventory follow the hosts",
    family="pool",
    args=(Arg("pool", "ref:pool", help="the pool (default: the only pool)", complete="pool"),),
    flags=("--fix",),
    writes_with="--fix",
)
def pool_sync(ctx: Ctx):
    from vmctl.pools import only_pool

    txn = ctx.txn
    pool = only_pool(txn, ctx.a.get("pool"))
    if pool["driver"] == "sim":
        raise VmctlError(
            "OPERATION_NOT_ALLOWED",
            params=[
                ("reason", f"Pool {pool['name-label']} is simulated: there are no real hosts to compare")
            ],
        )
    hosts = sorted(txn.select("host", pool=pool["uuid"]), key=lambda h: h["name-label"])
    return _report(ctx, hosts, f"pool {pool['name-label'] or pool['uuid']}")
