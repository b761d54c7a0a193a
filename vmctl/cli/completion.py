"""Shell completion (cli.md §6). Placeholder scripts until the completion issue lands."""

from __future__ import annotations

import sys


def script(shell: str) -> str:
    return f"# vmctl {shell} completion\ncomplete -W \"$(vmctl --commands 2>/dev/null | sed 's/.*\"name\": \"\\([^\"]*\\)\".*/\\1/')\" vmctl\n"


def fast_complete(words: list[str]) -> int:
    sys.stdout.write("")
    return 0
