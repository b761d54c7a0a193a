"""The runner: bound commands -> one transaction -> results, below both the CLI (cli/app.py)
and the Python API (api.py), so that a command behaves the same whichever of them calls it.

Phases (network.md §2.3): every command's pre-transaction check (ovs table and column names);
open and lock the inventory; run the commands in order on one in-transaction state, each
through its table entry's function; the transaction hooks (vmctl/hooks.py); commit with its
journal entry. The first failure anywhere ends everything with nothing committed.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from vmctl.cli.bind import Bound, bind, lookup
from vmctl.cli.grammar import Segment
from vmctl.errors import ConfirmationNeeded, UsageError, VmctlError
from vmctl.units import escape_controls


@dataclass
class Options:
    """The invocation's options, whoever invokes: the CLI fills them from global options and
    the environment, the Python API from keyword arguments."""

    db: str | None = None
    host: str | None = None
    fmt: str = "table"
    minimal: bool = False
    no_headings: bool = False
    dry_run: bool = False
    yes: bool = False
    oneline: bool = False
    quiet: bool = False
    timeout: float = 30.0
    explain: bool = False
    bare: bool = False
    seed: int | None = None  # demo: derive uuids from a seed
    interactive: bool = False
    async_: bool = False  # --async: a task's long part goes on in the background (the manager)
    extra: dict = field(default_factory=dict)


def command_line(argv: list[str]) -> str:
    """What the journal records as the command line: credentials in a database URL (an
    argument of --db or any other word) are replaced by `***` (vmctl/redact.py)."""
    from vmctl.redact import redact_words

    return "vmctl " + shlex.join(redact_words(argv)) if argv else "vmctl"


def build_chain(segments: list[Segment]) -> list[Bound]:
    """Bind every segment of a chain to its table entry; commands that run outside a
    transaction (utility commands) cannot be chained."""
    chain = []
    for seg in segments:
        cmd = lookup(seg.name)
        if not cmd.chainable:
            raise UsageError(f"'{seg.name}' cannot be part of a chain", command=seg.name)
        chain.append(bind(cmd, seg))
    return chain


class Runner:
    """Runs a chain of bound commands, or a function, as one transaction."""

    def __init__(
        self,
        opts: Options,
        command_line: str,
        chained: bool | None = None,
        ask: Callable[[list[str]], bool] | None = None,
    ):
        self.opts = opts
        self.command_line = command_line
        self.chained = chained
        # asked when a destructive command needs a confirmation and a person is there to give it
        self.ask = ask
        self.task = ""  # the task the last transaction started, if it started one

    def open_store(self, uuids=None, write: bool = True):
        """The inventory; a store opened for reading only never creates or upgrades it."""
        from vmctl.store.txn import Store
        from vmctl.units import UuidSource

        return Store(
            self.opts.db,
            timeout=self.opts.timeout,
            dry_run=self.opts.dry_run,
            read_only=not write,
            uuids=uuids or UuidSource(self.opts.seed),
            on_warning=_print_warning,
        )

    def run(self, chain: list[Bound], store=None) -> list:
        for b in chain:
            if b.cmd.precheck is not None:
                b.cmd.precheck(b.seg)
        if self.opts.explain or any("explain" in b.flags for b in chain):
            # --explain only explains: the chain runs as a dry run, rolled back, no journal entry
            self.opts = dataclasses.replace(self.opts, explain=True, dry_run=True)
        write = any(b.cmd.writes(b.flags) for b in chain)
        chained = self.chained if self.chained is not None else len(chain) > 1
        confirmed = False
        while True:
            try:
                return self.transaction(
                    lambda txn, c=confirmed: self._commands(txn, chain, chained, c), write, store
                )
            except ConfirmationNeeded as need:
                if self.ask is None or not self.ask(need.what):
                    raise VmctlError("CONFIRMATION_REQUIRED", "Declined: nothing was changed") from None
                confirmed = True

    def transaction(self, body: Callable, write: bool = True, store=None):
        """body(txn) in one transaction with every transaction hook, committed with its journal
        entry (or rolled back on a dry run or a failure); returns what body returned."""
        from vmctl import hooks

        own = store is None
        store = store or self.open_store(write=write)

        def with_hooks(txn):
            result = body(txn)
            hooks.before_commit(txn, dry_run=self.opts.dry_run, command=self.command_line)
            return result

        try:
            result, txn = store.run(
                with_hooks, write, finish=lambda txn: store.append_journal(txn, self.command_line)
            )
            self._finish_long(store, txn)
            return result
        finally:
            if own:
                store.dispose()

    def _finish_long(self, store, decided) -> None:
        """A transaction that started a task (long actions on real hosts, vmctl/drivers): act with
        the lock released, then close the task in a short transaction of its own."""
        from vmctl import drivers

        q = drivers.pending(decided)
        if q is None or not q.task:
            return
        self.task = q.task

        def close(body) -> None:
            line = f"{self.command_line}  # task {q.task}"
            store.run(body, True, finish=lambda txn: store.append_journal(txn, line))

        if self.opts.async_ and drivers.BACKGROUND is not None:
            drivers.BACKGROUND(lambda: drivers.finish_long(q, decided, close))
            return
        drivers.finish_long(q, decided, close)

    def _commands(self, txn, chain: list[Bound], chained: bool, confirmed: bool) -> list:
        from vmctl.commands.table import Deferred, Value

        results: list = []
        # A command may hand back a Deferred: its work waits for the next commands of the chain
        # that join the same run (consecutive vm-starts are placed in one pass, engine.md §2.3)
        # and is settled before the first command that does not, or at the end of the chain.
        run = None
        for b in chain:
            if run is not None and not run.accepts(b):
                _settle(run, results)
                run = None
            ctx = self.context(txn, b, chained, confirmed, run)
            r = b.cmd.func(ctx)
            if b.cmd.style != "ovs":
                # xe commands may change what a switch's view shows; an ovs-style command keeps
                # its switch's view current itself (dropping it would repeat its warnings)
                txn.invalidate_views()
            if isinstance(r, Deferred):
                run = r.run
            elif b.ref_id and b.cmd.creates and isinstance(r, Value):
                txn.refs[b.ref_id] = (b.cmd.creates, r.value)
            results.append(r)
        if run is not None:
            _settle(run, results)
        return results

    def context(self, txn, b: Bound, chained: bool, confirmed: bool = False, run=None):
        from vmctl.commands.table import Ctx

        o = self.opts
        return Ctx(
            txn=txn,
            cmd=b.cmd,
            a=dict(b.a),
            raw=dict(b.raw),
            raw_pairs=list(b.raw_pairs),
            flags=set(b.flags),
            maps={k: dict(v) for k, v in b.maps.items()},
            filters=list(b.filters),
            opts={
                "dry_run": o.dry_run,
                "yes": o.yes,
                "quiet": o.quiet,
                "explain": o.explain or "explain" in b.flags,
                "interactive": o.interactive,
                "seed": o.seed,
                "db": o.db,
                "timeout": o.timeout,
                "host": o.host,
                "oneline": o.oneline,
                "bare": o.bare,
                "no_headings": o.no_headings,
            },
            fmt=b.fmt or o.fmt,
            chained=chained,
            confirmed=confirmed,
            may_defer=True,
            deferred=run,
            options=b.seg.options,
            args=b.seg.args,
        )


def _settle(run, results: list) -> None:
    """Replace the run's placeholders in results by what its commands print."""
    from vmctl.commands.table import Deferred

    settled = run.settle()
    for i, r in enumerate(results):
        if isinstance(r, Deferred) and r.run is run:
            results[i] = settled[r.index]


def invoke(txn, name: str, args: list[str], opts: dict | None = None, chained: bool = True):
    """Run one command inside an already open transaction (a command built of others, such as
    the demo). It cannot defer: its result is final when it returns."""
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
        may_defer=False,
    )
    r = cmd.func(ctx)
    if cmd.style != "ovs":
        txn.invalidate_views()
    return r


def _print_warning(line: str) -> None:
    sys.stderr.write(escape_controls(line) + "\n")
    sys.stderr.flush()
