"""Fast read paths: plain sqlite3, no SQLAlchemy (architecture.md §3). Returns None to fall
back to the normal path for anything it does not support."""

from __future__ import annotations


def try_run(argv: list[str]) -> int | None:
    return None
