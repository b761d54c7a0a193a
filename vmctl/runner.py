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
from contextlib import contextmanager
from dataclasses import dataclass, field

from vmctl.cli.bind import Bound, bind, lookup
from vmctl.cli.grammar import Segment
from vmctl.errors import ConfirmationNeeded, Interrupted, UsageError, VmctlError
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

    def transaction(self, body: Callable, write: bool = True, store=None, line: str | None = None):
        """body(txn) in one transaction with every transaction hook, committed with its journal
        entry (or rolled back on a dry run or a failure); returns what body returned. Long
        actions on real hosts finish after the commit, then the steps it queued run, each a
        transaction of its own (vmctl/drivers)."""
        from vmctl import drivers

        own = store is None
        store = store or self.open_store(write=write)
        try:
            result, txn = self._decide(store, body, write, line)
            rest = drivers.steps(txn)
            try:
                self._finish_long(store, txn)
            except VmctlError as e:
                raise (drivers.step_failed(e, None, rest) if rest else e) from None
            self._steps(store, rest)
            return result
        finally:
            if own:
                store.dispose()

    def _decide(self, store, body: Callable, write: bool, line: str | None):
        """body(txn) with the transaction hooks, committed with its journal entry: (result, txn).
        Without `line` the entry is the command line as it stands once body ran (a body may name
        what it did: the manager's lifecycle events)."""
        from vmctl import hooks

        def with_hooks(txn):
            result = body(txn)
            hooks.before_commit(txn, dry_run=self.opts.dry_run, command=line or self.command_line)
            return result

        return store.run(
            with_hooks, write, finish=lambda txn: store.append_journal(txn, line or self.command_line)
        )

    def _steps(self, store, steps: list) -> None:
        """Run the steps a transaction queued, in order (a wave's at once); the first failure ends them."""
        from vmctl import drivers

        i, done = 0, 0
        while i < len(steps):
            s = steps[i]
            if s.group is not None:
                j = i
                while j < len(steps) and steps[j].group == s.group:
                    j += 1
                done += self._wave(store, steps[i:j], steps[j:], done)
                i = j
                continue
            try:
                self.transaction(s.body, True, store, line=f"{self.command_line}  # {s.what}")
            except VmctlError as e:
                raise drivers.step_failed(e, s, steps[i + 1 :]) from None
            except Interrupted:
                raise
            except KeyboardInterrupt:
                raise _interrupted([s], steps[i + 1 :]) from None
            i, done = i + 1, done + 1

    def _wave(self, store, wave: list, later: list, done_before: int) -> int:
        """The steps of one wave (drivers.Step.group): each decided in a transaction of its own, in
        order, then their long actions at once, in worker threads, each closed in a transaction of
        its own as it ends. A step refused while others of its wave are decided waits for them to
        end and is decided once more (what they free may be what it needs). A failure ends the
        invocation once the wave's started steps ended, whose outcomes stay committed; the steps
        after it are not attempted. Returns how many steps it did."""
        from vmctl import drivers

        started: list = []  # (index in the wave, step, deciding txn)
        failures: list = []  # (index, step, error)
        stopped: list = []  # steps that Ctrl-C stopped
        ok = 0  # steps that ended well
        i, retried = 0, False
        while i < len(wave):
            s = wave[i]
            try:
                _, txn = self._decide(store, s.body, True, f"{self.command_line}  # {s.what}")
            except VmctlError as e:
                if started and not retried:
                    ok += self._at_once(store, started, failures, stopped)
                    started, retried = [], True
                    if failures or stopped:
                        break
                    continue
                failures.append((i, s, e))
                i += 1
                break
            except KeyboardInterrupt:
                stopped.append((i, s))
                i += 1
                drivers.cancel_requested.set()  # the ones decided are closed without acting
                break
            started.append((i, s, txn))
            i, retried = i + 1, False
        ok += self._at_once(store, started, failures, stopped)
        rest = wave[i:] + later
        if stopped:
            raise _interrupted([s for _, s in sorted(stopped, key=lambda x: x[0])], rest, done_before + ok)
        if failures:
            failures.sort(key=lambda f: f[0])
            for _, s, e in failures[1:]:  # the first is the error; the others are said before it
                sys.stderr.write(f"vmctl: warning: {s.what} failed too: {e.message}\n")
            _, s, e = failures[0]
            raise drivers.step_failed(e, s, rest, done_before + ok) from None
        return ok

    def _at_once(self, store, started: list, failures: list, stopped: list) -> int:
        """The long actions of the decided steps `started`, each in a worker thread; each closed
        here, in this thread, as it ends (failures and Ctrl-C-stopped steps appended; returns how
        many ended well). Ctrl-C asks every running one to stop (drivers.cancel_requested) and
        waits for them all."""
        import queue
        import threading

        from vmctl import drivers

        ended: queue.Queue = queue.Queue()

        def work(index: int, q) -> None:
            try:
                if drivers.cancel_requested.is_set():
                    raise KeyboardInterrupt  # Ctrl-C came before it started: it never acts
                ended.put((index, drivers.act_long(q), None))
            except BaseException as e:  # reported to the main thread, which closes the step
                ended.put((index, None, e))

        running, ok = {}, 0
        unexpected = None
        # Ctrl-C meanwhile asks the workers to stop instead of raising here: every step started
        # must be closed here, whenever the signal comes
        with _sigint_sets(drivers.cancel_requested):
            for index, s, txn in started:
                q = drivers.pending(txn)
                if q is None or not q.task:
                    ok += 1  # nothing long to do: it is done
                    continue
                running[index] = (s, txn, q)
                threading.Thread(target=work, args=(index, q), name=f"vmctl-{index}", daemon=True).start()
            while running:
                try:
                    index, results, error = ended.get(timeout=0.2)
                except queue.Empty:
                    continue
                s, txn, q = running.pop(index)
                drivers.close_long(q, txn, self._closer(store, q), results, error)
                if isinstance(error, KeyboardInterrupt):
                    stopped.append((index, s))
                elif isinstance(error, VmctlError):
                    failures.append((index, s, error))
                elif error is not None:
                    unexpected = unexpected or error
                else:
                    ok += 1
        if unexpected is not None:
            raise unexpected
        return ok

    def _finish_long(self, store, decided) -> None:
        """A transaction that started a task (long actions on real hosts, vmctl/drivers): act with
        the lock released, then close the task in a short transaction of its own."""
        from vmctl import drivers

        q = drivers.pending(decided)
        if q is None or not q.task:
            return
        self.task = q.task
        close = self._closer(store, q)
        if self.opts.async_ and drivers.BACKGROUND is not None:
            drivers.BACKGROUND(lambda: drivers.finish_long(q, decided, close))
            return
        drivers.finish_long(q, decided, close)

    def _closer(self, store, q) -> Callable[[Callable], None]:
        """How a task's closing transaction runs: body(txn), journalled under the task."""

        def close(body) -> None:
            line = f"{self.command_line}  # task {q.task}"
            store.run(body, True, finish=lambda txn: store.append_journal(txn, line))

        return close

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


def _interrupted(stopped: list, rest: list, done: int | None = None) -> Interrupted:
    """Ctrl-C in the steps of an invocation: which did not happen, what stays done, what was not
    attempted."""
    from vmctl.drivers import done_phrase

    kind = stopped[0].kind
    what = ", ".join(s.what for s in stopped)
    n = len(rest)
    tail = f"; the {n} {kind}{'s' if n > 1 else ''} after it not attempted" if n else ""
    return Interrupted(f"interrupted: {what} did not happen{done_phrase(kind, done)}{tail}")


@contextmanager
def _sigint_sets(event):
    """Inside (the main thread), Ctrl-C sets `event` instead of raising KeyboardInterrupt; the
    event is cleared on the way out."""
    import signal

    try:
        previous = signal.signal(signal.SIGINT, lambda _signum, _frame: event.set())
    except ValueError:  # not the main thread (the Python API called from a thread): no Ctrl-C here
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        event.clear()
