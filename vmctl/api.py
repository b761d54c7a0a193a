"""The Python API: everything the CLI does, without the CLI.

inv = vmctl.open("inv.db")
uuid = inv.run("vm-create", **{"name-label": "web1", "memory": "2GiB"})
rows = inv.run("vm-list", params="uuid,name-label")
"""

from __future__ import annotations

from vmctl.cli.app import Executor, Options
from vmctl.cli.bind import bind, lookup
from vmctl.cli.grammar import Segment
from vmctl.commands.table import Data, Records, Text, Value


def words_for(name: str, args: tuple, kwargs: dict) -> list[str]:
    words = [str(a) for a in args]
    for k, v in kwargs.items():
        key = k if "-" in k or ":" in k else k.replace("_", "-")
        if isinstance(v, bool) and key.startswith("--"):
            if v:
                words.append(key)
            continue
        if isinstance(v, (list, tuple)):
            v = ",".join(str(x) for x in v)
        elif isinstance(v, bool):
            v = "true" if v else "false"
        words.append(f"{key}={v}")
    return words


def plain_result(r):
    if isinstance(r, Value):
        return r.value
    if isinstance(r, Records):
        rows = [{f: row.get(f) for f in r.fields} for row in r.rows]
        return rows[0] if r.single and rows else rows
    if isinstance(r, Text):
        return r.text
    if isinstance(r, Data):
        return r.data
    return r


class Inventory:
    def __init__(self, db: str | None = None, timeout: float = 30.0, host: str | None = None):
        self.opts = Options(db=db, timeout=timeout, host=host)

    def run(self, name: str, *args, dry_run: bool = False, **kwargs):
        """Run one command in its own transaction; return its result as plain data."""
        cmd = lookup(name)
        seg = Segment(name=name, args=words_for(name, args, kwargs))
        b = bind(cmd, seg)
        opts = Options(**{**self.opts.__dict__, "dry_run": dry_run})
        results = Executor(opts, f"api {name}").run([b])
        return plain_result(results[0])


def invoke(txn, name: str, args: list[str], opts: dict | None = None, chained: bool = True):
    """Run one command inside an already open transaction (demo, batch helpers)."""
    from vmctl.commands.table import Ctx

    cmd = lookup(name)
    b = bind(cmd, Segment(name=name, args=args))
    ctx = Ctx(
        txn=txn,
        cmd=cmd,
        a=dict(b.a),
        raw=dict(b.raw),
        raw_pairs=list(b.raw_pairs),
        flags=set(b.flags),
        maps=b.maps,
        filters=b.filters,
        opts=opts or {"yes": True},
        chained=chained,
    )
    r = cmd.func(ctx)
    txn.invalidate_views()
    return r
