"""The command line: argv -> global options and a chain of bound commands -> the runner
(vmctl/runner.py, one transaction) -> printed results, or one error line and an exit status.

The first failure anywhere ends everything with nothing committed and nothing on stdout; no input
gives a Python traceback.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from vmctl.cli import output
from vmctl.cli.bind import lookup
from vmctl.cli.grammar import FORMATS, parse
from vmctl.errors import Interrupted, OvsError, UsageError, VmctlError
from vmctl.runner import Options, Runner, build_chain, command_line
from vmctl.units import escape_controls


def options_from(inv_opts: dict) -> Options:
    o = Options()
    o.db = inv_opts.get("db") or os.environ.get("VMCTL_DB") or None  # type: ignore[assignment]
    o.host = inv_opts.get("host") or os.environ.get("VMCTL_HOST") or None  # type: ignore[assignment]
    fmt = inv_opts.get("format") or os.environ.get("VMCTL_FORMAT") or "table"
    if fmt not in FORMATS:
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
    o.async_ = bool(inv_opts.get("async"))
    if o.async_:
        from vmctl import drivers

        if drivers.BACKGROUND is None:
            raise VmctlError(
                "OPERATION_NOT_ALLOWED",
                "--async needs the inventory's manager, in which the task goes on once the command "
                "returns; this command runs in a process of its own",
                [("reason", "VMCTL_DAEMON is off, or no manager could start")],
            )
    t = inv_opts.get("timeout") or os.environ.get("VMCTL_TIMEOUT")
    if t is not None:
        text = str(t)
        if not (text.isascii() and text.isdigit()) or int(text) <= 0:
            raise UsageError(
                f"value {text} on -t or --timeout is invalid",
                params=[("name", "timeout"), ("value", text)],
                hint="the timeout is a whole number of seconds, 1 or more",
            )
        o.timeout = float(int(text))
    return o


def runner(opts: Options, line: str, chained: bool | None = None) -> Runner:
    """The runner as the command line uses it: it asks on the terminal before destroying."""
    return Runner(opts, line, chained, ask=_ask if opts.interactive else None)


def _ask(what: list[str]) -> bool:
    sys.stderr.write("This will destroy:\n")
    for w in what:
        sys.stderr.write(f"  {escape_controls(w)}\n")
    sys.stderr.write("Type yes to continue: ")
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, KeyboardInterrupt):
        return False
    return answer.strip() == "yes"


def print_results(results: list, chain: list, opts: Options) -> None:
    tty = output.stdout_isatty()
    chunks = []
    # a chain of ovs-style commands only prints as ovs-vsctl does, whatever the format
    ovs_only = all(b.cmd.style == "ovs" for b in chain)
    if (opts.fmt == "json") and len(results) > 1 and not ovs_only:
        chunks.append(output.json_document([output.result_data(r) for r in results]))
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


def run_argv(argv: list[str]) -> int:
    fmt_for_errors = os.environ.get("VMCTL_FORMAT")
    parsed = False
    try:
        inv = parse(argv)
        parsed = True
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

                return typer_app.print_help(run_argv)
            else:
                sys.stdout.write(helptext.general_help())
            return 0
        first = lookup(inv.segments[0].name)
        if not first.chainable:
            if len(inv.segments) > 1:
                raise UsageError(f"'{first.name}' cannot be part of a chain", command=first.name)
            return run_utility(first, inv.segments[0], opts, argv)
        chain = build_chain(inv.segments)
        helps = [b for b in chain if b.help]
        if helps:
            from vmctl.cli import helptext

            sys.stdout.write(helptext.command_help(helps[0].cmd.name))
            return 0
        if any(b.dry_run for b in chain):
            opts.dry_run = True
        opts.explain = any("explain" in b.flags for b in chain)
        run = runner(opts, command_line(argv))
        results = run.run(chain)
        if opts.async_ and run.task:
            from vmctl.commands.table import Value

            results, chain = [Value(run.task)], chain[:1]  # the task goes on: its uuid, at once
        print_results(results, chain, opts)
        return max((getattr(r, "exit_code", 0) for r in results), default=0)
    except OvsError as e:
        shown = usage_report(e, argv)
        if isinstance(shown, VmctlError):
            fmt = fmt_for_errors if parsed else grammar_sketch(argv)[1] or fmt_for_errors
            sys.stderr.write(output.render_error(shown, "json" if fmt == "json" else None))
        else:
            sys.stderr.write(output.render_error(e))
        return e.exit_code
    except VmctlError as e:
        sys.stderr.write(output.render_error(e, "json" if fmt_for_errors == "json" else None))
        return e.exit_code
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except Interrupted as e:
        sys.stderr.write(f"vmctl: {e.message}\n")
        return 130
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


def grammar_sketch(argv: list[str]) -> tuple[str | None, str | None]:
    from vmctl.cli.grammar import sketch

    return sketch(argv)


def usage_report(e: OvsError, argv: list[str]) -> OvsError | VmctlError:
    """How a failure of the command line `argv` is shown: a usage error keeps ovs-vsctl's exact
    form for an ovs-vsctl-style command (and when no command is named, as ovs-vsctl's getopt
    layer does, unless -f json asks for JSON); for any other command, or a name that is no
    command, it is an xe-style error with a stable code. Other ovs errors stay as they are."""
    if not isinstance(e, UsageError):
        return e
    from vmctl.commands import load

    name, fmt = grammar_sketch(argv)
    name = e.command or name
    if name is None:
        json_asked = (fmt or os.environ.get("VMCTL_FORMAT")) == "json"
        return e.xe_error() if json_asked else e
    cmd = load().get(name)
    if cmd is not None and cmd.style == "ovs":
        return e
    if cmd is None and any(
        w.split("=")[0] in _OVS_ONLY_OPTIONS for w in (argv[: argv.index(name)] if name in argv else [])
    ):
        return e  # `--columns list bridge`: an unknown name after ovs-vsctl's own options
    return e.xe_error()


# command options only ovs-style commands take
_OVS_ONLY_OPTIONS = {"--columns", "--inactivity-probe", "--real", "--fake", "--with-iface", "--fake-iface"}


def run_utility(cmd, seg, opts: Options, argv: list[str]) -> int:
    """A utility command runs outside any transaction (batch opens its own): its function gets
    the invocation's options, its arguments bound from its table entry, and returns the exit
    status."""
    import gc

    from vmctl.cli import helptext
    from vmctl.cli.bind import bind_gnu

    if cmd.name != "help" and ("--help" in seg.args or "-h" in seg.args):
        sys.stdout.write(helptext.command_help(cmd.name))
        return 0
    gc.enable()  # off for a single transaction (vmctl/__main__.py); a batch or a demo may run long
    return cmd.func(UtilityCall(cmd, bind_gnu(cmd, seg.args), opts, argv))


@dataclass
class UtilityCall:
    """What a utility command's function gets."""

    cmd: object
    a: dict  # its arguments, bound from the table entry (see cli/bind.py bind_gnu)
    opts: Options
    argv: list[str]  # the whole command line, for the journal


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
