"""The Python API: everything the CLI does, without the CLI.

    inv = vmctl.open("inv.db")
    uuid = inv.run("vm-create", name_label="web1", memory=2 * 1024**3)
    rows = inv.run("vm-list", params="uuid,name-label")

Commands go through the same runner as the command line (vmctl/runner.py): the same binding
and checks of their arguments, the same context, the same transaction hooks and journal. Keyword
arguments are typed values (an int for a size, True for a flag, a dict for a map); text is read as
the command line reads it ("2GiB").
"""

from __future__ import annotations

from vmctl.commands.table import Data, Records, Text, Value
from vmctl.runner import Options, Runner


def plain_result(r):
    """A command's result as plain Python data."""
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

    def run(self, name: str, *args: str, dry_run: bool = False, **kwargs):
        """Run one command in its own transaction; return its result as plain data. Positional
        arguments are command-line words (ovs-style commands take theirs this way)."""
        from vmctl.cli.bind import bind, bind_values, lookup
        from vmctl.cli.grammar import Segment

        cmd = lookup(name)
        if args and kwargs:
            raise TypeError("give a command either words or keyword arguments, not both")
        b = (
            bind(cmd, Segment(name=name, args=list(args)))
            if args or cmd.style == "ovs"
            else bind_values(cmd, kwargs)
        )
        opts = Options(**{**self.opts.__dict__, "dry_run": dry_run})
        results = Runner(opts, f"api {name}").run([b])
        return plain_result(results[0])
