"""Utility commands (cli.md §7): batch, demo, completion, help, bench, lab, daemon. GNU-style options."""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys

from vmctl.commands.table import Arg, Command, register
from vmctl.errors import OvsError, UsageError, VmctlError


def _util(name: str, help: str, args: tuple[Arg, ...] = (), syntax: str = ""):
    """Decorator registering a utility command: it runs outside any transaction, gets the
    invocation (vmctl.cli.app.UtilityCall) and returns the exit status."""

    def deco(fn):
        register(
            Command(
                name=name,
                func=fn,
                help=help,
                family="utility",
                style="util",
                rw=False,
                args=args,
                syntax=syntax,
            )
        )
        return fn

    return deco


@_util(
    "batch",
    "Run a YAML list of commands as one all-or-nothing transaction",
    (
        Arg(
            "FILE",
            required=True,
            help="the YAML file, or - for standard input; a value keeps its text (0x1F, 012, yes stay as written)",
        ),
        Arg("--continue-on-error", "bool", help="each item is its own transaction; exit 1 if any failed"),
        Arg("--dry-run", "bool", help="run everything, print what would be printed, then roll back"),
    ),
    "batch FILE|- [--continue-on-error] [--dry-run]",
)
def batch(call) -> int:
    if call.a.get("--dry-run"):
        call.opts.dry_run = True
    return run_batch(call.opts, call.a["FILE"], bool(call.a.get("--continue-on-error")), call.argv)


@_util(
    "demo",
    "Build a realistic datacenter into an empty inventory and print a summary",
    (
        Arg("--pools", "int", help="number of pools (default 3, at most 256)", bounds=(1, None)),
        Arg("--hosts", "int", help="number of hosts (default 24, at most 2,500)", bounds=(1, None)),
        Arg("--vms", "int", help="number of VMs (default 400, at most 40,000)", bounds=(0, None)),
        Arg("--seed", "int", help="the seed (default 1)", bounds=(0, 1000000000)),
    ),
    "demo [--pools P] [--hosts N] [--vms M] [--seed S]",
)
def demo(call) -> int:
    from vmctl import demo

    a = call.a
    return demo.run(
        call.opts,
        a.get("--pools", 3),
        a.get("--hosts", 24),
        a.get("--vms", 400),
        a.get("--seed", 1),
        call.argv,
    )


@_util(
    "completion",
    "Print the shell completion script for bash, zsh or fish",
    (Arg("SHELL", "enum", values=("bash", "zsh", "fish"), help="bash, zsh or fish"),),
    "completion bash|zsh|fish",
)
def completion(call) -> int:
    from vmctl.cli import completion

    shell = call.a.get("SHELL", "")
    if shell not in ("bash", "zsh", "fish"):
        raise VmctlError(
            "INVALID_VALUE", "Name one shell: bash, zsh or fish", [("name", "shell"), ("value", shell)]
        )
    sys.stdout.write(completion.script(shell))
    return 0


@_util(
    "help",
    "Print the help of one command, or the list of commands",
    (Arg("COMMAND", help="a command name"),),
    "help [COMMAND]",
)
def help_(call) -> int:
    from vmctl.cli import helptext

    name = call.a.get("COMMAND")
    sys.stdout.write(helptext.command_help(name) if name else helptext.general_help())
    return 0


@_util(
    "bench",
    "Run the benchmark suite (source checkouts only; see bench/run.py --help)",
    (Arg("ARGS", repeat=True, help="suites and options, passed on to bench/run.py"),),
    "bench [SUITE...] [--scenario ci|S1|S2|C96] [--seed N] ...",
)
def bench(call) -> int:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = os.path.join(root, "bench", "run.py")
    if not os.path.exists(script):
        raise VmctlError(
            "OPERATION_NOT_ALLOWED",
            "vmctl bench needs a source checkout (bench/run.py)",
            [("reason", "bench/run.py not found")],
        )
    import subprocess

    return subprocess.call([sys.executable, script, *call.a.get("ARGS", [])])


@_util(
    "lab",
    "Build (up), show (status) or remove (down) a lab of real libvirt hosts on this machine, "
    "registered as pool lab; up and down need root",
    (
        Arg(
            "ACTION",
            "enum",
            True,
            "up: start the hosts and register them; status: one row per host; down: stop and "
            "remove everything the lab made, and its pool",
            values=("up", "status", "down"),
        ),
        Arg("--hosts", "int", help="up: how many hosts (default 2)", bounds=(1, 32)),
        Arg(
            "--dir",
            help="where everything of the lab lives (default $XDG_RUNTIME_DIR/vmctl-lab, else "
            "/run/vmctl-lab); status and down find the lab that is up without it",
        ),
        Arg("--format", help="status: table, json, yaml, csv or tsv", short="-f"),
    ),
    "lab up [--hosts N] [--dir DIR] | lab status [-f FMT] | lab down",
)
def lab(call) -> int:
    from vmctl import lab

    action = call.a.get("ACTION", "")
    if action not in ("up", "status", "down"):
        raise VmctlError(
            "INVALID_VALUE", "Name one action: up, status or down", [("name", "action"), ("value", action)]
        )
    for option, owner in (("--hosts", "up"), ("--format", "status")):
        if option in call.a and action != owner:
            raise UsageError(f"lab {action}: {option} is an option of lab {owner}", command="lab")
    if action == "up":
        return lab.up(call.opts, call.a.get("--hosts", lab.DEFAULT_HOSTS), call.a.get("--dir"), call.argv)
    if action == "status":
        return lab.status(call.opts, call.a.get("--dir"), call.a.get("--format"))
    return lab.down(call.opts, call.a.get("--dir"), call.argv)


@_util(
    "daemon",
    "Show (status), stop or run in the foreground (run) the inventory's manager, the resident "
    "process that runs commands for the command line",
    (
        Arg(
            "ACTION",
            "enum",
            True,
            "status: whether a manager runs, its pid, socket and counts; stop: ask it to exit once "
            "its running commands finish, and wait; run: be the manager, in the foreground (for "
            "service managers), until stopped",
            values=("status", "stop", "run"),
        ),
        Arg(
            "--idle",
            "int",
            help="run: exit after this many seconds without a command (default: never)",
            bounds=(0, None),
        ),
    ),
    "daemon status|stop|run [--idle SECONDS]",
)
def daemon(call) -> int:
    from vmctl.daemon import control

    action = call.a.get("ACTION", "")
    if action not in ("status", "stop", "run"):
        raise VmctlError(
            "INVALID_VALUE", "Name one action: status, stop or run", [("name", "action"), ("value", action)]
        )
    if "--idle" in call.a and action != "run":
        raise UsageError(f"daemon {action}: --idle is an option of daemon run", command="daemon")
    if action == "status":
        return control.status(call.opts)
    if action == "stop":
        return control.stop(call.opts)
    return control.run(call.opts, call.a.get("--idle", 0))


# --- batch -------------------------------------------------------------------------------------------------
def _bad_item(idx: int, why: str) -> VmctlError:
    return VmctlError("INVALID_VALUE", f"Batch item {idx}: {why}", [("name", f"item {idx}"), ("value", why)])


def item_words(idx: int, item) -> list[str]:
    """A batch item -> command-line words (cli.md §5)."""
    if isinstance(item, str):
        try:
            words = shlex.split(item)
        except ValueError as e:
            raise _bad_item(idx, str(e)) from None
        if not words:
            raise _bad_item(idx, "empty command")
        return words
    if isinstance(item, dict):
        item = dict(item)
        name = item.pop("command", None)
        if not isinstance(name, str) or not name:
            raise _bad_item(idx, "a mapping needs command: NAME")
        words: list[str] = []
        ident = item.pop("id", None)
        if ident is not None:
            words.append(f"--id={ident}")
        opts = item.pop("options", []) or []
        if not isinstance(opts, list):
            raise _bad_item(idx, "options must be a list")
        words.extend(str(o) for o in opts)
        words.append(name)
        pos = item.pop("args", []) or []
        if not isinstance(pos, list):
            raise _bad_item(idx, "args must be a list")
        for k, v in item.items():
            text = _scalar_text(v)
            if text is None:
                raise _bad_item(idx, f"{k} must be a scalar")
            words.append(f"{k}={text}")
        words.extend(str(a) for a in pos)
        return words
    raise _bad_item(idx, "an item is a command string or a mapping")


def _scalar_text(value) -> str | None:
    """A mapping value as command-line text. Plain scalars arrive as their source text (see
    BatchLoader); an explicitly tagged bool, int or float is written as the command line writes
    it; anything else (a list, a mapping, !!null, !!binary, !!timestamp) is not a value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None


# A batch needs three levels (a list of mappings holding option and argument lists); deeper
# input is refused before the parser's recursion could run out.
MAX_DEPTH = 64


def _loader():
    """A YAML SafeLoader that keeps every plain scalar's source text: YAML 1.1's implicit types
    would turn `name-label: 0x1F` into 31, `012` into 10, `12:30:00` into 45000, `yes` into
    true and a MAC address into an integer, while every value becomes `key=value` text anyway.
    Quoted scalars and explicit tags (`!!int 12`) mean what they say; merge keys still merge.
    Nesting deeper than MAX_DEPTH is refused with a clear error."""
    import yaml

    class BatchLoader(yaml.SafeLoader):
        yaml_implicit_resolvers = {
            first: [(tag, rx) for tag, rx in resolvers if tag == "tag:yaml.org,2002:merge"]
            for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }
        depth = 0

        def compose_node(self, parent, index):
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    raise _TooDeep(self.peek_event().start_mark)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return BatchLoader


class _TooDeep(Exception):
    def __init__(self, mark):
        self.mark = mark


def load_items(path: str) -> list:
    import yaml

    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise VmctlError(
            "INVALID_VALUE", f"Cannot read the batch file: {e.strerror}", [("name", "file"), ("value", path)]
        ) from None
    except UnicodeDecodeError:
        raise VmctlError(
            "INVALID_VALUE", "The batch file is not UTF-8 text", [("name", "file"), ("value", path)]
        ) from None
    try:
        loader = _loader()(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except _TooDeep as e:
        raise VmctlError(
            "INVALID_VALUE",
            f"The batch file is nested more than {MAX_DEPTH} levels deep at line {e.mark.line + 1}; "
            "a batch is a list of command lines or mappings",
            [("name", "file"), ("value", path), ("line", e.mark.line + 1)],
        ) from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise VmctlError(
            "INVALID_VALUE", f"The batch file is not valid YAML{line}", [("name", "file"), ("value", path)]
        ) from None
    if data is None:
        data = []
    if not isinstance(data, list):
        raise VmctlError(
            "INVALID_VALUE", "A batch file is a YAML list of commands", [("name", "file"), ("value", path)]
        )
    return data


def _segments(words: list[str]):
    from vmctl.cli.grammar import split_segments

    if words and words[0] == "--":
        words = words[1:]
    return split_segments(words, {})


def run_batch(opts, path: str, continue_on_error: bool, argv: list[str]) -> int:
    from vmctl.cli import output
    from vmctl.cli.app import print_results, runner, usage_report
    from vmctl.redact import redact_words
    from vmctl.runner import build_chain, command_line

    items = load_items(path)
    per_item = []
    for idx, item in enumerate(items, 1):
        # In continue mode a bad item is that item's failure only (each item is its own transaction).
        try:
            words = item_words(idx, item)
            per_item.append((words, build_chain(_segments(words))))
        except (VmctlError, OvsError) as e:
            if not continue_on_error:
                raise
            per_item.append(([str(item)], e))
    head = command_line(argv)
    if not continue_on_error:
        chain = [b for _, c in per_item for b in c]
        if not chain:
            return 0
        if any(b.dry_run for b in chain):
            opts.dry_run = True
        text = head + "".join("\n  " + shlex.join(redact_words(w)) for w, _ in per_item)
        results = runner(opts, text, chained=True).run(chain)
        if opts.fmt == "json":
            sys.stdout.write(output.json_document([output.result_data(r) for r in results]))
        else:
            print_results(results, chain, opts)
        return 0
    failed = False
    outputs = []
    for words, chain in per_item:
        try:
            if isinstance(chain, Exception):
                raise chain
            # an item's own --dry-run makes that item a dry run (cli.md §5: it acts as the global option)
            item_opts = dataclasses.replace(opts, dry_run=opts.dry_run or any(b.dry_run for b in chain))
            results = runner(
                item_opts, f"{head}\n  {shlex.join(redact_words(words))}", chained=len(chain) > 1
            ).run(chain)
            if opts.fmt == "json":
                outputs.extend(output.result_data(r) for r in results)
            else:
                print_results(results, chain, opts)
        except (VmctlError, OvsError) as e:
            failed = True
            e = usage_report(e, words)
            if opts.fmt == "json":
                if isinstance(e, VmctlError):
                    outputs.append(
                        output.redacted_data(
                            {
                                "error": {
                                    "code": e.code,
                                    "message": e.message,
                                    "params": {k: output.jsonable(v) for k, v in e.params},
                                }
                            }
                        )
                    )
                else:
                    code = e.code if isinstance(e, UsageError) else "OVS_ERROR"
                    outputs.append(
                        output.redacted_data({"error": {"code": code, "message": e.message, "params": {}}})
                    )
            sys.stderr.write(output.render_error(e))
    if opts.fmt == "json":
        sys.stdout.write(output.json_document(outputs))
    return 1 if failed else 0
