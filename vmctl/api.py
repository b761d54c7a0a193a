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
        return r.value()
    return r


# Arguments whose values are never written to the journal (a key containing one of these words).
SECRET_WORDS = ("password", "passwd", "secret", "token", "credential", "private-key")


def _secret(key: str) -> bool:
    k = key.lower().replace("_", "-")
    return any(w in k for w in SECRET_WORDS)


def _word_text(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple, set, frozenset)):
        return ",".join(_word_text(x) for x in v)
    return "" if v is None else str(v)


def api_line(name: str, args: tuple, kwargs: dict) -> str:
    """What the journal records for an API call: `api NAME` and its arguments in the command
    line's form (`key=value`, `map:key=value`, a flag as `flag=true`; words as given), quoted as a shell
    would need; the value of a credential-like argument (password, secret, token...) is never
    recorded, only `key=***`."""
    import shlex

    words: list[str] = []
    for w in args:
        key, eq, _ = str(w).partition("=")
        words.append(f"{key}=***" if eq and _secret(key) else str(w))
    for k, v in kwargs.items():
        key = k if "-" in k or ":" in k else k.replace("_", "-")
        if isinstance(v, dict):
            for mk, mv in v.items():
                full = f"{key}:{mk}"
                words.append(
                    f"{full}=***" if _secret(key) or _secret(str(mk)) else f"{full}={_word_text(mv)}"
                )
        else:
            words.append(f"{key}=***" if _secret(key) else f"{key}={_word_text(v)}")
    return shlex.join(["api", name, *words])


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
        results = Runner(opts, api_line(name, args, kwargs)).run([b])
        return plain_result(results[0])
