"""The command table, filled by importing each family module (each registers its commands)."""

from vmctl.commands.table import COMMANDS, Command, register

_loaded = False


def load() -> dict[str, Command]:
    global _loaded
    if not _loaded:
        _loaded = True
        from vmctl.commands import generic

        generic.register_generic()
        # Families: each module registers its commands on import.
        from vmctl.commands import (  # noqa: F401
            bridge,  # noqa: F401
            dbcheck,  # noqa: F401
            host,
            journal,
            pool,
            util,
            vm,
        )
    return COMMANDS


__all__ = ["COMMANDS", "Command", "load", "register"]
