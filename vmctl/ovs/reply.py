"""What an ovs-style command's output becomes: its Text result, one line per command with
--oneline (network.md §2)."""

from __future__ import annotations

from vmctl.commands.table import Ctx, Text


def reply(ctx: Ctx, out: str) -> Text:
    """The result of a command that printed `out` (`list` prints its tables as they are)."""
    return Text(oneline(out) if ctx.opts.get("oneline") else out)


def oneline(text: str) -> str:
    if text.endswith("\n"):
        text = text[:-1]
    return text.replace("\\", "\\\\").replace("\n", "\\n") + "\n"
