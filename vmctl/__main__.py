"""Entry point. The fast paths (--version, completion) run before anything else, then the
inventory's manager is asked to run the command (vmctl/daemon/client.py); when it cannot, the
command runs here: simple reads in plain sqlite3, then the command line. Start-up time matters
to scripts and TAB presses (architecture.md §3)."""

from __future__ import annotations

import gc
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        from vmctl import __version__

        sys.stdout.write(f"vmctl {__version__}\n")
        return 0
    if args and args[0] in ("__complete", "completion-words"):
        from vmctl.cli import completion

        return completion.fast_complete(args[1:])
    # The inventory's manager runs the command when it can (vmctl/daemon): no start-up to pay.
    from vmctl.daemon import client

    rc = client.run(args)
    if rc is not None:
        return rc
    from vmctl.store import fastpath

    rc = fastpath.try_run(args)
    if rc is not None:
        return rc
    # One invocation is one transaction: the cyclic garbage collector would only walk, again and
    # again, the modules and rows it loads (a fifth of a vm-start on a large inventory), and
    # reference counting frees nearly everything else (the same peak memory for a 13,500-VM
    # vm-shutdown). Utility commands, which may run long (batch, demo), turn it back on.
    gc.disable()
    from vmctl.cli.app import run_argv

    return run_argv(args)


def _entry() -> None:
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    # The interpreter's exit runs a last collection over every object still alive (SQLAlchemy's,
    # NumPy's, the rows read): a quarter of a vm-start's time, for nothing, as the process ends
    # here. Frozen objects are left out of it.
    gc.freeze()
    raise SystemExit(code)


if __name__ == "__main__":
    _entry()
