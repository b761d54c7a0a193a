"""Where the default inventory lives (cli.md §2); light enough for the fast paths."""

from __future__ import annotations

import os


def default_db() -> str:
    env = os.environ.get("VMCTL_DB")
    if env:
        return env
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "vmctl", "inventory.db")
