"""The runner: argv (or batch items) -> bound commands -> one transaction -> printed results.

Phases (network.md §2.3): parse the whole chain; check (ovs get/set/clear/list table and
column names); open and lock the inventory; run the commands in order on one in-transaction
state; commit; print. The first failure anywhere ends everything with nothing committed and
nothing on stdout.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field

from vmctl.cli import output
from vmctl.cli.bind import Bound, bind, lookup
from vmctl.cli.grammar import Invocation, parse
from vmctl.errors import ConfirmationNeeded, OvsError, UsageError, VmctlError

UTILITY = ("batch", "demo", "completion", "help", "bench")


@dataclass
class Options:
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
    extra: dict = field(default_factory=dict)


def options_from(inv_opts: dict) -> Options:
    o = Options()
    o.db = inv_opts.get("db") or os.environ.get("VMCTL_DB") or None  # type: ignore[assignment]
    o.host = inv_opts.get("host") or os.environ.get("VMCTL_HOST") or None  # type: ignore[assignment]
    fmt = inv_opts.get("format") or os.environ.get("VMCTL_FORMAT") or "table"
    if fmt not in ("table", "json", "yaml", "csv", "tsv"):
        raise VmctlError(
            "INVALID_VALUE",
            "The output format must be table, json, yaml, csv or tsv",
            [("name", "format"), ("value", fmt)],
        )
    o.fmt = str(fmt)
    o.minimal = bool(inv_opts.get("minimal"))
    o.no_headings = bool(inv_opts.get("no-headings"))
    o.dry_run = bool(inv_opts.get("dry-run"))
    o.yes = bool(inv_opts.get("yes"))
    o.oneline = bool(inv_opts.get("oneline"))
    o.quiet = bool(inv_opts.get("quiet"))
    o.bare = bool(inv_opts.get("bare"))
    t = inv_opts.get("timeout") or os.environ.get("VMCTL_TIMEOUT")
    if t is not None:
        text = str(t)
        if not text.isdigit() or int(text) <= 0:
            raise UsageError(f"value {text} on -t or --timeout is invalid")
        o.timeout = float(int(text))
    return o


class Executor:
    """Runs a chain of bound commands as one transaction."""

    def __init__(self, opts: Options, command_line: str, chained: bool | None = None):
        self.opts = opts
        self.command_line = command_line
        self.chained = chained

    def _open(self):
        from vmctl.store.txn import Store
        from vmctl.units import UuidSource

        return Store(
            self.opts.db,
            timeout=self.opts.timeout,
            dry_run=self.opts.dry_run,
            uuids=UuidSource(self.opts.seed),
            on_warning=_print_warning,
        )

    def run(self, chain: list[Bound], store=None) -> list:
        from vmctl import ovs

        # phase 2: ovs table/column checks for the whole chain before anything opens
        for b in chain:
            if b.cmd.style == "ovs":
                ovs.check(b.cmd.name, b.seg.options, b.seg.args)
        write = any(b.cmd.rw for b in chain)
        own = store is None
        store = store or self._open()
        chained = self.chained if self.chained is not None else len(chain) > 1
        confirmed = False
        try:
            while True:
                try:
                    results, _txn = store.run(
                        lambda txn, c=confirmed: self._body(txn, chain, chained, c),
                        write,
                        finish=lambda txn: store.append_journal(txn, self.command_line),
                    )
                    return results
                except ConfirmationNeeded as need:
                    if not _ask(need.what):
                        raise VmctlError("CONFIRMATION_REQUIRED", "Declined: nothing was changed") from None
                    confirmed = True
        finally:
            if own:
                store.dispose()

    def _body(self, txn, chain: list[Bound], chained: bool, confirmed: bool) -> list:
        from vmctl.commands.table import Ctx, Text, Value

        results = []
        host = None
        # Deferred-work hook (engine.md §2.3, cli.md §2; vmctl/commands/vmpower.py): a command may
        # leave a callable in txn.cache["deferred"]; it is called with the next bound command before
        # that command runs, and with None at the end of the chain, so a run of consecutive
        # vm-starts without on= is placed in one pass. "defer-ok" names the command the runner is
        # running (a command invoked from inside another one must not defer).
        for b in chain:
            if txn.cache.get("deferred") is not None:
                txn.cache["deferred"](b, results)
            txn.cache["defer-ok"] = b.cmd
            if b.cmd.style == "ovs":
                if host is None:
                    host = resolve_switch_host(txn, self.opts.host)
                s = txn.switch(host)
                results.append(
                    Text(
                        s.run(
                            b.cmd.name,
                            b.seg.options,
                            b.seg.args,
                            oneline=self.opts.oneline,
                            bare=self.opts.bare,
                            no_headings=self.opts.no_headings,
                        )
                    )
                )
                if b.cmd.rw:
                    txn.writes += 1  # switch rows changed: memoized views (pool snapshots) are stale
                continue
            ctx = Ctx(
                txn=txn,
                cmd=b.cmd,
                a=dict(b.a),
                raw=dict(b.raw),
                raw_pairs=list(b.raw_pairs),
                flags=set(b.flags),
                maps={k: dict(v) for k, v in b.maps.items()},
                filters=list(b.filters),
                opts=self._ctx_opts(b),
                fmt=b.fmt or self.opts.fmt,
                chained=chained,
                confirmed=confirmed,
            )
            r = b.cmd.func(ctx)
            txn.invalidate_views()
            if b.ref_id and b.cmd.creates and isinstance(r, Value):
                txn.refs[b.ref_id] = (b.cmd.creates, r.value)
            results.append(r)
        if txn.cache.get("deferred") is not None:
            txn.cache["deferred"](None, results)
        if txn.write and txn.dirty:
            # HA status after every change while HA is enabled (engine.md §3.4; vmctl/commands/ha.py)
            from vmctl.commands.ha import refresh_ha_status

            refresh_ha_status(txn)
        if not self.opts.dry_run:
            for s in txn.switches.values():
                if s is not None:
                    s.commit_check()
        if txn.write and txn.dirty:
            from vmctl.invariants import check_before_commit

            check_before_commit(txn)
        return results

    def _ctx_opts(self, b: Bound) -> dict:
        o = self.opts
        return {
            "dry_run": o.dry_run,
            "yes": o.yes,
            "quiet": o.quiet,
            "explain": o.explain or "explain" in b.flags,
            "interactive": o.interactive,
            "seed": o.seed,
            "db": o.db,
            "timeout": o.timeout,
        }


def resolve_switch_host(txn, name: str | None) -> str:
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


def _ask(what: list[str]) -> bool:
    sys.stderr.write("This will destroy:\n")
    for w in what:
        sys.stderr.write(f"  {w}\n")
    sys.stderr.write("Type yes to continue: ")
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, KeyboardInterrupt):
        return False
    return answer.strip() == "yes"


def _print_warning(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def print_results(results: list, chain: list[Bound], opts: Options) -> None:
    tty = output.stdout_isatty()
    chunks = []
    if (opts.fmt == "json") and len(results) > 1:
        import json

        data = [output.result_data(r) for r in results]
        chunks.append(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        for r, b in zip(results, chain):
            fmt = b.fmt or opts.fmt
            chunks.append(
                output.render_result(
                    r,
                    fmt,
                    minimal=b.minimal or opts.minimal,
                    no_headings=b.no_headings or opts.no_headings,
                    tty=tty,
                )
            )
    sys.stdout.write("".join(chunks))
    sys.stdout.flush()


def command_line(argv: list[str]) -> str:
    return "vmctl " + shlex.join(argv) if argv else "vmctl"


def build_chain(inv: Invocation) -> list[Bound]:
    chain = []
    for seg in inv.segments:
        cmd = lookup(seg.name)
        if cmd.style == "util" and cmd.name != "journal-list":
            raise UsageError(f"'{seg.name}' cannot be part of a chain")
        chain.append(bind(cmd, seg))
    return chain


def run_argv(argv: list[str]) -> int:
    fmt_for_errors = os.environ.get("VMCTL_FORMAT")
    try:
        inv = parse(argv)
        fmt_for_errors = str(inv.opts.get("format") or fmt_for_errors or "")
        opts = options_from(inv.opts)
        opts.interactive = output.isatty(sys.stdin) and output.isatty(sys.stderr)
        if inv.opts.get("version"):
            from vmctl import __version__

            print(f"vmctl {__version__}")
            return 0
        if inv.opts.get("commands"):
            from vmctl.cli import helptext

            sys.stdout.write(helptext.commands_json())
            return 0
        if not inv.segments or inv.opts.get("help"):
            from vmctl.cli import helptext

            if inv.segments:
                sys.stdout.write(helptext.command_help(inv.segments[0].name))
            elif output.stdout_isatty():
                from vmctl.cli import typer_app

                return typer_app.print_help()
            else:
                sys.stdout.write(helptext.general_help())
            return 0
        first = inv.segments[0]
        if first.name in UTILITY:
            if len(inv.segments) > 1:
                raise UsageError(f"'{first.name}' cannot be part of a chain")
            from vmctl.commands import util

            return util.run_utility(first, opts, argv)
        chain = build_chain(inv)
        helps = [b for b in chain if b.help]
        if helps:
            from vmctl.cli import helptext

            sys.stdout.write(helptext.command_help(helps[0].cmd.name))
            return 0
        if any(b.dry_run for b in chain):
            opts.dry_run = True
        opts.explain = any("explain" in b.flags for b in chain)
        results = Executor(opts, command_line(argv)).run(chain)
        print_results(results, chain, opts)
        return max((getattr(r, "exit_code", 0) for r in results), default=0)
    except OvsError as e:
        sys.stderr.write(output.render_error(e))
        return e.exit_code
    except VmctlError as e:
        sys.stderr.write(output.render_error(e, "json" if fmt_for_errors == "json" else None))
        return e.exit_code
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("vmctl: interrupted; nothing was changed\n")
        return 130
    except RecursionError:
        sys.stderr.write("vmctl: INTERNAL_ERROR: input too deeply nested\n")
        return 1
    except Exception as e:  # never a traceback: one line, and the inventory untouched (rolled back)
        if os.environ.get("VMCTL_DEBUG"):
            raise
        sys.stderr.write(
            f"vmctl: INTERNAL_ERROR: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}\n"
        )
        return 1


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
