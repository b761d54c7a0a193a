"""The typer application shell, generated from the command table (architecture.md §1).

typer renders the top-level help on a terminal (commands grouped by family in rich panels) and
offers the table as a click/typer app to embedders. Parsing stays ours (cli/grammar.py): every
typer command forwards its raw arguments to the runner, because click cannot express `--`
chains, xe-style `key=value` arguments or ovs-vsctl's option rules.
"""

from __future__ import annotations


def build(run):
    """The typer app; each command forwards its words to run(argv) -> exit status (the
    runner's command line, vmctl.cli.app.run_argv, which imports this module for --help)."""
    import typer

    from vmctl.cli.helptext import FAMILY_ORDER
    from vmctl.commands import load

    app = typer.Typer(
        name="vmctl",
        add_completion=False,
        no_args_is_help=True,
        rich_markup_mode="rich",
        help="An xe/ovs-vsctl-style virtualization manager. One invocation is one transaction; "
        "chain commands with [bold]--[/bold]. [bold]vmctl help COMMAND[/bold] for details.",
    )
    cmds = sorted(
        load().values(),
        key=lambda c: (FAMILY_ORDER.index(c.family) if c.family in FAMILY_ORDER else 99, c.name),
    )
    for cmd in cmds:
        app.command(
            name=cmd.name,
            help=cmd.help,
            short_help=cmd.help,
            rich_help_panel=cmd.family or "other",
            context_settings={
                "allow_extra_args": True,
                "ignore_unknown_options": True,
                "help_option_names": [],
            },
            add_help_option=False,
        )(_forward(cmd.name, run))
    return app


def _forward(name: str, run_argv):
    import typer

    def run(ctx) -> None:
        raise SystemExit(run_argv([name, *ctx.args]))

    # typer reads the annotation to inject the context; set it as an object, since this module's
    # annotations are strings (PEP 563) and typer is imported lazily
    run.__annotations__ = {"ctx": typer.Context, "return": None}
    run.__name__ = name.replace("-", "_")
    return run


def print_help(run) -> int:
    """`vmctl --help` on a terminal."""
    app = build(run)
    try:
        app(["--help"], prog_name="vmctl", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0)
    return 0
