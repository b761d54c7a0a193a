"""Where the default inventory lives (cli.md §2); light enough for the fast paths."""

from __future__ import annotations

import os


def default_db(env=None) -> str:
    """$VMCTL_DB, else $XDG_DATA_HOME/vmctl/inventory.db, else ~/.local/share/vmctl/inventory.db;
    read from `env` (the manager reads a client's) or this process's environment."""
    env = os.environ if env is None else env
    if env.get("VMCTL_DB"):
        return env["VMCTL_DB"]
    home = env.get("HOME") or os.path.expanduser("~")
    base = env.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    return os.path.join(base, "vmctl", "inventory.db")
